import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DeadLetters } from './dead-letter.js';
import type { QueueEntry } from './format.js';
import type { QueueMetrics } from './metrics.js';
import { DiskQueue, type QueueRecord } from './queue.js';
import { orphanedDirs, takeOverOrphans } from './takeover.js';
import { DropTally } from './tally.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'cardinal-takeover-'));
  dirs.push(d);
  return d;
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

function metrics(): QueueMetrics & { dropped: QueueMetrics['dropped']; drops: [string, number, number][] } {
  const drops: [string, number, number][] = [];
  return {
    drops,
    appended: () => undefined,
    refused: () => undefined,
    dropped: (reason, records, samples) => {
      drops.push([reason, records, samples]);
    },
    sent: () => undefined,
    retried: () => undefined,
    corruption: () => undefined,
    fsync: () => undefined,
  };
}

function entry(i: number): QueueEntry {
  return {
    version: '1.0',
    tenant: undefined,
    enqueuedAtMs: 1_700_000_000_000 + i,
    series: 1,
    samples: 3,
    histograms: 0,
    exemplars: 0,
    metadata: 0,
    body: Buffer.alloc(40, i % 256),
  };
}

const open = (dir: string, m: QueueMetrics, maxBytes = 1 << 20) =>
  DiskQueue.open({
    dir,
    maxBytes,
    segmentMaxBytes: 1 << 12,
    fullPolicy: 'reject',
    fullCode: 'QUEUE_FULL',
    metrics: m,
    logger: quiet,
  });

async function readAll(q: DiskQueue): Promise<QueueRecord[]> {
  const out: QueueRecord[] = [];
  let pos = q.acked;
  for (let r = await q.read(pos); r !== undefined; r = await q.read(pos)) {
    out.push(r);
    pos = r.end;
  }
  return out;
}

describe('orphanedDirs', () => {
  const entries = [
    'worker-0',
    'worker-1',
    'worker-2',
    'worker-3',
    'worker-10',
    'usage-state.json',
    'workers',
  ];
  it.each([
    [
      'a single process takes every worker directory',
      undefined,
      ['worker-0', 'worker-1', 'worker-2', 'worker-3', 'worker-10'],
    ],
    ['worker 0 of 2 takes the even ones from 2 on', { index: 0, count: 2 }, ['worker-2', 'worker-10']],
    ['worker 1 of 2 takes the odd ones from 3 on', { index: 1, count: 2 }, ['worker-3']],
    ['worker 1 of 3', { index: 1, count: 3 }, ['worker-10']],
    ['worker 3 of 4 takes none', { index: 3, count: 4 }, []],
  ] as const)('%s', (_name, worker, want) => {
    expect(orphanedDirs(entries, worker)).toEqual(want);
  });

  it('gives a single process queue in --queue.dir itself to worker 0 alone', () => {
    const root = ['0000000000000001.seg', 'ack', 'dead-letter', 'worker-0'];
    expect(orphanedDirs(root, { index: 0, count: 2 })).toEqual(['']);
    expect(orphanedDirs(root, { index: 1, count: 2 })).toEqual([]);
    expect(
      orphanedDirs(['worker-0', 'worker-1', 'usage-state.json.worker-0'], { index: 0, count: 2 }),
    ).toEqual([]);
  });

  it('gives every orphan to exactly one of N workers', () => {
    const many = Array.from({ length: 40 }, (_, j) => `worker-${j}`);
    for (const n of [1, 2, 3, 7]) {
      const taken = Array.from({ length: n }, (_, i) => orphanedDirs(many, { index: i, count: n })).flat();
      expect(taken.sort()).toEqual(many.slice(n).sort());
    }
  });
});

describe('takeOverOrphans', () => {
  it('moves records, dead letters, push records and drop counts into the owner, then removes the orphan', async () => {
    const root = tmp();
    const orphan = join(root, 'worker-1');
    // What a worker left: 10 records of which the first 3 were delivered, a dead letter, a push queue.
    const om = metrics();
    const old = await open(orphan, om);
    for (let i = 0; i < 10; i++) await old.append(entry(i));
    const first = await readAll(old);
    await old.ack(first[2]!.end, first.slice(0, 3));
    await old.close();
    const oldLetters = await DeadLetters.open({
      dir: join(orphan, 'dead-letter'),
      maxBytes: 1 << 20,
      metrics: om,
      logger: quiet,
    });
    await oldLetters.add(entry(99), {
      status: 'dead',
      lastError: '400',
      reason: 'rejected',
      attempts: 1,
      firstFailureMs: 1,
      nextAttemptMs: 0,
    });
    const oldPush = await open(join(orphan, 'pushgateway'), om);
    await oldPush.append(entry(50));
    await oldPush.close();
    writeFileSync(join(orphan, 'dropped.json'), JSON.stringify({ rejected: { records: 2, samples: 7 } }));

    const own = join(root, 'worker-0');
    const m = metrics();
    const tally = new DropTally(own, quiet);
    const wrapped = tally.wrap(m);
    const queue = await open(own, wrapped);
    await queue.append(entry(200));
    const deadLetters = await DeadLetters.open({
      dir: join(own, 'dead-letter'),
      maxBytes: 1 << 20,
      metrics: wrapped,
      logger: quiet,
    });
    const pm = metrics();
    const pushTally = new DropTally(join(own, 'pushgateway'), quiet);
    const push = await open(join(own, 'pushgateway'), pushTally.wrap(pm));

    const moved = await takeOverOrphans({
      root,
      orphans: ['worker-1'],
      remoteWrite: { queue, metrics: wrapped, tally, deadLetters },
      pushgateway: { queue: push, metrics: pushTally.wrap(pm), tally: pushTally },
      segmentMaxBytes: 1 << 12,
      logger: quiet,
      signal: new AbortController().signal,
      batchRecords: 4,
    });
    expect(moved).toEqual({ records: 8, samples: 24, deadLetters: 1 });
    expect((await readAll(queue)).map((r) => r.entry.body[0])).toEqual([200, 3, 4, 5, 6, 7, 8, 9]);
    expect((await readAll(push)).map((r) => r.entry.body[0])).toEqual([50]);
    expect(deadLetters.list().map((l) => [l.entry.body[0], l.state.reason])).toEqual([[99, 'rejected']]);
    expect(m.drops).toContainEqual(['rejected', 2, 7]);
    await tally.flush();
    expect(JSON.parse(readFileSync(join(own, 'dropped.json'), 'utf8'))).toEqual({
      rejected: { records: 2, samples: 7 },
    });
    expect(existsSync(orphan)).toBe(false);
    expect(readdirSync(root).sort()).toEqual(['worker-0']);
  });

  it('stops when aborted and leaves what it did not move where it was', async () => {
    const root = tmp();
    const orphan = join(root, 'worker-2');
    const old = await open(orphan, metrics());
    for (let i = 0; i < 6; i++) await old.append(entry(i));
    await old.close();
    // The owner's queue has room for two records only: the rest waits for room, then is aborted.
    const m = metrics();
    const queue = await open(join(root, 'worker-0'), m, 2 * 120 + 64);
    const deadLetters = await DeadLetters.open({
      dir: join(root, 'worker-0', 'dead-letter'),
      maxBytes: 1 << 20,
      metrics: m,
      logger: quiet,
    });
    const stop = new AbortController();
    const running = takeOverOrphans({
      root,
      orphans: ['worker-2'],
      remoteWrite: { queue, metrics: m, tally: new DropTally(join(root, 'worker-0'), quiet), deadLetters },
      pushgateway: undefined,
      segmentMaxBytes: 1 << 12,
      logger: quiet,
      signal: stop.signal,
    });
    await new Promise((r) => setTimeout(r, 300));
    stop.abort();
    const moved = await running;
    expect(moved.records).toBeGreaterThan(0);
    expect(moved.records).toBeLessThan(6);
    await queue.close();
    // Reopened, the orphan holds exactly the records not moved: nothing lost, nothing twice.
    const left = await readAll(await open(orphan, metrics()));
    const taken = await readAll(await open(join(root, 'worker-0'), metrics()));
    expect([...taken, ...left].map((r) => r.entry.body[0])).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
