// A remote-write receiver that accepts everything and keeps nothing: an upstream for tests that
// look at the proxy itself, not at what a real receiver stores.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Closable } from './process.js';

export async function startSink(): Promise<Closable & { url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/v1/write`,
    dirs: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
