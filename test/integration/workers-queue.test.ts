// `--workers 2` with the durable queue: its routes answer for the whole proxy, counters survive a
// worker's restart, and lowering N loses nothing. A real Prometheus 2 is the upstream; it is
// stopped so that both workers queue. Requests are sent to a chosen worker: the test opens
// connections until the cluster hands one to that worker (found through /proc: which worker
// process holds the server end of the connection), then sends on it.
// - /api/v1/status/queue gives the same totals whichever worker answers, with both workers listed;
// - dead letters of both workers are listed by each, and requeued by id through the other worker;
// - a worker killed with SIGKILL: the counters in /metrics never go down, and come back exact;
// - a queue of records left by two workers is delivered by one process started on it, and so is
//   one process's queue by two workers.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { Label } from '../../proxy/codec/types.js';
import {
  eventually,
  type ProxyProgram,
  parseExposition,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const FAST = [
  '--forward.min-backoff',
  '50ms',
  '--forward.max-backoff',
  '300ms',
  '--queue.batch-max-wait',
  '200ms',
  '--queue.max-retry-attempts',
  '2',
  '--shutdown-timeout',
  '2s',
];

/** The worker processes of the proxy (its children running the proxy's main), by index. */
function workers(primary: number): Map<number, number> {
  const out = new Map<number, number>();
  const children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim();
  for (const pid of children
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number)) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const index = env.find((e) => e.startsWith('CARDINAL_WORKER_INDEX='));
      if (index !== undefined) out.set(Number(index.split('=')[1]), pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** The socket inode of the server end of the connection from 127.0.0.1:clientPort, from /proc/net/tcp. */
function serverInode(serverPort: number, clientPort: number): string | undefined {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(serverPort)}`) && f[2]?.endsWith(`:${hex(clientPort)}`)) return f[9];
  }
  return undefined;
}

function holds(pid: number, inode: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** A connection the cluster handed to worker `index`. */
async function connectionTo(proxy: ProxyProgram, index: number): Promise<Socket> {
  const port = Number(new URL(proxy.url).port);
  for (let attempt = 0; attempt < 50; attempt++) {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    // The primary accepts and passes the connection on: wait until a worker holds it.
    let owner: number | undefined;
    for (let i = 0; i < 100 && owner === undefined; i++) {
      const inode = serverInode(port, socket.localPort!);
      if (inode !== undefined) {
        for (const [w, pid] of workers(proxy.program.pid!)) if (holds(pid, inode)) owner = w;
      }
      if (owner === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    if (owner === index) return socket;
    socket.destroy();
  }
  throw new Error(`no connection reached worker ${index}`);
}

interface Answer {
  status: number;
  text: string;
}

/** One request on a connection of its own, to worker `index` (or to whichever takes it). */
async function ask(
  proxy: ProxyProgram,
  index: number | undefined,
  method: string,
  path: string,
  body?: Uint8Array,
): Promise<Answer> {
  const socket = index === undefined ? undefined : await connectionTo(proxy, index);
  return new Promise((resolve, reject) => {
    const req = request(
      `${proxy.url}${path}`,
      {
        method,
        // A given socket only without `agent: false` (which would open a connection of its own).
        ...(socket === undefined ? { agent: false } : { createConnection: () => socket }),
        headers:
          body === undefined
            ? {}
            : {
                'content-type': 'application/x-protobuf',
                'content-encoding': 'snappy',
                'content-length': body.length,
              },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => {
          socket?.destroy();
          resolve({ status: res.statusCode ?? 0, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function write(series: { labels: Label[]; value: number }[], t: number): Uint8Array {
  return snappyEncode(
    encodeWriteRequestV1({
      timeseries: series.map((s) => ({
        labels: s.labels,
        samples: [{ value: s.value, timestamp: t }],
        exemplars: [],
        histograms: [],
      })),
      metadata: [],
    }),
  );
}

/** A request of three series of `name`, numbered from 3n. */
const three = (name: string, n: number, t: number) =>
  write(
    [0, 1, 2].map((j) => ({
      labels: [
        { name: '__name__', value: name },
        { name: 'n', value: String(3 * n + j) },
      ],
      value: j,
    })),
    t,
  );

interface Status {
  queues: { remote_write: { bytes: number; segments: number; oldestAgeSeconds: number; maxBytes: number } };
  workers: { worker: number; queues?: { remote_write: { bytes: number } }; error?: string }[];
}

interface Letter {
  id: number;
  status: string;
  samples: number;
}

const ID_SPAN = 1e12;

describe('--workers 2 with the durable queue', () => {
  const track = useCleanup('each');

  it('answers the queue routes for every worker and keeps counters monotonic across a SIGKILL', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2, outOfOrderWindow: '30m' }));
    await receiver.stop();
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => [
          '--workers',
          '2',
          '--queue.dir',
          join(dir, 'queue'),
          '--ingest.invalid',
          'off',
          '--log-level',
          'info',
          ...FAST,
        ],
      }),
    );
    const sum = async (name: string, labels: Record<string, string> = {}) =>
      parseExposition((await ask(proxy, undefined, 'GET', '/metrics')).text)
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((a, s) => a + s.value, 0);

    // The upstream is down: 4 requests queue in worker 0, 6 in worker 1.
    const t = Date.now();
    for (let n = 0; n < 10; n++) {
      expect((await ask(proxy, n < 4 ? 0 : 1, 'POST', '/api/v1/write', three('wq_good', n, t))).status).toBe(
        204,
      );
    }

    // The same whole-proxy totals whichever worker answers.
    const statuses: Status[] = [];
    for (const index of [0, 1, undefined, undefined, undefined, undefined]) {
      const a = await ask(proxy, index, 'GET', '/api/v1/status/queue');
      expect(a.status).toBe(200);
      statuses.push(JSON.parse(a.text) as Status);
    }
    for (const s of statuses) {
      expect(s.workers.map((w) => w.worker)).toEqual([0, 1]);
      const parts = s.workers.map((w) => w.queues!.remote_write.bytes);
      // Each holds more than an empty segment's header, and the total is their sum.
      for (const b of parts) expect(b).toBeGreaterThan(100);
      expect(s.queues.remote_write.bytes).toBe(parts[0]! + parts[1]!);
      expect(s.queues.remote_write.bytes).toBe(statuses[0]!.queues.remote_write.bytes);
      expect(s.queues.remote_write.segments).toBe(statuses[0]!.queues.remote_write.segments);
      expect(s.queues.remote_write.maxBytes).toBe(statuses[0]!.queues.remote_write.maxBytes);
    }
    expect(statuses[0]!.workers[1]!.queues!.remote_write.bytes).toBeGreaterThan(
      statuses[0]!.workers[0]!.queues!.remote_write.bytes,
    );

    // A worker killed: every /metrics answer meanwhile counts at least what was counted before.
    expect(await sum('cardinal_proxy_queue_appended_samples_total')).toBe(30);
    const requestsBefore = await sum('cardinal_proxy_requests_total');
    expect(requestsBefore).toBeGreaterThanOrEqual(10);
    // After a collection by the primary (every 5 s), so nothing counted is lost.
    await new Promise((r) => setTimeout(r, 6000));
    const primary = proxy.program.pid!;
    const victim = workers(primary).get(1)!;
    process.kill(victim, 'SIGKILL');
    const seen: number[] = [];
    await eventually(
      async () => {
        const appended = await sum('cardinal_proxy_queue_appended_samples_total');
        seen.push(appended);
        expect(appended).toBeGreaterThanOrEqual(30);
        expect(await sum('cardinal_proxy_requests_total')).toBeGreaterThanOrEqual(requestsBefore);
        expect(await sum('cardinal_proxy_worker_restarts_total')).toBe(1);
        const now = workers(primary);
        expect(now.size).toBe(2);
        expect(now.get(1)).not.toBe(victim);
        expect((await ask(proxy, 1, 'GET', '/-/ready')).status).toBe(200);
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(seen.length).toBeGreaterThan(1);
    expect(Math.min(...seen)).toBe(30);
    expect(await sum('cardinal_proxy_queue_appended_samples_total')).toBe(30);

    // The upstream back: everything both workers queued arrives (worker 1's through its successor).
    await receiver.start();
    await eventually(
      async () => expect((await receiver.query('count(last_over_time(wq_good[10m]))'))[0]?.value).toBe(30),
      { timeoutMs: 60_000 },
    );

    // One request per worker that Prometheus refuses for good (a repeated label name): dead letters.
    for (const index of [0, 1]) {
      const bad = write(
        [
          {
            labels: [
              { name: '__name__', value: 'wq_bad' },
              { name: 'i', value: String(index) },
              { name: 'i', value: 'again' },
            ],
            value: 1,
          },
        ],
        t,
      );
      expect((await ask(proxy, index, 'POST', '/api/v1/write', bad)).status).toBe(204);
    }
    const lettersVia = async (index: number | undefined) => {
      const a = await ask(proxy, index, 'GET', '/api/v1/queue/dead-letter');
      expect(a.status).toBe(200);
      const body = JSON.parse(a.text) as { deadLetters: Letter[]; workers: unknown[] };
      // Both workers answered: each is listed with how many of the letters are its.
      const owned = (w: number) => body.deadLetters.filter((l) => Math.floor(l.id / ID_SPAN) === w).length;
      expect(body.workers).toEqual([
        { worker: 0, count: owned(0) },
        { worker: 1, count: owned(1) },
      ]);
      return body.deadLetters;
    };
    const owners = (letters: Letter[]) => letters.map((l) => Math.floor(l.id / ID_SPAN));
    const letters = await eventually(
      async () => {
        const l = await lettersVia(0);
        expect(l.map((x) => x.status)).toEqual(['dead', 'dead']);
        expect(owners(l)).toEqual([0, 1]);
        return l;
      },
      { timeoutMs: 30_000 },
    );
    expect(await lettersVia(1)).toEqual(letters);
    for (const id of letters.map((l) => l.id)) expect(String(id)).toMatch(/^\d{1,15}$/);

    // Each requeued through the other worker: gone from the list, and a second requeue finds nothing.
    const [mine, theirs] = letters as [Letter, Letter];
    for (const [letter, via] of [
      [theirs, 0],
      [mine, 1],
    ] as const) {
      const put = await ask(proxy, via, 'POST', `/api/v1/queue/dead-letter/requeue?id=${letter.id}`);
      expect(put).toEqual({ status: 200, text: JSON.stringify({ requeued: 1 }) });
      expect((await lettersVia(via)).map((l) => l.id)).not.toContain(letter.id);
      const again = await ask(proxy, 1 - via, 'POST', `/api/v1/queue/dead-letter/requeue?id=${letter.id}`);
      expect(again.text).toBe(JSON.stringify({ requeued: 0 }));
    }
    // They went back into their owners' queues: refused again there, each is its owner's dead letter again.
    await eventually(
      async () => {
        const l = await lettersVia(undefined);
        expect(owners(l)).toEqual([0, 1]);
        expect(l.map((x) => x.id)).not.toContain(mine.id);
        expect(l.map((x) => x.id)).not.toContain(theirs.id);
      },
      { timeoutMs: 30_000 },
    );
    const bad = await ask(proxy, undefined, 'POST', '/api/v1/queue/dead-letter/requeue?id=x1');
    expect(bad.status).toBe(400);
  });

  it('delivers the queues of two workers after a restart as one process, and of one process after a restart as two', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2, outOfOrderWindow: '30m' }));
    await receiver.stop();
    let count = '2';
    let queueDir = '';
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => {
          queueDir = join(dir, 'queue');
          return ['--workers', count, '--queue.dir', queueDir, '--log-level', 'info', ...FAST];
        },
      }),
    );
    const t = Date.now();
    for (let n = 0; n < 10; n++) {
      expect((await ask(proxy, n % 2, 'POST', '/api/v1/write', three('wq_lowered', n, t))).status).toBe(204);
    }
    await proxy.stop({ graceMs: 30_000 });
    expect(readdirSync(queueDir).sort()).toEqual(['worker-0', 'worker-1']);
    for (const w of ['worker-0', 'worker-1']) {
      expect(readdirSync(join(queueDir, w)).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(0);
    }

    // One process on the same directory: it takes both workers' queues over.
    count = '1';
    await proxy.start();
    expect(workers(proxy.program.pid!).size).toBe(0);
    await receiver.start();
    await eventually(
      async () => expect((await receiver.query('count(last_over_time(wq_lowered[10m]))'))[0]?.value).toBe(30),
      { timeoutMs: 60_000 },
    );
    await eventually(() => expect(readdirSync(queueDir).filter((f) => f.startsWith('worker-'))).toEqual([]));
    expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(30);

    // And back: a queue one process left in --queue.dir is delivered by worker 0 of two.
    await receiver.stop();
    for (let n = 0; n < 4; n++) {
      expect((await ask(proxy, undefined, 'POST', '/api/v1/write', three('wq_raised', n, t))).status).toBe(
        204,
      );
    }
    await proxy.stop({ graceMs: 30_000 });
    count = '2';
    await proxy.start();
    expect(workers(proxy.program.pid!).size).toBe(2);
    await receiver.start();
    await eventually(
      async () => expect((await receiver.query('count(last_over_time(wq_raised[10m]))'))[0]?.value).toBe(12),
      { timeoutMs: 60_000 },
    );
    await eventually(() =>
      expect(readdirSync(queueDir).filter((f) => f.endsWith('.seg') || f === 'ack')).toEqual([]),
    );
  });
});
