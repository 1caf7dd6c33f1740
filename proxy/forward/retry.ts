/** How the forwarder retries a request the upstream could not take. */
export interface RetryPolicy {
  /** First backoff, in milliseconds. */
  readonly minBackoffMs: number;
  /** Cap of the exponential backoff, in milliseconds. */
  readonly maxBackoffMs: number;
  /**
   * Total time a request may spend in attempts and backoff before the sender is answered 503.
   * Keep it below the senders' own remote timeout (Prometheus: 30s), so that a sender never gives
   * up on a request the proxy is still delivering and then sends it a second time.
   */
  readonly budgetMs: number;
  /**
   * Fraction of the delay that is random, 0 to 1: the delay lies in [(1 - jitter) * d, d] for the
   * exponential step d, and never below the step before (so at the cap it is the cap). 0.5 (the
   * default) is "equal jitter", each delay in [d/2, d]: every interval is at least the one before,
   * as the remote-write specs' backoff intends, while proxies retrying after one outage still
   * spread out. Full jitter ([0, d]) makes intervals shrink as often as they grow, so it is not
   * offered.
   */
  readonly jitter?: number;
}

/** What an attempt's outcome means for the request (remote-write 1.0 and 2.0, "Retries & Backoff"). */
export type AttemptVerdict = 'done' | 'retry' | 'reject';

/** 2xx is done; 5xx and 429 may be retried; every other status is final and must not be retried. */
export function classifyStatus(status: number): AttemptVerdict {
  if (status >= 200 && status < 300) return 'done';
  if (status === 429 || status >= 500) return 'retry';
  return 'reject';
}

/**
 * Delay before retry number `attempt` (1 for the first retry): exponential backoff (remote-write
 * 1.0 and 2.0, "Retries & Backoff": senders MUST use a backoff algorithm), the step d doubling from
 * the minimum to the cap, with a random part (see RetryPolicy.jitter) so that many proxies retrying
 * after one upstream outage do not return in lockstep. A Retry-After the upstream sent is honoured
 * as a floor. `random` returns a number in [0, 1).
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  retryAfterMs: number | undefined,
  random: () => number,
): number {
  const step = (k: number) => (k < 1 ? 0 : Math.min(policy.maxBackoffMs, policy.minBackoffMs * 2 ** (k - 1)));
  const d = step(Math.max(1, attempt));
  const j = policy.jitter ?? 0.5;
  return Math.max(d * (1 - j + j * random()), step(attempt - 1), retryAfterMs ?? 0);
}

/**
 * Parses a list of statuses to retry, like `5xx,429`: status codes and classes (`4xx`, `5xx`).
 * 2xx cannot be listed. Returns a predicate.
 */
export function parseRetryOn(value: string): (status: number) => boolean {
  const codes = new Set<number>();
  const classes = new Set<number>();
  for (const raw of value.split(',')) {
    const item = raw.trim().toLowerCase();
    const cls = /^([1-5])xx$/.exec(item);
    if (cls !== null) {
      classes.add(Number(cls[1]));
    } else if (/^[1-5]\d\d$/.test(item)) {
      codes.add(Number(item));
    } else {
      throw new RangeError(`"${raw.trim()}" is neither a status code like 429 nor a class like 5xx`);
    }
  }
  if (classes.has(2) || [...codes].some((c) => c >= 200 && c < 300)) {
    throw new RangeError('2xx statuses mean success and cannot be retried');
  }
  return (status) => codes.has(status) || classes.has(Math.floor(status / 100));
}
