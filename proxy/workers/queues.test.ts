import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeadLetterInfo } from '../queue/dead-letter.js';
import {
  globalLetterId,
  LETTER_ID_SPAN,
  letterOwner,
  mergeDeadLetters,
  mergeQueueReports,
  mergeQueueStatus,
  type QueueStatus,
  serveQueues,
  splitRequeue,
  type WholeDeadLetterReport,
} from './queues.js';
import { Rpc } from './rpc.js';

const status = (over: Partial<QueueStatus>): QueueStatus => ({
  bytes: 100,
  maxBytes: 1000,
  segments: 1,
  oldestAgeSeconds: 0,
  full: false,
  diskFull: false,
  dropped: {},
  outOfOrder: { records: 0, samples: 0 },
  deadLetters: { count: 0, bytes: 0, retrying: 0, dead: 0 },
  ...over,
});

describe('mergeQueueStatus', () => {
  it('sums sizes and counts, takes the oldest age and any full state', () => {
    const merged = mergeQueueStatus([
      status({
        bytes: 10,
        oldestAgeSeconds: 3,
        dropped: { rejected: { records: 1, samples: 5 } },
        outOfOrder: { records: 1, samples: 2 },
        deadLetters: { count: 2, bytes: 50, retrying: 1, dead: 1 },
      }),
      status({
        bytes: 20,
        segments: 3,
        oldestAgeSeconds: 9.5,
        diskFull: true,
        dropped: { rejected: { records: 2, samples: 1 }, full: { records: 4, samples: 40 } },
        deadLetters: { count: 1, bytes: 7, retrying: 0, dead: 1 },
      }),
    ]);
    expect(merged).toEqual({
      bytes: 30,
      maxBytes: 2000,
      segments: 4,
      oldestAgeSeconds: 9.5,
      full: false,
      diskFull: true,
      dropped: { rejected: { records: 3, samples: 6 }, full: { records: 4, samples: 40 } },
      outOfOrder: { records: 1, samples: 2 },
      deadLetters: { count: 3, bytes: 57, retrying: 1, dead: 2 },
    });
  });

  it('keeps deadLetters null when no worker has them (the Pushgateway queue)', () => {
    expect(
      mergeQueueStatus([status({ deadLetters: null }), status({ deadLetters: null })]).deadLetters,
    ).toBeNull();
  });
});

describe('mergeQueueReports', () => {
  it('totals the workers that answered and lists every worker', () => {
    const workers = [
      { worker: 0, queues: { remote_write: status({ bytes: 1 }), pushgateway: status({ bytes: 5 }) } },
      { worker: 1, error: 'not serving (starting, or being started again)' },
      { worker: 2, queues: { remote_write: status({ bytes: 2, full: true }) } },
    ];
    const merged = mergeQueueReports(workers);
    expect(merged.queues.remote_write).toMatchObject({ bytes: 3, full: true, maxBytes: 2000 });
    expect(merged.queues.pushgateway).toMatchObject({ bytes: 5 });
    expect(merged.workers).toBe(workers);
  });
});

const letter = (id: number): DeadLetterInfo => ({
  id,
  status: 'dead',
  reason: 'rejected',
  lastError: '400 Bad Request',
  attempts: 1,
  firstFailure: '2026-12-02T00:00:00.000Z',
  enqueuedAt: '2026-12-02T00:00:00.000Z',
  protocol: '1.0',
  tenant: null,
  series: 1,
  samples: 1,
  bytes: 100,
});

/** Two channel ends that deliver to each other at once (the IPC channel, in memory). */
function channel(): [Rpc, Rpc] {
  const ends: Rpc[] = [];
  ends.push(new Rpc((m) => ends[1]!.receive(m)), new Rpc((m) => ends[0]!.receive(m)));
  return ends as [Rpc, Rpc];
}

describe('mergeDeadLetters', () => {
  it('lists the letters of the workers that answered, in worker order, and every worker with its count or error', () => {
    const merged = mergeDeadLetters([
      { worker: 2, deadLetters: [letter(globalLetterId(2, 1))] },
      { worker: 0, deadLetters: [letter(1), letter(2)] },
      { worker: 1, error: 'queue.local.deadLetters: no answer within 5000 ms' },
    ]);
    expect(merged.deadLetters.map((l) => l.id)).toEqual([1, 2, globalLetterId(2, 1)]);
    expect(merged.workers).toEqual([
      { worker: 0, count: 2 },
      { worker: 1, error: 'queue.local.deadLetters: no answer within 5000 ms' },
      { worker: 2, count: 1 },
    ]);
  });
});

describe('serveQueues: dead letters', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers from the workers that answered, naming one being started again and one that did not answer', async () => {
    vi.useFakeTimers();
    // The channel of the worker that took the request.
    const [asker, primarySide] = channel();
    serveQueues(primarySide, {
      workers: 3,
      // Worker 1 is being started again: not live.
      live: () => [0, 2].map((index) => ({ index, rpc: workerEnds[index]! })),
    });
    const workerEnds: Record<number, Rpc> = {};
    for (const index of [0, 2]) {
      const [toWorker, worker] = channel();
      workerEnds[index] = toWorker;
      worker.handle('queue.local.deadLetters', () =>
        // Worker 2 never answers (busy, or stuck).
        index === 0 ? [letter(1), letter(2)] : new Promise(() => undefined),
      );
    }
    const answer = asker.call<WholeDeadLetterReport>('queue.deadLetters', undefined, 60_000);
    await vi.advanceTimersByTimeAsync(5000);
    const got = await answer;
    expect(got.deadLetters.map((l) => l.id)).toEqual([1, 2]);
    expect(got.workers).toEqual([
      { worker: 0, count: 2 },
      { worker: 1, error: 'not serving (starting, or being started again)' },
      { worker: 2, error: 'queue.local.deadLetters: no answer within 5000 ms' },
    ]);
  });
});

describe('dead-letter ids', () => {
  it.each([
    [0, 1],
    [0, 999_999_999_999],
    [1, 1],
    [255, 123_456],
  ])("worker %i, letter %i: unique, within the route's 15 digits, and found again", (worker, local) => {
    const id = globalLetterId(worker, local);
    expect(String(id)).toMatch(/^\d{1,15}$/);
    expect(letterOwner(id)).toEqual({ worker, local });
  });

  it("keeps worker 0 ids as the letters' own numbers", () => {
    expect(globalLetterId(0, 42)).toBe(42);
  });

  it.each([0, LETTER_ID_SPAN, 2 * LETTER_ID_SPAN, -1, 1.5])('names no letter: %d', (id) => {
    expect(letterOwner(id)).toBeUndefined();
  });
});

describe('splitRequeue', () => {
  it('asks each worker for its own ids, and none for a worker that does not exist', () => {
    const got = splitRequeue([3, globalLetterId(1, 7), 4, globalLetterId(5, 1), 0], 2);
    expect([...got]).toEqual([
      [0, [3, 4]],
      [1, [globalLetterId(1, 7)]],
    ]);
  });

  it('asks every worker for all', () => {
    expect([...splitRequeue('all', 3)]).toEqual([
      [0, 'all'],
      [1, 'all'],
      [2, 'all'],
    ]);
  });
});
