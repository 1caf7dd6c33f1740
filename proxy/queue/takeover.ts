// Queue directories nobody owns any more, taken over so that nothing acknowledged is lost when the
// number of processes changes. One process owns `--queue.dir` itself; with `--workers N`, worker i
// owns `<queue.dir>/worker-<i>`. After N is lowered, `worker-<j>` for j >= N is an orphan, and so
// are all of them when the proxy runs as one process again; after one process becomes N workers,
// `--queue.dir` itself is one. Each orphan goes to exactly one owner (worker-<j> to worker j mod N,
// the directory itself to worker 0, everything to a single process), and the primary never runs
// two workers of one index at once, so two processes never open one directory.
//
// The owner moves an orphan's records into its own queue rather than delivering them itself: each
// batch is appended (fsync'd) to its queue before the orphan's ack file moves past it, so a crash
// in between means those records are queued twice (sent twice), never lost. Its dead letters
// become the owner's (same state, new ids), its Pushgateway queue goes into the owner's, and its
// drop counts are added to the owner's. An emptied orphan is removed.

import { readdir, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCardinalError } from '../errors.js';
import { DeadLetters } from './dead-letter.js';
import { parseSegmentFileName } from './format.js';
import type { QueueMetrics } from './metrics.js';
import { DiskQueue, type QueueLogger, type QueueRecord } from './queue.js';
import { DropTally } from './tally.js';

const WORKER_DIR = /^worker-(\d{1,9})$/;

/** Names in a queue directory that mean it holds (or held) a queue. */
function isQueueEntry(name: string): boolean {
  return (
    parseSegmentFileName(name) !== undefined ||
    name === 'ack' ||
    name === 'dropped.json' ||
    name === 'dead-letter' ||
    name === 'pushgateway'
  );
}

/**
 * The orphans one process takes over, given the entries of `--queue.dir`: for a single process
 * (`worker` undefined) every `worker-<j>`; for worker i of N, each `worker-<j>` with j >= N and
 * j mod N = i, and for worker 0 also `--queue.dir` itself (`''`) when it holds a queue. In order of
 * j, the directory itself first. Pure.
 */
export function orphanedDirs(
  entries: readonly string[],
  worker: { readonly index: number; readonly count: number } | undefined,
): string[] {
  const numbered = entries
    .flatMap((name) => {
      const m = WORKER_DIR.exec(name);
      return m === null ? [] : [{ name, j: Number(m[1]) }];
    })
    .sort((a, b) => a.j - b.j);
  if (worker === undefined) return numbered.map((d) => d.name);
  const out = worker.index === 0 && entries.some(isQueueEntry) ? [''] : [];
  for (const d of numbered) if (ownsOrphan(d.j, worker)) out.push(d.name);
  return out;
}

/**
 * Whether this process takes over what worker `j` left: a single process (`worker` undefined)
 * everything, worker i of N what j >= N with j mod N = i left. Pure.
 */
export function ownsOrphan(
  j: number,
  worker: { readonly index: number; readonly count: number } | undefined,
): boolean {
  return worker === undefined || (j >= worker.count && j % worker.count === worker.index);
}

/** Where an orphan's data goes: the owner's queue (and its metrics, tally-wrapped) and dead letters. */
export interface TakeoverTarget {
  readonly queue: DiskQueue;
  readonly metrics: QueueMetrics;
  readonly tally: DropTally;
}

export interface TakeoverOptions {
  /** `--queue.dir`; orphans are named relative to it. */
  readonly root: string;
  readonly orphans: readonly string[];
  readonly remoteWrite: TakeoverTarget & { readonly deadLetters: DeadLetters };
  /** Absent without a Pushgateway: an orphan's push queue is then left where it is. */
  readonly pushgateway: TakeoverTarget | undefined;
  readonly segmentMaxBytes: number;
  readonly logger: QueueLogger;
  readonly signal: AbortSignal;
  /** Records moved per fsync of the owner's queue. */
  readonly batchRecords?: number;
}

export interface MovedCounts {
  records: number;
  samples: number;
  deadLetters: number;
}

/** Takes over every orphan in turn; resolves when all are moved or `signal` aborted. */
export async function takeOverOrphans(o: TakeoverOptions): Promise<MovedCounts> {
  const total: MovedCounts = { records: 0, samples: 0, deadLetters: 0 };
  for (const name of o.orphans) {
    if (o.signal.aborted) break;
    const dir = join(o.root, name);
    const moved: MovedCounts = { records: 0, samples: 0, deadLetters: 0 };
    const letters = join(dir, 'dead-letter');
    if (await exists(letters)) moved.deadLetters = await moveDeadLetters(letters, o);
    let done = await moveQueue(dir, o.remoteWrite, o, moved);
    const push = join(dir, 'pushgateway');
    if (done && (await exists(push))) {
      if (o.pushgateway === undefined) {
        o.logger.warn(
          { dir: push },
          'a Pushgateway queue left by another process, and no --push.url here: kept where it is',
        );
        done = false;
      } else {
        done = await moveQueue(push, o.pushgateway, o, moved);
        if (done) await rmdir(push).catch(() => undefined);
      }
    }
    total.records += moved.records;
    total.samples += moved.samples;
    total.deadLetters += moved.deadLetters;
    if (moved.records > 0 || moved.deadLetters > 0 || done) {
      o.logger.info(
        { dir, ...moved, emptied: done },
        done
          ? 'took over a queue directory no process owns: its records are in this queue now'
          : 'moving a queue directory no process owns: stopped before the end, the rest stays',
      );
    }
    if (done && name !== '') await rmdir(dir).catch(() => undefined);
  }
  return total;
}

async function exists(dir: string): Promise<boolean> {
  return readdir(dir).then(
    () => true,
    () => false,
  );
}

async function moveDeadLetters(dir: string, o: TakeoverOptions): Promise<number> {
  const from = await DeadLetters.open({
    dir,
    maxBytes: Number.MAX_SAFE_INTEGER,
    metrics: o.remoteWrite.metrics,
    logger: o.logger,
  });
  let n = 0;
  for (const l of from.list()) {
    if (o.signal.aborted) return n;
    await o.remoteWrite.deadLetters.add(l.entry, l.state);
    await from.remove(l.id);
    n++;
  }
  // Files moved aside as corrupt stay, and keep the directory.
  await rmdir(dir).catch(() => undefined);
  return n;
}

/**
 * Moves the records of the queue in `dir` into `to.queue`, then its drop counts, then deletes its
 * files. True when it is empty; false when `signal` aborted first.
 */
async function moveQueue(
  dir: string,
  to: TakeoverTarget,
  o: TakeoverOptions,
  moved: MovedCounts,
): Promise<boolean> {
  const from = await DiskQueue.open({
    dir,
    maxBytes: Number.MAX_SAFE_INTEGER,
    segmentMaxBytes: o.segmentMaxBytes,
    fullPolicy: 'reject',
    fullCode: 'QUEUE_FULL',
    metrics: to.metrics,
    logger: o.logger,
  });
  const batchRecords = o.batchRecords ?? 64;
  try {
    let pos = from.acked;
    for (;;) {
      if (o.signal.aborted) return false;
      const batch: QueueRecord[] = [];
      for (let r = await from.read(pos); r !== undefined; r = await from.read(pos)) {
        batch.push(r);
        pos = r.end;
        if (batch.length >= batchRecords) break;
      }
      if (batch.length === 0) break;
      // Appended together (one group commit); acknowledged up to the first that did not fit.
      const results = await Promise.allSettled(batch.map((r) => to.queue.append(r.entry)));
      let taken = 0;
      let refused: unknown;
      for (const [i, result] of results.entries()) {
        const record = batch[i]!;
        const samples = record.entry.samples + record.entry.histograms;
        if (result.status === 'rejected') {
          const err: unknown = result.reason;
          if (!isCardinalError(err) || err.code !== 'QUEUE_RECORD_TOO_LARGE') {
            refused = err;
            break;
          }
          // Larger than this queue's --queue.max-bytes: it can never be queued here.
          to.metrics.dropped('too_large', 1, samples);
          o.logger.error({ dir, samples, err }, 'a taken-over record does not fit this queue: dropped');
        } else {
          moved.records++;
          moved.samples += samples;
        }
        taken++;
      }
      if (taken > 0) await from.ack(batch[taken - 1]!.end, batch.slice(0, taken));
      if (refused !== undefined) {
        if (isCardinalError(refused) && refused.code === 'SHUTTING_DOWN') return false;
        // Full (or its disk is): the drain makes room; go on from the first not taken.
        o.logger.warn(
          { dir, err: refused },
          'no room in this queue for a taken-over record; trying again in a second',
        );
        pos = batch[taken]!.start;
        await sleep(1000, undefined, { signal: o.signal }).catch(() => undefined);
      }
    }
  } finally {
    await from.close();
  }
  if (!from.drained) return false;
  // Its drop counts become this queue's, then go with its files.
  for (const [reason, c] of Object.entries(new DropTally(dir, o.logger).counts)) {
    if (c !== undefined && (c.records > 0 || c.samples > 0))
      to.metrics.dropped(reason as Parameters<QueueMetrics['dropped']>[0], c.records, c.samples);
  }
  await to.tally.flush();
  for (const name of await readdir(dir)) {
    if (
      parseSegmentFileName(name) !== undefined ||
      name === 'ack' ||
      name === 'ack.tmp' ||
      name === 'dropped.json'
    )
      await unlink(join(dir, name)).catch(() => undefined);
  }
  return true;
}
