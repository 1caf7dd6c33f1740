import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeWriteRequestV1, encodeRequestV2, encodeWriteRequestV1 } from '../codec/proto.js';
import { snappyDecode, snappyEncode } from '../codec/snappy.js';
import type { AttemptResult, ForwardRequest } from '../forward/client.js';
import { parseRetryOn } from '../forward/retry.js';
import { DeadLetters } from './dead-letter.js';
import { Drain } from './drain.js';
import type { QueueEntry } from './format.js';
import type { QueueMetrics } from './metrics.js';
import { DiskQueue, type DiskQueueOptions } from './queue.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** One record: `series` series named `m{first..}`, one sample each. */
function entry(first: number, series: number, tenant?: string): QueueEntry {
  const timeseries = Array.from({ length: series }, (_, k) => ({
    labels: [
      { name: '__name__', value: 'm' },
      { name: 'i', value: String(first + k) },
    ],
    samples: [{ value: first + k, timestamp: 1000 }],
    exemplars: [],
    histograms: [],
  }));
  return {
    version: '1.0',
    tenant,
    enqueuedAtMs: Date.now(),
    series,
    samples: series,
    histograms: 0,
    exemplars: 0,
    metadata: 0,
    body: snappyEncode(encodeWriteRequestV1({ timeseries, metadata: [] })),
  };
}

/** The `i` label of every series of a request, to see exactly what the upstream got. */
function seriesOf(req: ForwardRequest): number[] {
  return decodeWriteRequestV1(snappyDecode(req.body, 1 << 30)).timeseries.map((t) =>
    Number(t.labels[1]?.value),
  );
}

interface Counts {
  sent: { records: number; samples: number; requests: number };
  dropped: Record<string, number>;
  retried: number;
}

async function setup(
  answer: (req: ForwardRequest, n: number) => number,
  batch = { maxSamples: 1000, maxBytes: 1 << 20, maxWaitMs: 50 },
  prepare?: (dir: string) => Promise<void>,
  queueOptions: Partial<Pick<DiskQueueOptions, 'maxBytes' | 'segmentMaxBytes' | 'fullPolicy'>> = {},
  lane: { maxRetryAttempts: number } | undefined = undefined,
) {
  const dir = mkdtempSync(join(tmpdir(), 'cardinal-drain-'));
  await prepare?.(dir);
  const counts: Counts = { sent: { records: 0, samples: 0, requests: 0 }, dropped: {}, retried: 0 };
  const metrics: QueueMetrics = {
    appended: () => undefined,
    refused: () => undefined,
    dropped: (reason, _records, samples) => {
      counts.dropped[reason] = (counts.dropped[reason] ?? 0) + samples;
    },
    sent: (records, samples) => {
      counts.sent.records += records;
      counts.sent.samples += samples;
      counts.sent.requests++;
    },
    retried: () => {
      counts.retried++;
    },
    corruption: () => undefined,
    fsync: () => undefined,
  };
  const logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const queue = await DiskQueue.open({
    dir,
    maxBytes: 1 << 20,
    segmentMaxBytes: 1 << 14,
    fullPolicy: 'reject',
    fullCode: 'QUEUE_FULL',
    metrics,
    logger,
    ...queueOptions,
  });
  const requests: { req: ForwardRequest; status: number }[] = [];
  const forwarder = {
    async attempt(req: ForwardRequest): Promise<AttemptResult> {
      const status = answer(req, requests.length);
      requests.push({ req, status });
      return { kind: 'status', status, text: status === 200 ? '' : 'no', retryAfterMs: undefined };
    },
  };
  const deadLetters =
    lane === undefined
      ? undefined
      : await DeadLetters.open({ dir: join(dir, 'dead-letter'), maxBytes: 1 << 20, metrics, logger });
  const drain = new Drain({
    queue,
    forwarder,
    batch,
    retry: { minBackoffMs: 1, maxBackoffMs: 5, budgetMs: 0 },
    retryable: parseRetryOn('5xx,429'),
    metrics,
    logger,
    deadLetters,
    maxRetryAttempts: lane?.maxRetryAttempts ?? 0,
  });
  drain.start();
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanup.push(() => queue.close());
  cleanup.push(() => drain.close());
  // Drained when nothing is left after the acknowledged position.
  const drained = async () => {
    for (let i = 0; i < 500; i++) {
      if (queue.drained) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('the queue did not drain');
  };
  return { queue, requests, counts, drained, drain, deadLetters };
}

const delivered = (requests: { req: ForwardRequest; status: number }[]) =>
  requests.filter((r) => r.status === 200).flatMap((r) => seriesOf(r.req));

describe('Drain', () => {
  it('batches many small records into few requests, in order, never mixing tenants', async () => {
    const { queue, requests, counts, drained } = await setup(() => 200, {
      maxSamples: 10,
      maxBytes: 1 << 20,
      maxWaitMs: 100,
    });
    const appends: Promise<void>[] = [];
    for (let i = 0; i < 30; i++) appends.push(queue.append(entry(i * 2, 2, i >= 20 ? 'other' : undefined)));
    await Promise.all(appends);
    await drained();
    expect(delivered(requests)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    for (const r of requests) {
      const s = seriesOf(r.req);
      expect(s.length).toBeLessThanOrEqual(10);
      // Records 20.. (series 40..) belong to the other tenant.
      expect(s.every((i) => i >= 40) || s.every((i) => i < 40)).toBe(true);
      expect(r.req.tenant).toBe(s[0]! >= 40 ? 'other' : undefined);
    }
    expect(requests.length).toBeLessThan(30);
    expect(counts.sent).toEqual({ records: 30, samples: 60, requests: requests.length });
  });

  it('retries 5xx and 429 until the upstream takes the batch; nothing is lost or dropped', async () => {
    const { queue, requests, counts, drained } = await setup((_r, n) => (n < 3 ? 503 : n < 5 ? 429 : 200));
    await queue.append(entry(0, 3));
    await drained();
    expect(requests.map((r) => r.status)).toEqual([503, 503, 503, 429, 429, 200]);
    expect(delivered(requests)).toEqual([0, 1, 2]);
    expect(counts.retried).toBe(5);
    expect(counts.dropped).toEqual({});
  });

  it('a 413 splits a merged batch along its records; a single original request still too large is dropped, never split or retried', async () => {
    // The upstream takes at most 4 series per request, and never series 5.
    const { queue, requests, counts, drained } = await setup((req) => {
      const s = seriesOf(req);
      return s.length > 4 || s.includes(5) ? 413 : 200;
    });
    await Promise.all([queue.append(entry(0, 4)), queue.append(entry(4, 3))]);
    await drained();
    expect(delivered(requests)).toEqual([0, 1, 2, 3]);
    expect(counts.dropped).toEqual({ too_large: 3 });
    // The batch, then each record once: nothing is sent again, nothing halved down to series.
    expect(requests.map((r) => seriesOf(r.req).length)).toEqual([7, 4, 3]);
  });

  it('a refused merged batch is retried record by record, so only the bad record is dropped', async () => {
    const { queue, requests, counts, drained } = await setup((req) =>
      seriesOf(req).includes(3) ? 400 : 200,
    );
    await Promise.all([0, 2, 4, 6].map((first) => queue.append(entry(first, 2))));
    await drained();
    expect(delivered(requests)).toEqual([0, 1, 4, 5, 6, 7]);
    expect(counts.dropped).toEqual({ rejected: 2 });
    expect(counts.sent.samples).toBe(6);
  });

  it('after a crash, the first request repeats exactly the batch that was in flight, then goes on', async () => {
    const { requests, drained } = await setup(
      () => 200,
      { maxSamples: 1000, maxBytes: 1 << 20, maxWaitMs: 0 },
      async (dir) => {
        // An earlier run: six records queued, the first three sent as one batch, no ack.
        const q = await DiskQueue.open({
          dir,
          maxBytes: 1 << 20,
          segmentMaxBytes: 1 << 14,
          fullPolicy: 'reject',
          fullCode: 'QUEUE_FULL',
          metrics: {
            appended() {},
            refused() {},
            dropped() {},
            sent() {},
            retried() {},
            corruption() {},
            fsync() {},
          },
          logger: { info() {}, warn() {}, error() {} },
        });
        for (let i = 0; i < 6; i++) await q.append(entry(i * 2, 2));
        let pos = q.acked;
        for (let i = 0; i < 3; i++) pos = (await q.read(pos))!.end;
        await q.markSent(pos);
        await q.close();
      },
    );
    await drained();
    expect(requests.map((r) => seriesOf(r.req))).toEqual([
      [0, 1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10, 11],
    ]);
  });

  it('on close, keeps delivering what is queued within the grace time', async () => {
    const { queue, requests, drain } = await setup((_r, n) => (n < 3 ? 503 : 200));
    await queue.append(entry(0, 2));
    await drain.close(10_000);
    expect(requests.map((r) => r.status)).toEqual([503, 503, 503, 200]);
    expect(queue.drained).toBe(true);
    expect(await queue.read(queue.acked)).toBeUndefined();
  });

  it('falls back to 1.0 when the upstream refuses queued 2.0 data with 415', async () => {
    const { queue, requests, counts, drained } = await setup((req) => (req.version === '2.0' ? 415 : 200));
    const req = {
      symbols: ['', '__name__', 'up', 'job', 'a'],
      timeseries: [
        {
          labelsRefs: [1, 2, 3, 4],
          samples: [{ value: 1, timestamp: 1000 }],
          histograms: [],
          exemplars: [],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 0,
        },
      ],
    };
    await queue.append({ ...entry(0, 1), version: '2.0', body: snappyEncode(encodeRequestV2(req)) });
    await drained();
    expect(requests.map((r) => [r.req.version, r.status])).toEqual([
      ['2.0', 415],
      ['1.0', 200],
    ]);
    const v1 = decodeWriteRequestV1(snappyDecode(requests[1]!.req.body, 1 << 30));
    expect(v1.timeseries[0]?.labels).toEqual([
      { name: '__name__', value: 'up' },
      { name: 'job', value: 'a' },
    ]);
    expect(counts.dropped).toEqual({});
    expect(counts.sent.samples).toBe(1);
  });

  it('drop-oldest during an outage: the batch in flight is abandoned, and sent plus dropped is everything', async () => {
    let up = false;
    const size = entry(0, 2).body.length + 40;
    const { queue, requests, counts, drained } = await setup(
      () => (up ? 200 : 503),
      { maxSamples: 4, maxBytes: 1 << 20, maxWaitMs: 0 },
      undefined,
      { maxBytes: 12 * size, segmentMaxBytes: 3 * size, fullPolicy: 'drop-oldest' },
    );
    for (let i = 0; i < 40; i++) await queue.append(entry(i * 2, 2));
    up = true;
    await drained();
    const got = delivered(requests);
    const dropped = counts.dropped.full ?? 0;
    expect(dropped).toBeGreaterThan(0);
    expect(counts.sent.samples + dropped).toBe(80);
    // What arrived is exactly the newest records, each once, in order.
    expect(got).toEqual(Array.from({ length: got.length }, (_, k) => 80 - got.length + k));
    expect(got.length).toBe(counts.sent.samples);
  });
});

describe('Drain: no head-of-line blocking', () => {
  it('property: against a model, good records arrive once and in order; records the upstream fails for go to the retry lane, then become dead letters; an outage makes no good record a dead letter', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 4 }),
        async (poisoned, outage) => {
          // Record k holds series 2k and 2k+1. The upstream answers 500 to any request holding a
          // poisoned record's series, and 503 to everything (the empty probe too) during its
          // first `outage` attempts.
          const poison = new Set(poisoned.flatMap((p, k) => (p ? [2 * k] : [])));
          const { queue, requests, counts, drained, deadLetters } = await setup(
            (req, n) => (n < outage ? 503 : seriesOf(req).some((x) => poison.has(x)) ? 500 : 200),
            { maxSamples: 1000, maxBytes: 1 << 20, maxWaitMs: 20 },
            undefined,
            {},
            { maxRetryAttempts: 3 },
          );
          await Promise.all(poisoned.map((_, k) => queue.append(entry(2 * k, 2))));
          await drained();
          const good = poisoned.flatMap((p, k) => (p ? [] : [2 * k, 2 * k + 1]));
          const bad = poisoned.filter((p) => p).length;
          // The poisoned records are in the lane; each ends as a dead letter after 3 attempts.
          for (let i = 0; i < 500 && deadLetters!.list().some((l) => l.state.status === 'retrying'); i++) {
            await new Promise((r) => setTimeout(r, 10));
          }
          // Delivered exactly once each and in queue order, also when the outage ends between a
          // failure and the probe (the piece is sent once more before it is moved aside).
          expect(delivered(requests)).toEqual(good);
          const letters = deadLetters!.list();
          expect(letters.map((l) => l.entry.samples)).toEqual(Array.from({ length: bad }, () => 2));
          for (const l of letters) {
            expect(l.state).toMatchObject({ status: 'dead', reason: 'retry_exhausted', attempts: 3 });
          }
          expect(counts.dropped).toEqual(bad > 0 ? { retry_exhausted: 2 * bad } : {});
          expect(counts.sent.samples).toBe(good.length);
          // No poisoned record was ever merged with another once it had been isolated.
          const lone = requests.filter((r) => seriesOf(r.req).some((x) => poison.has(x)) && r.status === 500);
          expect(lone.slice(-2 * bad).every((r) => seriesOf(r.req).length === 2)).toBe(true);
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);

  it('an outage that ends just before the probe does not move the record aside: it is sent again first, in order', async () => {
    // Two 503s (a receiver starting up), then everything succeeds, the empty probe first.
    const { queue, requests, drained, deadLetters } = await setup(
      (_req, n) => (n < 2 ? 503 : 200),
      { maxSamples: 1000, maxBytes: 1 << 20, maxWaitMs: 1 },
      undefined,
      {},
      { maxRetryAttempts: 3 },
    );
    await queue.append(entry(0, 2));
    for (let i = 0; i < 500 && requests.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    await queue.append(entry(2, 2));
    await drained();
    // Moved to the retry lane, the first record would arrive after the second: out of order.
    expect(delivered(requests)).toEqual([0, 1, 2, 3]);
    expect(deadLetters!.list()).toEqual([]);
  });

  it('a dead letter survives a restart and is listed with its state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-dlq-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const quiet = () => undefined;
    const metrics: QueueMetrics = {
      appended: quiet,
      refused: quiet,
      dropped: quiet,
      sent: quiet,
      retried: quiet,
      corruption: quiet,
      fsync: quiet,
    };
    const logger = { info: quiet, warn: quiet, error: quiet };
    const a = await DeadLetters.open({ dir, maxBytes: 1 << 20, metrics, logger });
    const e = entry(0, 3, 'team-a');
    await a.add(e, {
      status: 'retrying',
      lastError: '500 no',
      attempts: 1,
      firstFailureMs: 5,
      nextAttemptMs: 6,
    });
    const b = await DeadLetters.open({ dir, maxBytes: 1 << 20, metrics, logger });
    expect(b.list()).toHaveLength(1);
    const [l] = b.list();
    expect(l!.state).toEqual({
      status: 'retrying',
      lastError: '500 no',
      attempts: 1,
      firstFailureMs: 5,
      nextAttemptMs: 6,
    });
    expect(Buffer.from(l!.entry.body).equals(Buffer.from(e.body))).toBe(true);
    expect(l!.entry.tenant).toBe('team-a');
  });

  it('the dead letters stay within their bound, the oldest going first, counted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-dlq-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const dropped: string[] = [];
    const quiet = () => undefined;
    const metrics: QueueMetrics = {
      appended: quiet,
      refused: quiet,
      dropped: (reason) => dropped.push(reason),
      sent: quiet,
      retried: quiet,
      corruption: quiet,
      fsync: quiet,
    };
    const one = entry(0, 3);
    const d = await DeadLetters.open({
      dir,
      maxBytes: 2500,
      metrics,
      logger: { info: quiet, warn: quiet, error: quiet },
    });
    const state = {
      status: 'dead' as const,
      lastError: '',
      attempts: 1,
      firstFailureMs: 0,
      nextAttemptMs: 0,
    };
    for (let i = 0; i < 30; i++) await d.add({ ...one, enqueuedAtMs: i }, state);
    expect(d.bytes).toBeLessThanOrEqual(2500);
    const kept = d.list().map((l) => l.entry.enqueuedAtMs);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 30 - kept.length + i));
    expect(dropped).toEqual(Array.from({ length: 30 - kept.length }, () => 'dead_letter_full'));
  });
});
