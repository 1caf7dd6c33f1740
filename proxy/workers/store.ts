// The limit store of a worker (`--workers N` without `--limits.store`): the shared-state interface
// of the scale-out work (proxy/limits/store.ts), answered by the primary, which holds every
// worker's limits in one MemoryLimitStore. So the workers of one proxy decide every limit together,
// exactly as one process would: a new series costs one IPC round trip per request (all its checks
// in one call), a known one nothing on the request (its activity is batched and sent each flush
// interval). When the primary does not answer in time, the worker decides with its share of each
// limit (limit / workers), as a replica does when Redis is down.

import { Counter, type Registry } from 'prom-client';
import {
  type AdmissionCheck,
  type LimitStore,
  type LimitStoreStatus,
  MemoryLimitStore,
  type ScopeRef,
} from '../limits/store.js';
import type { Rpc } from './rpc.js';

/** One batch of activity: [tag, sub, member, windowSeconds] per member. */
export type TouchBatch = [string, string, string, number][];

export const STORE_URL = 'workers:';

export class WorkerLimitStore implements LimitStore {
  readonly #rpc: Rpc;
  readonly #timeoutMs: number;
  readonly #replicas: () => number;
  readonly #maxPending: number;
  #pending: TouchBatch = [];
  #available = true;
  #since = new Date();
  #lastError: string | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #errors: Counter<'op' | 'reason'> | undefined;

  constructor(o: {
    /** Where admissions the primary did not answer are counted (the Redis store's counter name). */
    registry?: Registry;
    rpc: Rpc;
    timeoutMs: number;
    flushIntervalMs: number;
    maxPendingTouches: number;
    /** The share divisor while the primary does not answer: workers × replicas. */
    replicas: () => number;
  }) {
    this.#rpc = o.rpc;
    this.#timeoutMs = o.timeoutMs;
    this.#replicas = o.replicas;
    this.#maxPending = o.maxPendingTouches;
    this.#errors =
      o.registry === undefined
        ? undefined
        : new Counter({
            name: 'cardinal_proxy_limits_store_errors_total',
            help: 'Failed operations on the shared limit store, by operation and reason (timeout, unavailable, error).',
            labelNames: ['op', 'reason'],
            registers: [o.registry],
          });
    this.#errors?.inc({ op: 'admit', reason: 'timeout' }, 0);
    this.#timer = setInterval(() => this.#flush(), o.flushIntervalMs);
    this.#timer.unref();
  }

  get available(): boolean {
    return this.#available;
  }

  async admit(checks: readonly AdmissionCheck[], nowMs: number): Promise<Uint8Array | undefined> {
    // Activity first, so the primary's windows hold what this worker admitted on its own.
    this.#flush();
    try {
      const answers = await this.#rpc.call<Uint8Array>('limits.admit', { checks, nowMs }, this.#timeoutMs);
      this.#state(true);
      return answers;
    } catch (err) {
      this.#errors?.inc({ op: 'admit', reason: /no answer/.test(String(err)) ? 'timeout' : 'unavailable' });
      this.#state(false, err);
      return undefined;
    }
  }

  touch(tag: string, sub: string, member: string, windowSeconds: number): void {
    if (this.#pending.length < this.#maxPending) this.#pending.push([tag, sub, member, windowSeconds]);
  }

  async counts(scopes: readonly ScopeRef[], nowMs: number): Promise<number[] | undefined> {
    this.#flush();
    try {
      return await this.#rpc.call<number[]>('limits.counts', { scopes, nowMs }, 5000);
    } catch {
      return undefined;
    }
  }

  status(): LimitStoreStatus {
    return {
      state: this.#available ? 'store' : 'fallback',
      url: STORE_URL,
      since: this.#since,
      lastError: this.#lastError,
      replicas: this.#replicas(),
      replicasFrom: 'flag',
    };
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#flush();
  }

  #flush(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#rpc.notify('limits.touch', batch);
  }

  #state(available: boolean, err?: unknown): void {
    if (available !== this.#available) {
      this.#available = available;
      this.#since = new Date();
    }
    if (!available) {
      this.#lastError = err instanceof Error ? err.message : String(err);
      // Asked again after a second: the next request's admission tries the primary once more.
      setTimeout(() => {
        this.#available = true;
      }, 1000).unref();
    }
  }
}

/** The primary's side: every worker's calls answered from one in-memory store. */
export function serveLimits(rpc: Rpc, store: MemoryLimitStore): void {
  rpc.handle('limits.admit', (arg) => {
    const { checks, nowMs } = arg as { checks: AdmissionCheck[]; nowMs: number };
    return store.admit(checks, nowMs);
  });
  rpc.handle('limits.counts', (arg) => {
    const { scopes, nowMs } = arg as { scopes: ScopeRef[]; nowMs: number };
    return store.counts(scopes, nowMs);
  });
  rpc.handle('limits.touch', (arg) => {
    for (const [tag, sub, member] of arg as TouchBatch) store.touch(tag, sub, member);
  });
}

export { MemoryLimitStore };
