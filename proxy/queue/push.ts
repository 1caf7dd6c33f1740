// The durable queue for Pushgateway-protocol pushes: checked pushes are queued (fsync'd) before the
// pusher is answered, and one loop delivers them to the Pushgateway one at a time, in the order
// they were accepted, so the group the Pushgateway ends up with is the one the pushes made.
//
// It is a DiskQueue of its own (the `pushgateway` directory inside --queue.dir), in the same
// on-disk format; its records carry a push operation as the body (protocol byte 1, no tenant):
//   u8     method (1 PUT, 2 POST, 3 DELETE)
//   u16 LE length of the grouping path in bytes
//   the grouping path (UTF-8), then the text-format body
//
// Delivery is at least once. Replaying a push the Pushgateway already took (after a crash, before
// the ack reached the disk) is harmless: PUT and DELETE are idempotent, and a POST replayed in its
// place in the order leaves the group as it was.

import { setTimeout as sleep } from 'node:timers/promises';
import { CardinalError } from '../errors.js';
import type { PushForwarder, PushRequest } from '../forward/pushgateway.js';
import { backoffDelay, type RetryPolicy } from '../forward/retry.js';
import { rateLimited } from '../ratelimit.js';
import { supervise, untilDrained } from './loop.js';
import type { QueueMetrics } from './metrics.js';
import type { DiskQueue, QueueLogger } from './queue.js';

const METHODS = ['PUT', 'POST', 'DELETE'] as const;

export function encodePushOp(op: PushRequest): Uint8Array {
  const path = Buffer.from(op.path, 'utf8');
  if (path.length > 0xffff) throw new RangeError(`grouping path of ${path.length} bytes exceeds 65535`);
  const body = op.body === undefined ? Buffer.alloc(0) : Buffer.from(op.body);
  const out = Buffer.allocUnsafe(3 + path.length + body.length);
  out[0] = METHODS.indexOf(op.method) + 1;
  out.writeUInt16LE(path.length, 1);
  path.copy(out, 3);
  body.copy(out, 3 + path.length);
  return out;
}

/** Throws on bytes that are no push operation (a record written by something else). */
export function decodePushOp(bytes: Uint8Array): PushRequest {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const method = METHODS[(b[0] ?? 0) - 1];
  if (method === undefined || b.length < 3) throw new Error('not a push operation');
  const pathLen = b.readUInt16LE(1);
  if (3 + pathLen > b.length) throw new Error('push operation shorter than its path');
  const path = b.toString('utf8', 3, 3 + pathLen);
  if (!path.startsWith('/metrics/')) throw new Error('push operation without a grouping path');
  return method === 'DELETE' ? { method, path } : { method, path, body: b.subarray(3 + pathLen) };
}

export interface PushDrainOptions {
  readonly queue: DiskQueue;
  readonly forwarder: PushForwarder;
  readonly metrics: QueueMetrics;
  readonly logger: QueueLogger;
  readonly retry: Pick<RetryPolicy, 'minBackoffMs' | 'maxBackoffMs'>;
  readonly random?: () => number;
}

/** Delivers queued pushes in order. A class: it owns a loop and its stopping. */
export class PushDrain {
  readonly #opts: PushDrainOptions;
  readonly #closing = new AbortController();
  #loop: Promise<void> | undefined;
  readonly #logDrop = rateLimited(10_000);

  constructor(opts: PushDrainOptions) {
    this.#opts = opts;
  }

  start(): void {
    this.#loop ??= this.#supervise();
  }

  /** Delivers for up to `graceMs` while anything is queued, then stops; the rest stays on disk. */
  async close(graceMs = 0): Promise<void> {
    await untilDrained(this.#opts.queue, graceMs);
    this.#closing.abort();
    await this.#loop;
  }

  #supervise(): Promise<void> {
    return supervise(
      () => this.#run(),
      this.#closing.signal,
      (err) => this.#opts.logger.error({ err }, 'push queue drain loop failed; restarting in 1s'),
    );
  }

  async #run(): Promise<void> {
    const { queue, metrics, logger } = this.#opts;
    const signal = this.#closing.signal;
    while (!signal.aborted) {
      const record = await queue.read(queue.acked);
      if (record === undefined) {
        await queue.waitForData(1000, signal);
        continue;
      }
      queue.noteHead(record.entry.enqueuedAtMs);
      const samples = record.entry.samples;
      let op: PushRequest;
      try {
        op = decodePushOp(record.entry.body);
      } catch (err) {
        metrics.dropped('corrupt', 1, samples);
        logger.error({ err }, 'a queued push does not decode; dropped');
        await queue.ack(record.end, [record]);
        continue;
      }
      for (let attempt = 1; !signal.aborted; attempt++) {
        try {
          const res = await this.#opts.forwarder.send({ ...op, signal });
          if (res.status < 300) {
            metrics.sent(1, samples);
          } else {
            // The Pushgateway refused it (an inconsistent push): retrying cannot help, and the
            // pusher was answered long ago. Counted, and logged at most every 10 s.
            metrics.dropped('rejected', 1, samples);
            this.#logDrop('rejected', (suppressed) =>
              logger.warn(
                {
                  status: res.status,
                  method: op.method,
                  path: op.path,
                  answer: res.body.slice(0, 300),
                  suppressed,
                },
                'the Pushgateway refused a queued push; dropped',
              ),
            );
          }
          break;
        } catch (err) {
          if (!(err instanceof CardinalError) || err.code !== 'PUSHGATEWAY_UNAVAILABLE') {
            if (signal.aborted) return;
            throw err;
          }
          metrics.retried('unavailable');
          const delay = backoffDelay(
            { ...this.#opts.retry, budgetMs: 0 },
            attempt,
            undefined,
            this.#opts.random ?? Math.random,
          );
          await sleep(delay, undefined, { signal }).catch(() => undefined);
        }
      }
      if (signal.aborted) return;
      await queue.ack(record.end, [record]);
    }
  }
}
