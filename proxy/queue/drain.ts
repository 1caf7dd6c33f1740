// The drain loop: reads the durable queue in order, batches records, sends each batch upstream
// and acknowledges it in the queue once the upstream took it (or it was dropped and counted).
// One batch is in flight at a time, so the upstream receives every series' samples in order, as
// Prometheus's TSDB requires (remote-write 1.0 and 2.0 senders keep per-series order too).

import { setTimeout as sleep } from 'node:timers/promises';
import type { AttemptResult, Forwarder } from '../forward/client.js';
import { backoffDelay, type RetryPolicy } from '../forward/retry.js';
import { rateLimited } from '../ratelimit.js';
import { downConvert, firstSeries, mergeEntries, type Piece, separate, splitPiece } from './batch.js';
import { comparePositions, type Position } from './format.js';
import { supervise, untilDrained } from './loop.js';
import type { DropReason, QueueMetrics } from './metrics.js';
import type { DiskQueue, QueueLogger, QueueRecord } from './queue.js';

export interface BatchLimits {
  /** Float and histogram samples per outgoing request; a single larger record goes alone. */
  readonly maxSamples: number;
  /** Compressed bytes of queued bodies per outgoing request. */
  readonly maxBytes: number;
  /** How long the oldest record of a batch may wait for more to join it. */
  readonly maxWaitMs: number;
}

export interface DrainOptions {
  readonly queue: DiskQueue;
  readonly forwarder: Pick<Forwarder, 'attempt'>;
  readonly batch: BatchLimits;
  /** Backoff between attempts; its budget is ignored: with a queue, retries go on until they succeed. */
  readonly retry: RetryPolicy;
  /** Statuses retried; other non-2xx statuses drop what was sent (413 is split first). */
  readonly retryable: (status: number) => boolean;
  readonly metrics: QueueMetrics;
  readonly logger: QueueLogger;
  readonly random?: () => number;
}

interface Batch {
  readonly records: QueueRecord[];
  readonly end: Position;
}

type Delivery = 'done' | 'aborted';

export class Drain {
  readonly #opts: DrainOptions;
  readonly #closing = new AbortController();
  readonly #random: () => number;
  #loop: Promise<void> | undefined;
  /** Aborted when drop-oldest took the records of the batch in flight. */
  #dropped = new AbortController();
  readonly #unsubscribe: () => void;
  readonly #logDrop = rateLimited(10_000);
  #replayEnd: Position | undefined;

  constructor(opts: DrainOptions) {
    this.#opts = opts;
    this.#random = opts.random ?? Math.random;
    this.#replayEnd = opts.queue.replayEnd;
    this.#unsubscribe = opts.queue.onDrop(() => {
      this.#dropped.abort();
      this.#dropped = new AbortController();
    });
  }

  start(): void {
    this.#loop ??= this.#supervise();
  }

  /** Runs the loop; an unexpected error restarts it from the acknowledged position after a pause. */
  #supervise(): Promise<void> {
    return supervise(
      () => this.#run(),
      this.#closing.signal,
      (err) => this.#opts.logger.error({ err }, 'queue drain loop failed; restarting in 1s'),
    );
  }

  /**
   * Keeps delivering for up to `graceMs` while anything is queued (on SIGTERM, so that a pod whose
   * queue lives on an emptyDir hands its data over before the volume goes), then stops, cutting
   * the attempt in flight short. What is left stays on disk for the next start.
   */
  async close(graceMs = 0): Promise<void> {
    await untilDrained(this.#opts.queue, graceMs);
    this.#closing.abort();
    this.#unsubscribe();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { queue, logger } = this.#opts;
    let cursor = queue.acked;
    // Only the first batch after a start repeats the one in flight before, even if the loop restarts.
    let replayEnd = this.#replayEnd;
    this.#replayEnd = undefined;
    if (replayEnd !== undefined) {
      logger.info(
        { from: queue.acked, to: replayEnd },
        'resending the batch that was in flight when the proxy stopped; the upstream may already hold it',
      );
    }
    while (!this.#closing.signal.aborted) {
      const generation = queue.generation;
      let batch: Batch | undefined;
      try {
        batch = await this.#collect(cursor, replayEnd);
      } catch (err) {
        logger.error({ err }, 'reading the queue failed; retrying');
        await sleep(1000, undefined, { signal: this.#closing.signal }).catch(() => undefined);
        cursor = queue.acked;
        continue;
      }
      if (batch === undefined) break;
      if (queue.generation !== generation) {
        cursor = queue.acked;
        continue;
      }
      const replay = replayEnd !== undefined;
      replayEnd = undefined;
      queue.noteHead(batch.records[0]!.entry.enqueuedAtMs);
      if (!replay) await queue.markSent(batch.end);
      let outcome: Delivery;
      try {
        outcome = await this.#deliver(mergeEntries(batch.records.map((r) => r.entry)), replay, generation);
      } catch (err) {
        // Records that pass their checksum but do not decode: written by a faulty proxy, or
        // damaged before the checksum was taken. They can never be sent; retrying would stall
        // everything behind them.
        let samples = 0;
        for (const r of batch.records) samples += r.entry.samples + r.entry.histograms;
        this.#opts.metrics.dropped('corrupt', batch.records.length, samples);
        logger.error({ err, records: batch.records.length }, 'queued records do not decode; dropped');
        outcome = 'done';
      }
      if (outcome === 'aborted') {
        cursor = queue.acked;
        continue;
      }
      await queue.ack(batch.end, batch.records);
      cursor = batch.end;
    }
  }

  /**
   * Collects the next batch from `from`: records of one tenant and protocol version, up to the
   * limits, waiting at most until the first record is `maxWaitMs` old for more to arrive. After a
   * restart the first batch is exactly [acked, replayEnd). Undefined when closing.
   */
  async #collect(from: Position, replayEnd: Position | undefined): Promise<Batch | undefined> {
    const { queue, batch: limits } = this.#opts;
    const signal = this.#closing.signal;
    let first: QueueRecord | undefined;
    while (first === undefined) {
      if (signal.aborted) return undefined;
      first = await queue.read(from);
      if (first === undefined) await queue.waitForData(60_000, signal);
    }
    const records = [first];
    let samples = first.entry.samples + first.entry.histograms;
    let bytes = first.entry.body.length;
    let end = first.end;
    const deadline = first.entry.enqueuedAtMs + limits.maxWaitMs;
    for (;;) {
      if (signal.aborted) return undefined;
      if (replayEnd !== undefined) {
        if (comparePositions(end, replayEnd) >= 0) break;
        const r = await queue.read(end);
        if (r === undefined) break;
        records.push(r);
        end = r.end;
        continue;
      }
      if (samples >= limits.maxSamples || bytes >= limits.maxBytes) break;
      const r = await queue.read(end);
      if (r !== undefined) {
        const e = r.entry;
        if (e.version !== first.entry.version || e.tenant !== first.entry.tenant) break;
        const s = e.samples + e.histograms;
        if (samples + s > limits.maxSamples || bytes + e.body.length > limits.maxBytes) break;
        records.push(r);
        samples += s;
        bytes += e.body.length;
        end = r.end;
        continue;
      }
      const wait = deadline - Date.now();
      if (wait <= 0) break;
      await queue.waitForData(wait, signal);
    }
    return { records, end };
  }

  /**
   * Sends a piece until the upstream took it or it was dropped: retryable failures are retried
   * with backoff without a time limit; a 413 splits the piece in halves; any other refusal of a
   * merged piece sends its records one by one, so that one bad record does not take the others
   * with it; a refused single record (or a single series still too large) is dropped and counted.
   */
  async #deliver(piece: Piece, replay: boolean, generation: number): Promise<Delivery> {
    const { queue, metrics } = this.#opts;
    const result = await this.#sendUntilFinal(piece, generation);
    if (result === 'aborted') return 'aborted';
    if (result.status >= 200 && result.status < 300) {
      metrics.sent(piece.records, piece.samples);
      return 'done';
    }
    if (result.status === 415 && piece.version === '2.0') {
      this.#logDrop('downconvert', (suppressed) =>
        this.#opts.logger.warn(
          { upstream: result.text, suppressed },
          'upstream refused remote-write 2.0 with 415; sending queued 2.0 data as 1.0 (set --upstream.protocol 1.0 to convert on ingest)',
        ),
      );
      return this.#deliver(downConvert(piece), replay, generation);
    }
    const parts = result.status === 413 ? splitPiece(piece) : separate(piece);
    if (parts !== undefined) {
      for (const part of parts) {
        if ((await this.#deliver(part, replay, generation)) === 'aborted') return 'aborted';
        if (queue.generation !== generation) return 'aborted';
      }
      return 'done';
    }
    const reason: DropReason = result.status === 413 ? 'too_large' : 'rejected';
    metrics.dropped(reason, Math.max(piece.records, 1), piece.samples);
    this.#logDrop(reason, (suppressed) =>
      this.#opts.logger.warn(
        {
          status: result.status,
          upstream: result.text,
          tenant: piece.tenant,
          protocol: piece.version,
          samples: piece.samples,
          firstSeries: firstSeries(piece),
          // After a restart the first batch may already be in the upstream; a receiver then
          // refuses its older samples as out of order, which loses nothing.
          replayAfterRestart: replay,
          suppressed,
        },
        'upstream refused queued data; dropped',
      ),
    );
    return 'done';
  }

  async #sendUntilFinal(
    piece: Piece,
    generation: number,
  ): Promise<Extract<AttemptResult, { kind: 'status' }> | 'aborted'> {
    const { forwarder, queue, metrics, retryable } = this.#opts;
    const signal = this.#closing.signal;
    const dropped = this.#dropped.signal;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted || queue.generation !== generation) return 'aborted';
      const r = await forwarder.attempt(
        { body: piece.body, version: piece.version, tenant: piece.tenant },
        { signal, retryable },
      );
      if (signal.aborted || queue.generation !== generation) return 'aborted';
      let retryAfterMs: number | undefined;
      if (r.kind === 'status') {
        const ok = r.status >= 200 && r.status < 300;
        if (ok || !retryable(r.status)) return r;
        metrics.retried(String(r.status));
        retryAfterMs = r.retryAfterMs;
      } else {
        metrics.retried(r.reason);
      }
      const delay = backoffDelay(this.#opts.retry, attempt, retryAfterMs, this.#random);
      try {
        await sleep(delay, undefined, { signal: AbortSignal.any([signal, dropped]) });
      } catch {
        return 'aborted';
      }
    }
  }
}
