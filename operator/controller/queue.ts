// The work queue between watch events and reconciles, with client-go's workqueue semantics
// (k8s.io/client-go/util/workqueue): a key is queued at most once however many events name it; a
// key is handed to one worker at a time, and a key that is added while it is being processed is
// queued again once, after `done`; a key that failed is retried later, with a delay that doubles
// per failure of that key and an overall token bucket, the larger of the two winning
// (DefaultControllerRateLimiter).

export interface QueueOptions<K = string> {
  /** The first retry delay of a key; doubles per failure. Default 5 ms. */
  readonly baseDelayMs?: number;
  /** The longest retry delay of a key. Default 5 minutes. */
  readonly maxDelayMs?: number;
  /** Retries per second over all keys, and the burst the bucket allows. Default 10 and 100. */
  readonly retriesPerSecond?: number;
  readonly retryBurst?: number;
  /** For tests. */
  readonly now?: () => number;
  /** Told of every key's way through the queue, for workqueue_* metrics (runtime-metrics.ts). */
  readonly metrics?: QueueMetrics<K>;
}

/**
 * What the queue reports, as client-go's queueMetrics sees it: a key became waiting (not when it
 * was waiting already), was handed to a worker, was finished by it, or was queued for a retry.
 */
export interface QueueMetrics<K> {
  added(key: K): void;
  started(key: K): void;
  finished(key: K): void;
  retried(key: K): void;
}

export class WorkQueue<K = string> {
  readonly #metrics: QueueMetrics<K> | undefined;
  readonly #queue: K[] = [];
  /** Keys waiting to be processed: in #queue, or to be put there when they are done. */
  readonly #dirty = new Set<K>();
  readonly #processing = new Set<K>();
  readonly #failures = new Map<K, number>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #waiting: ((key: K | undefined) => void)[] = [];
  readonly #idle: (() => void)[] = [];
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #tokensAt: number;
  #shuttingDown = false;

  constructor(options: QueueOptions<K> = {}) {
    this.#metrics = options.metrics;
    this.#baseDelayMs = options.baseDelayMs ?? 5;
    this.#maxDelayMs = options.maxDelayMs ?? 300_000;
    this.#rate = options.retriesPerSecond ?? 10;
    this.#burst = options.retryBurst ?? 100;
    this.#now = options.now ?? Date.now;
    this.#tokens = this.#burst;
    this.#tokensAt = this.#now();
  }

  /** Keys waiting to be processed, not counting those being processed. */
  get length(): number {
    return this.#queue.length;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /**
   * Queues `key` unless it is already waiting. With `first`, the key goes to the front, or moves
   * there when it is waiting already: an edit's status before a fan-out's. Ignored once the queue
   * is shutting down.
   */
  add(key: K, first = false): void {
    if (this.#shuttingDown) return;
    if (this.#dirty.has(key)) {
      if (!first) return;
      const i = this.#queue.indexOf(key);
      if (i > 0) {
        this.#queue.splice(i, 1);
        this.#queue.unshift(key);
      }
      return;
    }
    this.#dirty.add(key);
    this.#metrics?.added(key);
    // A key being processed is put back by done(), so that no two workers hold it.
    if (this.#processing.has(key)) return;
    this.#hand(key, first);
  }

  /** Gives a waiting (dirty, not processing) key to an idle worker, or queues it (at the front with `first`). */
  #hand(key: K, first = false): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.#metrics?.started(key);
      waiter(key);
      return;
    }
    if (first) this.#queue.unshift(key);
    else this.#queue.push(key);
  }

  /** Queues `key` after `delayMs`. */
  addAfter(key: K, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.add(key);
    }, delayMs);
    this.#timers.add(timer);
  }

  /** Queues `key` again after its backoff: the caller's reconcile of it failed. Returns the delay. */
  addRateLimited(key: K): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    this.#metrics?.retried(key);
    const exponential = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** failures);
    const delay = Math.max(exponential, this.#bucketDelay());
    this.addAfter(key, delay);
    return delay;
  }

  /** Forgets the failures of `key`: its reconcile succeeded. */
  forget(key: K): void {
    this.#failures.delete(key);
  }

  failures(key: K): number {
    return this.#failures.get(key) ?? 0;
  }

  /**
   * The next key to process; the caller must call `done(key)` when it is finished with it.
   * Resolves to undefined once the queue is shut down and empty.
   */
  get(): Promise<K | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.#metrics?.started(key);
      return Promise.resolve(key);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Marks `key` as processed; a key added meanwhile is queued again now. */
  done(key: K): void {
    this.#processing.delete(key);
    this.#metrics?.finished(key);
    // Added while it was processed (and counted then): queued now, unless shutting down.
    if (this.#dirty.has(key)) {
      if (this.#shuttingDown) this.#dirty.delete(key);
      else this.#hand(key);
    }
    if (this.#processing.size === 0 && this.#queue.length === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /**
   * Stops accepting keys and drops pending retries. Workers still get the keys already queued; once
   * the queue is empty, `get` resolves to undefined. Resolves when no key is being processed and
   * none is queued, like client-go's ShutDownWithDrain.
   */
  shutDown(): Promise<void> {
    this.#shuttingDown = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const resolve of this.#waiting.splice(0)) resolve(undefined);
    if (this.#processing.size === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** The wait the token bucket imposes on one more retry, taking its token. */
  #bucketDelay(): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#tokensAt) / 1000) * this.#rate);
    this.#tokensAt = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#rate) * 1000);
  }
}
