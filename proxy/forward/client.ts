import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { parseRetryAfter } from '../../lib/retry-after.js';
import { CardinalError } from '../errors.js';
import { contentTypeFor, type ProtocolVersion, versionHeaderFor } from '../ingest/negotiate.js';
import { errorReason, readSome } from './response.js';
import { backoffDelay, classifyStatus, type RetryPolicy } from './retry.js';

export interface ForwarderOptions {
  /** The upstream's remote-write endpoint, e.g. http://prometheus:9090/api/v1/write. */
  readonly url: string;
  readonly retry: RetryPolicy;
  /** Timeout of one attempt, in milliseconds. */
  readonly attemptTimeoutMs: number;
  /** Connections kept open to the upstream. */
  readonly connections: number;
  /** A file holding a bearer token for the upstream (a mounted Secret); re-read when it changes. */
  readonly bearerTokenFile?: string | undefined;
  readonly userAgent: string;
  readonly metrics: ForwardMetrics;
  /** Returns a number in [0, 1) for backoff jitter; injectable for tests. */
  readonly random?: () => number;
}

/** What the forwarder reports; implemented by the proxy's own metrics. */
export interface ForwardMetrics {
  attempt(
    version: ProtocolVersion,
    outcome: 'ok' | 'retry' | 'reject',
    reason: string,
    seconds: number,
  ): void;
}

export interface ForwardRequest {
  /** A snappy-compressed, complete remote-write message of `version`. */
  readonly body: Uint8Array;
  readonly version: ProtocolVersion;
  /** The X-Scope-OrgID to pass on, if any. */
  readonly tenant?: string | undefined;
  /** Aborted when the sender went away: nothing more is sent for it (send only). */
  readonly signal?: AbortSignal | undefined;
}

/** What the upstream said it wrote (remote-write 2.0 "Response"); absent when it did not say. */
export interface WrittenStats {
  readonly samples: number;
  readonly histograms: number;
  readonly exemplars: number;
}

/** The outcome of one attempt: the upstream's status, or a network error's reason. */
export type AttemptResult =
  | {
      readonly kind: 'status';
      readonly status: number;
      /** The start of an error body, on one line; empty for 2xx. */
      readonly text: string;
      readonly retryAfterMs: number | undefined;
    }
  | { readonly kind: 'error'; readonly reason: string };

export interface ForwardResult {
  readonly attempts: number;
  readonly written: WrittenStats | undefined;
}

/**
 * Sends remote-write requests to one upstream, retrying what the spec says may be retried.
 * The caller answers its sender only after `send` resolves, so the proxy never acknowledges data
 * the upstream has not accepted: an upstream outage becomes a 503 to the sender, which retries.
 */
export class Forwarder {
  readonly #opts: ForwarderOptions;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #random: () => number;
  readonly #closing = new AbortController();
  #token: { value: string; readAt: number } | undefined;
  /** When the upstream last took a request, and last failed one in a way that is retried. */
  #lastOkAt = 0;
  #lastFailAt = 0;
  /** The deadline controllers of sends in flight, aborted together on close. */
  readonly #sends = new Set<AbortController>();

  constructor(opts: ForwarderOptions) {
    this.#opts = opts;
    const url = new URL(opts.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#pool = new Pool(url.origin, {
      connections: opts.connections,
      connect: { timeout: opts.attemptTimeoutMs },
      headersTimeout: opts.attemptTimeoutMs,
      bodyTimeout: opts.attemptTimeoutMs,
      keepAliveTimeout: 30_000,
    });
    this.#random = opts.random ?? Math.random;
    // Every request in flight listens on the closing signal until it completes; hundreds in flight
    // are normal, not a leak, so Node's warning at 11 listeners is switched off for this signal.
    setMaxListeners(0, this.#closing.signal);
  }

  #headers(req: ForwardRequest): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': contentTypeFor[req.version],
      'content-encoding': 'snappy',
      'x-prometheus-remote-write-version': versionHeaderFor[req.version],
      'user-agent': this.#opts.userAgent,
    };
    if (req.tenant !== undefined) headers['x-scope-orgid'] = req.tenant;
    const token = this.#bearerToken();
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    return headers;
  }

  /**
   * One attempt, no retry: for the durable queue's drain loop, which owns its retry policy.
   * `retryable` decides the outcome label of the attempt metrics. Never throws for upstream or
   * network trouble; an aborted attempt reports reason 'aborted'.
   */
  async attempt(
    req: ForwardRequest,
    opts: { readonly signal: AbortSignal; readonly retryable: (status: number) => boolean },
  ): Promise<AttemptResult> {
    const attemptStart = performance.now();
    try {
      const res = await this.#pool.request({
        path: this.#path,
        method: 'POST',
        headers: this.#headers(req),
        body: req.body,
        signal: opts.signal,
      });
      const seconds = (performance.now() - attemptStart) / 1000;
      const status = res.statusCode;
      const ok = status >= 200 && status < 300;
      const outcome = ok ? 'ok' : opts.retryable(status) ? 'retry' : 'reject';
      this.#opts.metrics.attempt(req.version, outcome, String(status), seconds);
      let text = '';
      if (ok) await res.body.dump();
      else text = oneLine(await readSome(res.body, 1024));
      return {
        kind: 'status',
        status,
        text,
        retryAfterMs: parseRetryAfter(headerValue(res.headers['retry-after']), Date.now()),
      };
    } catch (err) {
      const reason = opts.signal.aborted ? 'aborted' : errorReason(err);
      this.#opts.metrics.attempt(req.version, 'retry', reason, (performance.now() - attemptStart) / 1000);
      return { kind: 'error', reason };
    }
  }

  /**
   * Sends one request for a sender that waits for the answer (no queue). The sender retries a 503
   * itself, with its own backoff (remote-write 1.0 and 2.0, "Retries & Backoff"), so the proxy
   * must not multiply its retries: a failure right after a success (a blip) is retried a couple
   * of times within the budget; once the upstream is failing, each request gets one attempt and
   * its sender a 503 at once (with the upstream's Retry-After, if it sent one), and the sender's
   * backoff governs.
   */
  async send(req: ForwardRequest): Promise<ForwardResult> {
    // One deadline for the whole send, waiting for a pooled connection included (the pool's own
    // timeouts start only once a request is written): --forward.retry-budget. The same controller
    // is aborted when the sender goes away and on close, so each send costs one controller and
    // one timer, not a composed signal.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.#opts.retry.budgetMs);
    const onGone = () => ctl.abort();
    req.signal?.addEventListener('abort', onGone, { once: true });
    if (req.signal?.aborted === true) ctl.abort();
    this.#sends.add(ctl);
    try {
      return await this.#send(req, ctl.signal);
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onGone);
      this.#sends.delete(ctl);
    }
  }

  async #send(req: ForwardRequest, signal: AbortSignal): Promise<ForwardResult> {
    const started = Date.now();
    const headers = this.#headers(req);
    let retries = 0;

    for (let attempt = 1; ; attempt++) {
      const attemptStart = performance.now();
      let retryAfterMs: number | undefined;
      let reason: string;
      try {
        const res = await this.#pool.request({
          path: this.#path,
          method: 'POST',
          headers,
          body: req.body,
          // The attempt timeout is the pool's headersTimeout and bodyTimeout. A per-request
          // AbortSignal.any(closing, timeout) cost Node 20 several milliseconds at p99 under load
          // (measured with bench/run.ts: added p99 at 250 req/s went from ~16 ms to ~5 ms without it),
          // so the deadline, the sender and closing share one plain controller (see send).
          signal,
        });
        const verdict = classifyStatus(res.statusCode);
        const seconds = (performance.now() - attemptStart) / 1000;
        if (verdict === 'done') {
          this.#lastOkAt = Date.now();
          await res.body.dump();
          this.#opts.metrics.attempt(req.version, 'ok', String(res.statusCode), seconds);
          return { attempts: attempt, written: parseWritten(res.headers) };
        }
        const text = await readSome(res.body, 1024);
        if (verdict === 'reject') {
          this.#opts.metrics.attempt(req.version, 'reject', String(res.statusCode), seconds);
          // A 415 to a 2.0 request tells the sender to fall back to 1.0 (remote-write 2.0,
          // "Content negotiation"), so it is passed on as a 415; every other 4xx is a 400.
          const code = res.statusCode === 415 ? 'UPSTREAM_UNSUPPORTED' : 'UPSTREAM_REJECTED';
          throw new CardinalError(code, `${res.statusCode} ${oneLine(text)}`);
        }
        reason = String(res.statusCode);
        retryAfterMs = parseRetryAfter(headerValue(res.headers['retry-after']), Date.now());
        this.#opts.metrics.attempt(req.version, 'retry', reason, seconds);
      } catch (err) {
        if (err instanceof CardinalError) throw err;
        if (this.#closing.signal.aborted) throw new CardinalError('SHUTTING_DOWN');
        if (req.signal?.aborted === true) throw new CardinalError('SENDER_GONE');
        if (signal.aborted) {
          throw new CardinalError(
            'UPSTREAM_UNAVAILABLE',
            `no answer within --forward.retry-budget ${this.#opts.retry.budgetMs} ms (${attempt} attempt${attempt === 1 ? '' : 's'})`,
          );
        }
        reason = errorReason(err);
        this.#opts.metrics.attempt(req.version, 'retry', reason, (performance.now() - attemptStart) / 1000);
      }

      // The first failure after a success may be a blip worth two retries; any later one is not.
      if (attempt === 1) retries = this.#lastOkAt >= this.#lastFailAt ? BLIP_RETRIES : 0;
      this.#lastFailAt = Date.now();
      const delay = backoffDelay(this.#opts.retry, attempt, retryAfterMs, this.#random);
      const elapsed = Date.now() - started;
      if (attempt > retries || elapsed + delay >= this.#opts.retry.budgetMs) {
        throw new CardinalError(
          'UPSTREAM_UNAVAILABLE',
          `${attempt} attempt${attempt === 1 ? '' : 's'} in ${elapsed} ms, last: ${reason}${retryAfterMs !== undefined ? ` (Retry-After ${Math.round(retryAfterMs / 1000)}s)` : ''}`,
          // The upstream's Retry-After is relayed. None is invented: Prometheus sleeps exactly a
          // Retry-After it gets instead of its growing backoff, so a fixed one would make it
          // retry more often, not less.
          {
            retryAfterSeconds:
              retryAfterMs === undefined ? undefined : Math.max(1, Math.ceil(retryAfterMs / 1000)),
          },
        );
      }
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        throw new CardinalError(
          this.#closing.signal.aborted
            ? 'SHUTTING_DOWN'
            : req.signal?.aborted
              ? 'SENDER_GONE'
              : 'UPSTREAM_UNAVAILABLE',
        );
      }
    }
  }

  /** Stops retry loops (their senders get 503 and retry elsewhere or later) and closes connections. */
  async close(): Promise<void> {
    this.#closing.abort();
    for (const c of this.#sends) c.abort();
    await this.#pool.close();
  }

  #bearerToken(): string | undefined {
    const file = this.#opts.bearerTokenFile;
    if (file === undefined) return undefined;
    // Re-read at most every 10 s, so a rotated Secret takes effect without a restart.
    const now = Date.now();
    if (this.#token === undefined || now - this.#token.readAt > 10_000) {
      this.#token = { value: readFileSync(file, 'utf8').trim(), readAt: now };
    }
    return this.#token.value;
  }
}

/** Retries of a failure that follows a success; a failing upstream gets none (see send). */
const BLIP_RETRIES = 2;

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Parses the X-Prometheus-Remote-Write-*-Written headers (remote-write 2.0, "Response"). */
export function parseWritten(
  headers: Record<string, string | string[] | undefined>,
): WrittenStats | undefined {
  const samples = headerValue(headers['x-prometheus-remote-write-samples-written']);
  const histograms = headerValue(headers['x-prometheus-remote-write-histograms-written']);
  const exemplars = headerValue(headers['x-prometheus-remote-write-exemplars-written']);
  if (samples === undefined && histograms === undefined && exemplars === undefined) return undefined;
  return {
    samples: Number(samples ?? 0),
    histograms: Number(histograms ?? 0),
    exemplars: Number(exemplars ?? 0),
  };
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}
