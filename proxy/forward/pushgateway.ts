import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { parseRetryAfter } from '../../lib/retry-after.js';
import { CardinalError } from '../errors.js';
import { errorReason, readSome } from './response.js';
import { backoffDelay, classifyStatus, type RetryPolicy } from './retry.js';

export interface PushForwarderOptions {
  /** The Pushgateway's base URL, e.g. http://pushgateway:9091 (a path prefix is kept). */
  readonly url: string;
  readonly retry: RetryPolicy;
  readonly attemptTimeoutMs: number;
  readonly connections: number;
  readonly userAgent: string;
  readonly metrics: PushForwardMetrics;
  readonly random?: () => number;
}

export interface PushForwardMetrics {
  pushAttempt(outcome: 'ok' | 'retry' | 'reject', reason: string, seconds: number): void;
}

export interface PushRequest {
  readonly method: 'PUT' | 'POST' | 'DELETE';
  /** The canonical grouping path, `/metrics/job/...`. */
  readonly path: string;
  /** A text-format 0.0.4 body; absent for DELETE. */
  readonly body?: string | Uint8Array | undefined;
  /** Stops the attempts (SHUTTING_DOWN), besides close(). */
  readonly signal?: AbortSignal | undefined;
}

/** What the Pushgateway answered: its status (200 for pushes, 202 for deletes) and body. */
export interface PushResponse {
  readonly status: number;
  readonly body: string;
}

/**
 * Sends pushes to one Pushgateway with the method and grouping key they came with, so PUT still
 * replaces the group, POST still replaces only the pushed metric names, and DELETE still deletes
 * the group (Pushgateway README, "API"). All three are idempotent, so 5xx, 429 and network errors
 * are retried within the retry budget; any other answer is the Pushgateway's, passed on.
 */
export class PushForwarder {
  readonly #opts: PushForwarderOptions;
  readonly #pool: Pool;
  readonly #prefix: string;
  readonly #random: () => number;
  readonly #closing = new AbortController();

  constructor(opts: PushForwarderOptions) {
    this.#opts = opts;
    const url = new URL(opts.url);
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(url.origin, {
      connections: opts.connections,
      connect: { timeout: opts.attemptTimeoutMs },
      headersTimeout: opts.attemptTimeoutMs,
      bodyTimeout: opts.attemptTimeoutMs,
    });
    this.#random = opts.random ?? Math.random;
  }

  async send(req: PushRequest): Promise<PushResponse> {
    const started = Date.now();
    const signal =
      req.signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, req.signal]);
    const headers: Record<string, string> = { 'user-agent': this.#opts.userAgent };
    if (req.body !== undefined) headers['content-type'] = 'text/plain; version=0.0.4; charset=utf-8';
    for (let attempt = 1; ; attempt++) {
      const attemptStart = performance.now();
      let retryAfterMs: number | undefined;
      let reason: string;
      try {
        const res = await this.#pool.request({
          path: `${this.#prefix}${req.path}`,
          method: req.method,
          headers,
          ...(req.body === undefined ? {} : { body: req.body }),
          signal,
        });
        const text = await readSome(res.body, 4096);
        const seconds = (performance.now() - attemptStart) / 1000;
        const verdict = classifyStatus(res.statusCode);
        if (verdict !== 'retry') {
          this.#opts.metrics.pushAttempt(
            verdict === 'done' ? 'ok' : 'reject',
            String(res.statusCode),
            seconds,
          );
          return { status: res.statusCode, body: text };
        }
        reason = String(res.statusCode);
        const ra = res.headers['retry-after'];
        retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, Date.now());
        this.#opts.metrics.pushAttempt('retry', reason, seconds);
      } catch (err) {
        if (signal.aborted) throw new CardinalError('SHUTTING_DOWN');
        reason = errorReason(err);
        this.#opts.metrics.pushAttempt('retry', reason, (performance.now() - attemptStart) / 1000);
      }
      const delay = backoffDelay(this.#opts.retry, attempt, retryAfterMs, this.#random);
      const elapsed = Date.now() - started;
      if (elapsed + delay >= this.#opts.retry.budgetMs) {
        throw new CardinalError(
          'PUSHGATEWAY_UNAVAILABLE',
          `${attempt} attempts in ${elapsed} ms, last: ${reason}`,
        );
      }
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        throw new CardinalError('SHUTTING_DOWN');
      }
    }
  }

  async close(): Promise<void> {
    this.#closing.abort();
    await this.#pool.close();
  }
}
