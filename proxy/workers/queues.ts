// `--workers N`: the durable queue's routes for the whole proxy. Each worker owns its queue
// (`<queue.dir>/worker-<i>`), so whichever worker takes `GET /api/v1/status/queue`,
// `GET /api/v1/queue/dead-letter` or `POST /api/v1/queue/dead-letter/requeue` asks the primary,
// which asks every worker and merges their answers:
// - the status lists each worker's queues and their totals (sizes and counts summed, the oldest
//   age the largest, full or disk-full when any worker's is);
// - dead letters are listed with ids unique across the workers, `worker × 10^12 + the letter's
//   number in its directory` (worker 0's ids are its numbers, as in one process), so a requeue by
//   id reaches the worker that owns the letter, whichever worker took the request;
// - both answer from the workers that answered, and list each worker with its part (or the reason
//   it has none: being started again, or no answer in time), so a partial answer says so.

import type { DeadLetterInfo, DeadLetterReport } from '../queue/dead-letter.js';
import type { QueueGauges, QueueName } from '../queue/metrics.js';
import type { Tallies } from '../queue/tally.js';
import { askEveryWorker, type Rpc } from './rpc.js';
import type { WorkerContext } from './worker.js';

interface Counts {
  readonly records: number;
  readonly samples: number;
}

/** One queue's part of GET /api/v1/status/queue. */
export interface QueueStatus extends QueueGauges {
  readonly dropped: Tallies;
  readonly outOfOrder: Counts;
  readonly deadLetters: {
    readonly count: number;
    readonly bytes: number;
    readonly retrying: number;
    readonly dead: number;
  } | null;
}

export interface QueueStatusReport {
  readonly queues: Partial<Record<QueueName, QueueStatus>>;
}

/** The whole proxy's status: the totals, and each worker's report (or why it has none). */
export interface WholeQueueStatus extends QueueStatusReport {
  readonly workers: readonly ({ readonly worker: number } & (
    | QueueStatusReport
    | { readonly error: string }
  ))[];
}

/** The whole proxy's dead letters, and how many each worker has (or why it has no part). */
export interface WholeDeadLetterReport extends DeadLetterReport {
  readonly workers: readonly ({ readonly worker: number } & (
    | { readonly count: number }
    | { readonly error: string }
  ))[];
}

/** The queue routes' backend (proxy/server.ts ServerDeps.queueApi). */
export interface QueueApi {
  readonly status: () => QueueStatusReport | Promise<QueueStatusReport>;
  readonly deadLetters: () => DeadLetterReport | Promise<DeadLetterReport>;
  readonly requeue: (ids: readonly number[] | 'all') => Promise<number>;
}

/** Dead-letter ids of one worker: its letters' numbers plus its index times this. */
export const LETTER_ID_SPAN = 1e12;

export function globalLetterId(worker: number, local: number): number {
  return worker * LETTER_ID_SPAN + local;
}

/** The worker and the letter's number in its directory; undefined for no id a worker gives. */
export function letterOwner(id: number): { worker: number; local: number } | undefined {
  if (!Number.isSafeInteger(id) || id < 1) return undefined;
  const local = id % LETTER_ID_SPAN;
  if (local === 0) return undefined;
  return { worker: Math.floor(id / LETTER_ID_SPAN), local };
}

function addTallies(into: Record<string, { records: number; samples: number }>, t: Tallies): void {
  for (const [reason, c] of Object.entries(t)) {
    if (c === undefined) continue;
    const sum = into[reason] ?? { records: 0, samples: 0 };
    into[reason] = { records: sum.records + c.records, samples: sum.samples + c.samples };
  }
}

/** One queue's totals over the workers. Pure. */
export function mergeQueueStatus(parts: readonly QueueStatus[]): QueueStatus {
  const dropped: Record<string, { records: number; samples: number }> = {};
  let letters: { count: number; bytes: number; retrying: number; dead: number } | null = null;
  for (const p of parts) {
    addTallies(dropped, p.dropped);
    if (p.deadLetters !== null) {
      letters ??= { count: 0, bytes: 0, retrying: 0, dead: 0 };
      letters.count += p.deadLetters.count;
      letters.bytes += p.deadLetters.bytes;
      letters.retrying += p.deadLetters.retrying;
      letters.dead += p.deadLetters.dead;
    }
  }
  const sum = (f: (p: QueueStatus) => number) => parts.reduce((a, p) => a + f(p), 0);
  return {
    bytes: sum((p) => p.bytes),
    maxBytes: sum((p) => p.maxBytes),
    segments: sum((p) => p.segments),
    oldestAgeSeconds: parts.reduce((a, p) => Math.max(a, p.oldestAgeSeconds), 0),
    full: parts.some((p) => p.full),
    diskFull: parts.some((p) => p.diskFull),
    dropped: dropped as Tallies,
    outOfOrder: {
      records: sum((p) => p.outOfOrder.records),
      samples: sum((p) => p.outOfOrder.samples),
    },
    deadLetters: letters,
  };
}

/** The whole proxy's status from each worker's answer, in worker order. Pure. */
export function mergeQueueReports(workers: WholeQueueStatus['workers']): WholeQueueStatus {
  const byQueue = new Map<QueueName, QueueStatus[]>();
  for (const w of workers) {
    if (!('queues' in w)) continue;
    for (const [name, status] of Object.entries(w.queues) as [QueueName, QueueStatus | undefined][]) {
      if (status === undefined) continue;
      const list = byQueue.get(name) ?? [];
      list.push(status);
      byQueue.set(name, list);
    }
  }
  const queues: Partial<Record<QueueName, QueueStatus>> = {};
  for (const name of ['remote_write', 'pushgateway'] as const) {
    const list = byQueue.get(name);
    if (list !== undefined) queues[name] = mergeQueueStatus(list);
  }
  return { queues, workers };
}

/**
 * The whole proxy's dead letters from each worker's answer (its letters, or why it has none), in
 * worker order. Pure.
 */
export function mergeDeadLetters(
  workers: readonly ({ readonly worker: number } & (
    | { readonly deadLetters: readonly DeadLetterInfo[] }
    | { readonly error: string }
  ))[],
): WholeDeadLetterReport {
  const sorted = [...workers].sort((a, b) => a.worker - b.worker);
  return {
    deadLetters: sorted.flatMap((w) => ('deadLetters' in w ? w.deadLetters : [])),
    workers: sorted.map((w) =>
      'deadLetters' in w
        ? { worker: w.worker, count: w.deadLetters.length }
        : { worker: w.worker, error: w.error },
    ),
  };
}

/** The requeue to ask of each worker: `all`, or the ids it owns (unknown workers get nothing). */
export function splitRequeue(
  ids: readonly number[] | 'all',
  workers: number,
): Map<number, readonly number[] | 'all'> {
  const out = new Map<number, readonly number[] | 'all'>();
  if (ids === 'all') {
    for (let i = 0; i < workers; i++) out.set(i, 'all');
    return out;
  }
  const byWorker = new Map<number, number[]>();
  for (const id of ids) {
    const owner = letterOwner(id);
    if (owner === undefined || owner.worker >= workers) continue;
    const list = byWorker.get(owner.worker) ?? [];
    list.push(id);
    byWorker.set(owner.worker, list);
  }
  for (const [w, list] of byWorker) out.set(w, list);
  return out;
}

const ASK_MS = 5000;
const REQUEUE_MS = 120_000;

/**
 * The primary's side, registered on each worker's channel: answers the queue routes by asking
 * every running worker. A worker being started again, or one that does not answer within 5 s,
 * has no part in the answer, which lists it with the reason.
 */
export function serveQueues(
  rpc: Rpc,
  o: {
    readonly workers: number;
    readonly live: () => readonly { readonly index: number; readonly rpc: Rpc }[];
  },
): void {
  const running = (i: number) => o.live().find((l) => l.index === i);
  /** Every worker's answer to `method`, or why it has none; never throws. */
  const askEach = <T>(method: string) => askEveryWorker<T>(o.workers, o.live(), method, undefined, ASK_MS);
  rpc.handle('queue.status', async () =>
    mergeQueueReports(
      (await askEach<QueueStatusReport>('queue.local.status')).map((p) =>
        'answer' in p ? { worker: p.worker, ...p.answer } : p,
      ),
    ),
  );
  rpc.handle('queue.deadLetters', async () =>
    mergeDeadLetters(
      (await askEach<DeadLetterInfo[]>('queue.local.deadLetters')).map((p) =>
        'answer' in p ? { worker: p.worker, deadLetters: p.answer } : p,
      ),
    ),
  );
  rpc.handle('queue.requeue', async (arg) => {
    const asks = splitRequeue(arg as readonly number[] | 'all', o.workers);
    const counts = await Promise.all(
      [...asks].map(([i, ids]) => running(i)?.rpc.call<number>('queue.local.requeue', ids, REQUEUE_MS) ?? 0),
    );
    return counts.reduce((a, n) => a + n, 0);
  });
}

/**
 * The worker's side: serves its own queue to the primary (dead-letter ids made unique across the
 * workers) and returns the routes' backend, which asks the primary for the whole proxy.
 */
export function wholeProxyQueueApi(ctx: WorkerContext, local: QueueApi): QueueApi {
  ctx.rpc.handle('queue.local.status', () => local.status());
  ctx.rpc.handle('queue.local.deadLetters', async () =>
    (await local.deadLetters()).deadLetters.map((l) => ({ ...l, id: globalLetterId(ctx.index, l.id) })),
  );
  ctx.rpc.handle('queue.local.requeue', (arg) => {
    const ids = arg as readonly number[] | 'all';
    if (ids === 'all') return local.requeue('all');
    return local.requeue(
      ids.flatMap((id) => (letterOwner(id)?.worker === ctx.index ? [letterOwner(id)!.local] : [])),
    );
  });
  return {
    status: () => ctx.rpc.call<WholeQueueStatus>('queue.status', undefined, 2 * ASK_MS),
    deadLetters: () => ctx.rpc.call<WholeDeadLetterReport>('queue.deadLetters', undefined, 2 * ASK_MS),
    requeue: (ids) => ctx.rpc.call<number>('queue.requeue', ids, 2 * REQUEUE_MS),
  };
}
