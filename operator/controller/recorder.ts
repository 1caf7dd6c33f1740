// Records Kubernetes Events in the background, as client-go's EventBroadcaster does: a reconcile
// hands an Event over and goes on, so a slow or failing Events API never holds up a status or a
// ConfigMap. Events are deduplicated and aggregated (correlate in operator/status/events.ts) and
// written one at a time, within a token bucket of their own when --status-write-qps sets one, as
// controller-runtime's recorder writes through a client of its own. Best effort: what cannot be written is logged and dropped, never retried forever.

import type { Logger } from 'pino';
import { statusCode } from '../kube/client.js';
import {
  buildEvent,
  type CorrelationState,
  correlate,
  type EventObject,
  forget,
  newCorrelationState,
  type PolicyEvent,
} from '../status/events.js';
import { RateLimiterClosedError, TokenBucket } from './ratelimit.js';
import type { EventTarget } from './reconcile.js';

/** The Event calls of KubeClient. */
export interface EventSink {
  createEvent(event: EventObject): Promise<void>;
  patchEvent(
    namespace: string,
    name: string,
    patch: { count: number; message: string; lastTimestamp: Date },
  ): Promise<void>;
}

export interface RecorderOptions {
  readonly sink: EventSink;
  /** Names this replica in its Events (reportingInstance). */
  readonly identity: string;
  readonly qps: number;
  readonly burst: number;
  readonly logger: Logger;
  /** Told of every Event written (created or patched), by reason. */
  readonly written?: (reason: PolicyEvent['reason']) => void;
  /** Events waiting beyond this are dropped, as client-go's broadcaster drops past its queue of 1000. */
  readonly maxPending?: number;
  readonly now?: () => number;
}

export class EventRecorder {
  readonly #options: RecorderOptions;
  readonly #bucket: TokenBucket;
  readonly #state: CorrelationState = newCorrelationState();
  readonly #pending: { target: EventTarget; event: PolicyEvent; at: number }[] = [];
  #running: Promise<void> | undefined;
  #sequence = 0;
  #dropped = 0;
  #closed = false;

  constructor(options: RecorderOptions) {
    this.#options = options;
    this.#bucket = new TokenBucket({ qps: options.qps, burst: options.burst });
  }

  /** Queues `event` on `target`; returns at once. */
  record(target: EventTarget, event: PolicyEvent): void {
    if (this.#closed) return;
    if (this.#pending.length >= (this.#options.maxPending ?? 1000)) {
      if (this.#dropped++ % 100 === 0)
        this.#options.logger.warn({ dropped: this.#dropped }, 'too many Events waiting; dropping');
      return;
    }
    this.#pending.push({ target, event, at: (this.#options.now ?? Date.now)() });
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  /** Events waiting to be written. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Resolves when every queued Event was written or dropped. */
  async flush(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  /** Drops what is waiting and writes nothing more. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pending.length = 0;
    this.#bucket.close();
    await this.#running;
  }

  async #drain(): Promise<void> {
    for (let next = this.#pending.shift(); next !== undefined; next = this.#pending.shift()) {
      try {
        await this.#bucket.take();
      } catch (err) {
        if (err instanceof RateLimiterClosedError) return;
        throw err;
      }
      await this.#write(next.target, next.event, next.at);
    }
  }

  async #write(target: EventTarget, event: PolicyEvent, at: number): Promise<void> {
    const { sink, logger } = this.#options;
    const body = buildEvent(target, event, {
      now: new Date(at),
      instance: this.#options.identity,
      sequence: this.#sequence++ % 1_000_000,
    });
    const c = correlate(this.#state, body, at);
    try {
      if (c.action === 'patch') {
        try {
          await sink.patchEvent(c.namespace, c.name, {
            count: c.count,
            message: c.message,
            lastTimestamp: c.lastTimestamp,
          });
        } catch (err) {
          // The Event expired (its TTL is an hour by default): start a new one.
          if (statusCode(err) !== 404) throw err;
          forget(this.#state, c.key);
          const again = correlate(this.#state, body, at);
          if (again.action === 'create') await sink.createEvent(again.event);
        }
      } else {
        await sink.createEvent(c.event);
      }
      this.#options.written?.(event.reason);
    } catch (err) {
      forget(this.#state, c.key);
      logger.warn(
        { err, object: `${target.metadata.namespace}/${target.metadata.name}`, reason: event.reason },
        'recording an event failed',
      );
    }
  }
}
