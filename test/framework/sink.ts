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

/** One request a recorder received. */
export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/**
 * An upstream that remembers every request it was sent: a remote-write receiver (204) and a
 * Pushgateway (200 for pushes, 202 for deletes) on one port, for tests that must know exactly what
 * the proxy let through.
 */
export async function startRecorder(): Promise<
  Closable & { writeUrl: string; origin: string; requests: RecordedRequest[] }
> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    req.resume();
    req.on('end', () =>
      res
        .writeHead(
          req.method === 'DELETE' ? 202 : req.method === 'POST' && req.url === '/api/v1/write' ? 204 : 200,
        )
        .end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    writeUrl: `http://127.0.0.1:${port}/api/v1/write`,
    origin: `http://127.0.0.1:${port}`,
    requests,
    dirs: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
