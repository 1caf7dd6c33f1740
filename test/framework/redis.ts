// Debian's redis-server on loopback: a single server, or a Redis Cluster of three masters made with
// `redis-cli --cluster create`. Nothing is persisted; each server runs in its own directory.

import { execFile } from 'node:child_process';
import { Cluster, Redis } from 'ioredis';
import { binaryPath } from './binaries.js';
import { eventually } from './poll.js';
import { type CloseOptions, freePort, type Program, startProgram } from './process.js';

export interface RedisProgram {
  /** What --limits.store is given: redis://127.0.0.1:PORT or redis+cluster://h:p,h:p,h:p. */
  readonly url: string;
  readonly programs: readonly Program[];
  /** A client of the same kind (ioredis), for the test's own looks at the data. */
  client(): Redis | Cluster;
  /** `used_memory` of INFO memory, summed over the masters. */
  usedMemory(): Promise<number>;
  /** Stops every server (their data is lost: nothing is persisted). */
  stop(): Promise<void>;
  start(): Promise<void>;
  readonly dirs: readonly string[];
  close(o?: CloseOptions): Promise<void>;
}

export interface RedisOptions {
  /** requirepass; the proxy reads it from --limits.store.password-file. */
  readonly password?: string;
}

function serverArgs(port: number, dir: string, password: string | undefined, extra: string[]): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    ...(password === undefined ? [] : ['--requirepass', password, '--masterauth', password]),
    ...extra,
  ];
}

async function ping(port: number, password: string | undefined): Promise<void> {
  const c = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true, retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.ping();
  } finally {
    c.disconnect();
  }
}

async function startServer(name: string, port: number, password: string | undefined, extra: string[]) {
  const program = await startProgram({
    name,
    command: binaryPath('redis'),
    args: (dir) => serverArgs(port, dir, password, extra),
  });
  await eventually(() => ping(port, password), { timeoutMs: 20_000 });
  return program;
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisProgram> {
  const port = await freePort();
  const password = options.password;
  const program = await startServer('redis', port, password, []);
  const client = () => new Redis({ port, host: '127.0.0.1', password });
  return {
    url: `redis://127.0.0.1:${port}`,
    programs: [program],
    client,
    async usedMemory() {
      const c = client();
      try {
        return Number(/used_memory:(\d+)/.exec(await c.info('memory'))?.[1]);
      } finally {
        c.disconnect();
      }
    },
    stop: () => program.stop(),
    async start() {
      await program.start();
      await eventually(() => ping(port, password), { timeoutMs: 20_000 });
    },
    get dirs() {
      return program.dirs;
    },
    close: (o) => program.close(o),
  };
}

/** Three masters, no replicas, every slot assigned, cluster_state:ok on each. */
export async function startRedisCluster(options: RedisOptions = {}): Promise<RedisProgram> {
  const password = options.password;
  const ports = [await freePort(), await freePort(), await freePort()];
  const programs: Program[] = [];
  for (const [i, port] of ports.entries()) {
    programs.push(
      await startServer(`redis-node${i}`, port, password, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        '2000',
      ]),
    );
  }
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  await new Promise<void>((resolve, reject) => {
    execFile(
      binaryPath('redis-cli'),
      [
        ...(password === undefined ? [] : ['-a', password, '--no-auth-warning']),
        '--cluster',
        'create',
        ...addresses,
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: 60_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`redis-cli --cluster create: ${err.message}\n${stdout}${stderr}`)) : resolve(),
    );
  });
  const clusterOk = async () => {
    for (const port of ports) {
      const c = new Redis({ port, host: '127.0.0.1', password });
      // A node still starting refuses the connection: the poll asks again.
      c.on('error', () => {});
      try {
        const info = await c.cluster('INFO');
        if (!/cluster_state:ok/.test(String(info)))
          throw new Error(`127.0.0.1:${port}: ${String(info).split('\n')[0]}`);
      } finally {
        c.disconnect();
      }
    }
  };
  await eventually(clusterOk, { timeoutMs: 30_000 });
  const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
  const client = () => new Cluster(nodes, { redisOptions: { password } });
  return {
    url: `redis+cluster://${addresses.join(',')}`,
    programs,
    client,
    async usedMemory() {
      let total = 0;
      for (const port of ports) {
        const c = new Redis({ port, host: '127.0.0.1', password });
        try {
          total += Number(/used_memory:(\d+)/.exec(await c.info('memory'))?.[1]);
        } finally {
          c.disconnect();
        }
      }
      return total;
    },
    async stop() {
      for (const p of programs) await p.stop();
    },
    async start() {
      // nodes.conf in each directory brings the cluster back as it was (its data is gone).
      for (const p of programs) await p.start();
      await eventually(clusterOk, { timeoutMs: 30_000 });
    },
    get dirs() {
      return programs.flatMap((p) => p.dirs);
    },
    async close(o) {
      for (const p of programs) await p.close(o);
    },
  };
}
