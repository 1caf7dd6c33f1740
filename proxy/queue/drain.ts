// The drain loop: reads the durable queue in order, batches records, sends each batch upstream
// and acknowledges it in the queue once the upstream took it (or it was dropped and counted).
// One batch is in flight at a time, so the upstream receives every series' samples in order, as
// Prometheus's TSDB requires (remote-write 1.0 and 2.0 senders keep per-series order too).

import { setTimeout as sleep } from 'node:timers/promises';
import { snappyEncode } from '../codec/snappy.js';
import { CardinalError } from '../errors.js';
import type { AttemptResult, Forwarder } from '../forward/client.js';
import { backoffDelay, type RetryPolicy } from '../forward/retry.js';
import { rateLimited } from '../ratelimit.js';
import { downConvert, firstSeries, mergeEntries, type Piece, separate, splitPiece } from './batch.js';
import type { DeadLetters } from './dead-letter.js';
import { comparePositions, type Position, type QueueEntry } from './format.js';
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
  /**
   * Where records go that the upstream keeps refusing while it takes other data. Without it, a
   * batch that fails with a retryable status is retried whole until it succeeds.
   */
  readonly deadLetters?: DeadLetters | undefined;
  /** A record in the retry lane becomes a dead letter after failing this long (0: no limit). */
  readonly maxRetryAgeMs?: number;
  /** ... or after this many attempts in the retry lane (0: no limit). */
  readonly maxRetryAttempts?: number;
}

/** An empty message: valid in both versions, so a healthy upstream takes it (used as a probe). */
const EMPTY_BODY = snappyEncode(new Uint8Array(0));

/**
 * Upstream refusals that mean the samples are older than what it holds for their series
 * (Prometheus: "out of order sample", "out of bounds", "duplicate sample for timestamp").
 */
const OUT_OF_ORDER = /out[ -]of[ -]order|out of bounds|duplicate sample|too old/i;

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
  #lane: Promise<void> | undefined;
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
    if (this.#opts.deadLetters !== undefined) {
      this.#lane ??= supervise(
        () => this.#runLane(),
        this.#closing.signal,
        (err) => this.#opts.logger.error({ err }, 'queue retry lane failed; restarting in 1s'),
      );
    }
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
    await this.#lane;
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
        if (!(err instanceof CardinalError)) {
          // Not the data: writing a dead letter failed (a full disk), for one. Nothing is
          // acknowledged; the batch is sent again later (what was delivered of it may repeat).
          logger.error({ err }, 'delivering a queued batch failed; retrying it in 1s');
          await sleep(1000, undefined, { signal: this.#closing.signal }).catch(() => undefined);
          cursor = queue.acked;
          continue;
        }
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
   * Sends a piece until the upstream took it, or it was dropped or moved aside. A retryable failure
   * is retried with backoff while the upstream is down; when the upstream takes other data (an
   * empty request succeeds), the piece is bisected along its records and the halves are sent on
   * their own, so that the records it fails for are found and moved to the retry lane while the
   * others are delivered (no head-of-line blocking). Final refusals are handled by #refused.
   */
  async #deliver(piece: Piece, replay: boolean, generation: number): Promise<Delivery> {
    const { forwarder, queue, metrics, retryable, deadLetters } = this.#opts;
    const signal = this.#closing.signal;
    const work: Piece[] = [piece];
    let attempt = 0;
    // An empty request succeeded after this piece failed: the next failure of the piece is the
    // upstream's answer to this data, not an outage that ended between the two.
    let probed = false;
    while (work.length > 0) {
      const p = work[0]!;
      if (signal.aborted || queue.generation !== generation) return 'aborted';
      const r = await forwarder.attempt(
        { body: p.body, version: p.version, tenant: p.tenant },
        { signal, retryable },
      );
      if (signal.aborted || queue.generation !== generation) return 'aborted';
      if (r.kind === 'status' && r.status >= 200 && r.status < 300) {
        metrics.sent(p.records, p.samples);
        work.shift();
        attempt = 0;
        probed = false;
        continue;
      }
      if (r.kind === 'status' && !retryable(r.status)) {
        if ((await this.#refused(p, r, replay, generation)) === 'aborted') return 'aborted';
        work.shift();
        attempt = 0;
        probed = false;
        continue;
      }
      metrics.retried(r.kind === 'status' ? String(r.status) : r.reason);
      attempt++;
      // Failed twice, an empty request succeeds, and the piece fails once more right after: the
      // upstream is up and fails for this data. Moving it aside lets later data of the same series
      // overtake it, which a receiver without an out-of-order window then refuses; so an upstream
      // that has just come back (a Prometheus that was starting) gets the piece once more first.
      if (deadLetters !== undefined && attempt >= 2 && p.entries.length >= 1) {
        if (probed) {
          probed = false;
          work.shift();
          if (p.entries.length === 1) {
            await this.#toLane(p.entries[0]!, r);
          } else {
            const mid = Math.ceil(p.entries.length / 2);
            work.unshift(mergeEntries(p.entries.slice(0, mid)), mergeEntries(p.entries.slice(mid)));
          }
          attempt = 0;
          continue;
        }
        if (await this.#healthy(p)) {
          probed = true;
          continue;
        }
      }
      const retryAfterMs = r.kind === 'status' ? r.retryAfterMs : undefined;
      const delay = backoffDelay(this.#opts.retry, attempt, retryAfterMs, this.#random);
      try {
        await sleep(delay, undefined, { signal: AbortSignal.any([signal, this.#dropped.signal]) });
      } catch {
        return 'aborted';
      }
    }
    return 'done';
  }

  /** Whether the upstream takes an empty request for this tenant and protocol right now. */
  async #healthy(p: Piece): Promise<boolean> {
    const r = await this.#opts.forwarder.attempt(
      { body: EMPTY_BODY, version: p.version, tenant: p.tenant },
      { signal: this.#closing.signal, retryable: this.#opts.retryable },
    );
    return r.kind === 'status' && r.status >= 200 && r.status < 300;
  }

  /** Moves a record the upstream fails for into the retry lane, durably, before it is acknowledged. */
  async #toLane(entry: QueueEntry, r: AttemptResult): Promise<void> {
    const now = Date.now();
    const lastError = r.kind === 'status' ? `${r.status} ${r.text}`.trim() : r.reason;
    await this.#opts.deadLetters!.add(entry, {
      status: 'retrying',
      lastError,
      attempts: 1,
      firstFailureMs: now,
      nextAttemptMs: now + backoffDelay(this.#opts.retry, 1, undefined, this.#random),
    });
    this.#logDrop('isolated', (suppressed) =>
      this.#opts.logger.warn(
        { upstream: lastError, tenant: entry.tenant, samples: entry.samples + entry.histograms, suppressed },
        'the upstream keeps failing for one queued request while it takes others; retrying it alone',
      ),
    );
  }

  /**
   * A final refusal: a 415 for 2.0 data is resent as 1.0; a 413 splits the piece in halves; any
   * other refusal of a merged piece sends its records one by one, so that one bad record does not
   * take the others with it; a refused single record (or a single series still too large) is
   * dropped, counted by reason, and (a whole record) kept as a dead letter.
   */
  async #refused(
    piece: Piece,
    result: Extract<AttemptResult, { kind: 'status' }>,
    replay: boolean,
    generation: number,
  ): Promise<Delivery> {
    const { queue, metrics, deadLetters } = this.#opts;
    if (result.status === 415 && piece.version === '2.0') {
      this.#logDrop('downconvert', (suppressed) =>
        this.#opts.logger.warn(
          { upstream: result.text, suppressed },
          'upstream refused remote-write 2.0 with 415; sending queued 2.0 data as 1.0 (set --upstream.protocol 1.0 to convert on ingest)',
        ),
      );
      return this.#deliver(downConvert(piece), replay, generation);
    }
    // A single original request that is too large stays too large; only merged ones are split.
    const parts =
      result.status === 413 ? (piece.entries.length > 1 ? splitPiece(piece) : undefined) : separate(piece);
    if (parts !== undefined) {
      for (const part of parts) {
        if ((await this.#deliver(part, replay, generation)) === 'aborted') return 'aborted';
        if (queue.generation !== generation) return 'aborted';
      }
      return 'done';
    }
    const reason: DropReason =
      result.status === 413 ? 'too_large' : OUT_OF_ORDER.test(result.text) ? 'out_of_order' : 'rejected';
    metrics.dropped(reason, Math.max(piece.records, 1), piece.samples);
    if (deadLetters !== undefined && piece.entries.length === 1 && reason !== 'out_of_order') {
      const now = Date.now();
      await deadLetters.add(piece.entries[0]!, {
        status: 'dead',
        reason,
        lastError: `${result.status} ${result.text}`.trim(),
        attempts: 1,
        firstFailureMs: now,
        nextAttemptMs: now,
      });
    }
    this.#logDrop(reason, (suppressed) =>
      this.#opts.logger.warn(
        {
          status: result.status,
          upstream: result.text,
          reason,
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

  /**
   * The retry lane: records moved aside by #deliver, each sent alone with its own backoff, until
   * the upstream takes it, refuses it for good, or it ran out of time or attempts (then it stays
   * as a dead letter).
   */
  async #runLane(): Promise<void> {
    const deadLetters = this.#opts.deadLetters!;
    const { forwarder, metrics, retryable, logger } = this.#opts;
    const signal = this.#closing.signal;
    const maxAge = this.#opts.maxRetryAgeMs ?? 0;
    const maxAttempts = this.#opts.maxRetryAttempts ?? 0;
    while (!signal.aborted) {
      let wait = 1000;
      for (const l of deadLetters.list()) {
        if (signal.aborted) return;
        if (l.state.status !== 'retrying') continue;
        const now = Date.now();
        if (l.state.nextAttemptMs > now) {
          wait = Math.min(wait, l.state.nextAttemptMs - now);
          continue;
        }
        const e = l.entry;
        const samples = e.samples + e.histograms;
        const r = await forwarder.attempt(
          { body: e.body, version: e.version, tenant: e.tenant },
          { signal, retryable },
        );
        if (signal.aborted) return;
        if (r.kind === 'status' && r.status >= 200 && r.status < 300) {
          metrics.sent(1, samples);
          await deadLetters.remove(l.id);
          logger.info({ id: l.id, attempts: l.state.attempts + 1 }, 'a request retried alone was delivered');
          continue;
        }
        const lastError = r.kind === 'status' ? `${r.status} ${r.text}`.trim() : r.reason;
        const attempts = l.state.attempts + 1;
        let reason: DropReason | undefined;
        if (r.kind === 'status' && !retryable(r.status)) {
          reason = r.status === 413 ? 'too_large' : OUT_OF_ORDER.test(r.text) ? 'out_of_order' : 'rejected';
        } else {
          metrics.retried(r.kind === 'status' ? String(r.status) : r.reason);
          if (
            (maxAttempts > 0 && attempts >= maxAttempts) ||
            (maxAge > 0 && now - l.state.firstFailureMs >= maxAge)
          ) {
            reason = 'retry_exhausted';
          }
        }
        if (reason === undefined) {
          const delay = backoffDelay(
            this.#opts.retry,
            attempts,
            r.kind === 'status' ? r.retryAfterMs : undefined,
            this.#random,
          );
          await deadLetters.update(l.id, { ...l.state, attempts, lastError, nextAttemptMs: now + delay });
          wait = Math.min(wait, delay);
          continue;
        }
        metrics.dropped(reason, 1, samples);
        await deadLetters.update(l.id, { ...l.state, status: 'dead', reason, attempts, lastError });
        logger.warn(
          { id: l.id, reason, attempts, upstream: lastError, tenant: e.tenant, samples },
          'a queued request is now a dead letter: GET /api/v1/queue/dead-letter lists it, POST /api/v1/queue/dead-letter/requeue sends it again',
        );
      }
      await sleep(Math.max(10, wait), undefined, { signal }).catch(() => undefined);
    }
  }
}
