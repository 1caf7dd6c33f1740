// Calls between the primary and its workers (`--workers N`, proxy/workers/primary.ts) over the
// cluster IPC channel, with 'advanced' serialization (typed arrays and Dates cross as they are).
// One Rpc per channel end: `call` sends a request and resolves with the other end's answer, or
// rejects when it fails, the channel closes or the time runs out; `handle` answers the other end's
// requests; `notify` sends without an answer.

/** What crosses the channel; `cardinal` tells these messages apart from any other. */
export type RpcMessage =
  | { readonly cardinal: 'req'; readonly id: number; readonly op: string; readonly arg: unknown }
  | { readonly cardinal: 'note'; readonly op: string; readonly arg: unknown }
  | {
      readonly cardinal: 'res';
      readonly id: number;
      readonly ok: boolean;
      readonly value?: unknown;
      readonly error?: string;
    };

type Handler = (arg: unknown) => unknown;

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export function isRpcMessage(m: unknown): m is RpcMessage {
  return typeof m === 'object' && m !== null && 'cardinal' in m;
}

export class Rpc {
  readonly #send: (m: RpcMessage) => void;
  readonly #handlers = new Map<string, Handler>();
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #closed: string | undefined;

  constructor(send: (m: RpcMessage) => void) {
    this.#send = send;
  }

  handle(op: string, fn: Handler): void {
    this.#handlers.set(op, fn);
  }

  call<T>(op: string, arg: unknown, timeoutMs: number): Promise<T> {
    if (this.#closed !== undefined) return Promise.reject(new Error(this.#closed));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${op}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.#send({ cardinal: 'req', id, op, arg });
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  notify(op: string, arg: unknown): void {
    if (this.#closed !== undefined) return;
    try {
      this.#send({ cardinal: 'note', op, arg });
    } catch {
      // The other end is gone; its exit is handled where the channel is watched.
    }
  }

  /** Feeds a message that arrived; false when it is not one of ours. */
  receive(m: unknown): boolean {
    if (!isRpcMessage(m)) return false;
    if (m.cardinal === 'res') {
      const p = this.#pending.get(m.id);
      if (p === undefined) return true;
      this.#pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(m.error ?? 'failed'));
      return true;
    }
    const handler = this.#handlers.get(m.op);
    if (m.cardinal === 'note') {
      void Promise.resolve()
        .then(() => handler?.(m.arg))
        .catch(() => {});
      return true;
    }
    const answer = (r: RpcMessage) => {
      try {
        this.#send(r);
      } catch {
        // The asker is gone.
      }
    };
    if (handler === undefined) {
      answer({ cardinal: 'res', id: m.id, ok: false, error: `no handler for ${m.op}` });
      return true;
    }
    Promise.resolve()
      .then(() => handler(m.arg))
      .then(
        (value) => answer({ cardinal: 'res', id: m.id, ok: true, value }),
        (err: unknown) =>
          answer({
            cardinal: 'res',
            id: m.id,
            ok: false,
            error: err instanceof Error ? err.message : String(err),
          }),
      );
    return true;
  }

  /** Fails every call in flight and every later one: the other end is gone. */
  close(reason: string): void {
    this.#closed = reason;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
      this.#pending.delete(id);
    }
  }
}

/** A worker's answer to one request of the primary, or why it has none. */
export type WorkerAnswer<T> = { readonly worker: number } & (
  | { readonly answer: T }
  | { readonly error: string }
);

/**
 * Asks every worker index below `workers` through the channels of those serving now, waiting at
 * most `timeoutMs` for each; one that is not serving (starting, or being started again) or does
 * not answer in time has the reason instead. Never throws.
 */
export function askEveryWorker<T>(
  workers: number,
  live: readonly { readonly index: number; readonly rpc: Rpc }[],
  op: string,
  arg: unknown,
  timeoutMs: number,
): Promise<WorkerAnswer<T>[]> {
  return Promise.all(
    Array.from({ length: workers }, async (_, i): Promise<WorkerAnswer<T>> => {
      const w = live.find((l) => l.index === i);
      if (w === undefined) return { worker: i, error: 'not serving (starting, or being started again)' };
      try {
        return { worker: i, answer: await w.rpc.call<T>(op, arg, timeoutMs) };
      } catch (err) {
        return { worker: i, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}
