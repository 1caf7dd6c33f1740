// The API server's priority and fairness (APF) answers a request it has no seat or queue room for
// with 429 Too Many Requests and a Retry-After header. client-go retries such an answer itself (up
// to 10 times, after the Retry-After it names), so the caller never sees it; the operator does the
// same for every write it makes (status, ConfigMap, Event, Lease), so that a throttled write is
// made later rather than failed, and counts each 429 by verb and resource.

import { setTimeout as delay } from 'node:timers/promises';
import { parseRetryAfter } from '../../lib/retry-after.js';

/** Retries after a 429, as client-go's request retry (rest/with_retry.go, maxRetries 10). */
export const MAX_THROTTLE_RETRIES = 10;
/** The first wait when the 429 names no Retry-After; it doubles with every 429 of one write. */
const BACKOFF_BASE_MS = 250;
/** No wait longer than this, whatever the Retry-After or the backoff says. */
const MAX_WAIT_MS = 30_000;

export interface ThrottleOptions {
  /** Told of every 429, before its wait. */
  readonly throttled?: (verb: string, resource: string) => void;
  /** No retry starts later than this many ms after the first attempt; default none. */
  readonly deadlineMs?: number;
  readonly maxRetries?: number;
  /** For tests. */
  readonly sleep?: (ms: number) => Promise<unknown>;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** The HTTP status and headers of a failed call, as ApiException of @kubernetes/client-node carries them. */
function refusal(err: unknown): { code: number | undefined; headers: Record<string, unknown> } {
  if (err === null || typeof err !== 'object') return { code: undefined, headers: {} };
  const e = err as { code?: unknown; headers?: unknown };
  return {
    code: typeof e.code === 'number' ? e.code : undefined,
    headers:
      e.headers !== null && typeof e.headers === 'object' ? (e.headers as Record<string, unknown>) : {},
  };
}

/**
 * The wait a Retry-After value asks for, in ms (lib/retry-after.ts); the header may come as a
 * list. Undefined when absent or unreadable.
 */
export function retryAfterMs(value: unknown, now: number = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return typeof text === 'string' ? parseRetryAfter(text, now) : undefined;
}

/**
 * The wait before retry number `attempt` (0 for the first) of a write refused with 429: the
 * Retry-After the server named, else a backoff doubling from 250 ms, never less than that backoff
 * (so repeated 429s back off even when each says "1"), at most 30 s, and up to a fifth longer at
 * random, so writes throttled together do not all return in the same instant.
 */
export function throttleWaitMs(attempt: number, retryAfter: number | undefined, random: number): number {
  const backoff = BACKOFF_BASE_MS * 2 ** attempt;
  const base = Math.min(MAX_WAIT_MS, Math.max(retryAfter ?? 0, backoff));
  return Math.round(base * (1 + 0.2 * random));
}

/**
 * Runs `call`, and again after each 429 it rejects with, waiting as throttleWaitMs says; after
 * maxRetries 429s, or when the next attempt would start past the deadline, the last 429 is thrown.
 * Any other rejection is thrown at once.
 */
export async function withThrottleRetry<T>(
  verb: string,
  resource: string,
  call: () => Promise<T>,
  options: ThrottleOptions = {},
): Promise<T> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? delay;
  const random = options.random ?? Math.random;
  const maxRetries = options.maxRetries ?? MAX_THROTTLE_RETRIES;
  const began = now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const { code, headers } = refusal(err);
      if (code !== 429) throw err;
      options.throttled?.(verb, resource);
      if (attempt >= maxRetries) throw err;
      const wait = throttleWaitMs(attempt, retryAfterMs(headers['retry-after'], now()), random());
      if (options.deadlineMs !== undefined && now() + wait - began > options.deadlineMs) throw err;
      await sleep(wait);
    }
  }
}
