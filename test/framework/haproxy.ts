// Debian's haproxy on loopback: round robin over backends, keep-alive off (`option httpclose`),
// so that consecutive requests of one sender reach different backends, as the requests of many
// senders do behind a Kubernetes Service.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { binaryPath } from './binaries.js';
import { type CloseOptions, freePort, type Program, startProgram } from './process.js';

export interface LoadBalancer {
  readonly program: Program;
  /** `http://127.0.0.1:port` */
  readonly url: string;
  readonly dirs: readonly string[];
  close(o?: CloseOptions): Promise<void>;
}

/** Starts haproxy balancing HTTP over `backends` (`http://127.0.0.1:port` URLs); ready when `readyPath` answers 2xx through it. */
export async function startLoadBalancer(
  backends: readonly string[],
  readyPath = '/-/ready',
): Promise<LoadBalancer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const servers = backends.map((b, i) => `  server b${i} ${new URL(b).host}`).join('\n');
  const program = await startProgram({
    name: 'haproxy',
    command: binaryPath('haproxy'),
    args: (dir) => {
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(
        file,
        `global
  maxconn 2000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  option httpclose
frontend ingest
  bind 127.0.0.1:${port}
  default_backend proxies
backend proxies
  balance roundrobin
${servers}
`,
      );
      // -db: stay in the foreground, logs to stderr.
      return ['-db', '-f', file];
    },
    readyUrl: `${url}${readyPath}`,
  });
  return {
    program,
    url,
    get dirs() {
      return program.dirs;
    },
    close: (o) => program.close(o),
  };
}
