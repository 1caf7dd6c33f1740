// What every drain loop of a queue does the same way, whatever it delivers to.

import { setTimeout as sleep } from 'node:timers/promises';

/** Runs `run` until `signal` aborts; an unexpected error is reported and `run` restarts a second later. */
export async function supervise(
  run: () => Promise<void>,
  signal: AbortSignal,
  onError: (err: unknown) => void,
): Promise<void> {
  while (!signal.aborted) {
    try {
      await run();
    } catch (err) {
      onError(err);
      await sleep(1000, undefined, { signal }).catch(() => undefined);
    }
  }
}

/**
 * Waits up to `graceMs` for the queue to hold nothing undelivered (on SIGTERM, so that a pod whose
 * queue lives on an emptyDir hands its data over before the volume goes).
 */
export async function untilDrained(queue: { readonly drained: boolean }, graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && !queue.drained) {
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
}
