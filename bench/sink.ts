// A remote-write receiver that accepts everything and stores nothing: the upstream of the
// benchmark, run in its own process so that it does not share a thread with what is measured.
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(204);
    res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  if (addr && typeof addr === 'object') process.stdout.write(`${addr.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
