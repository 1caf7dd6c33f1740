// The optional client-side limit on the operator's writes that follow the proxies rather than the
// user: status writes and Events. A token bucket, as client-go's client-side limiter (rest.Config
// QPS and Burst, flowcontrol.NewTokenBucketRateLimiter): `burst` writes at once, then `qps` per
// second; a write waits for its token, so the limit holds over all workers. `qps` 0 is no limit,
// the default of current controller-runtime (since v0.21, kubernetes-sigs/controller-runtime#3119),
// which leaves the pace to the API server's priority and fairness (Kubernetes 1.22 and later):
// what bounds the operator then is its status workers in flight and the 429s it honours
// (operator/kube/throttle.ts).

export interface TokenBucketOptions {
  /** Tokens added per second; 0: no limit, every take returns at once. */
  readonly qps: number;
  /** Tokens the bucket holds at most, and holds at the start. */
  readonly burst: number;
  /** For tests; default Date.now. */
  readonly now?: () => number;
  /** For tests; default a timer. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Thrown by `take` once the bucket is closed: the caller must not write. */
export class RateLimiterClosedError extends Error {
  override name = 'RateLimiterClosedError';
}

export class TokenBucket {
  readonly #qps: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  #tokens: number;
  #at: number;
  #closed = false;

  constructor(options: TokenBucketOptions) {
    if (!(options.qps >= 0)) throw new RangeError(`qps: ${options.qps} must be 0 (no limit) or positive`);
    if (!(Number.isInteger(options.burst) && options.burst >= 1))
      throw new RangeError(`burst: ${options.burst} must be a positive integer`);
    this.#qps = options.qps;
    this.#burst = options.burst;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#tokens = options.burst;
    this.#at = this.#now();
  }

  /**
   * Takes a token, waiting until there is one. Tokens are reserved in call order, so waiters are
   * served first come, first served. Rejects with RateLimiterClosedError once `close` was called.
   */
  async take(): Promise<void> {
    if (this.#closed) throw new RateLimiterClosedError('rate limiter closed');
    if (this.#qps === 0) return;
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#qps);
    this.#at = now;
    this.#tokens -= 1;
    if (this.#tokens >= 0) return;
    await this.#sleep(Math.ceil((-this.#tokens / this.#qps) * 1000));
    if (this.#closed) throw new RateLimiterClosedError('rate limiter closed');
  }

  /** Refuses every later `take`, and those still waiting when they wake: the operator is stopping. */
  close(): void {
    this.#closed = true;
  }
}
