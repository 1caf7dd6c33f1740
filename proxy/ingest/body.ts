// Request bodies read into memory kept from request to request.
//
// fastify's own buffer parser joins a body's chunks into a new buffer per request: an ArrayBuffer
// of the body's size (about 128 KB for a remote-write request of 2,000 series). At hundreds of
// requests a second those pile up between scavenges until external memory reaches V8's global
// limit, and each time that starts a mark-compact of several milliseconds, mostly spent sweeping
// array buffers (README, "Where the tail comes from"). Read into a pooled buffer, a body costs no
// allocation once the pool has warmed up.
//
// A body is given back only by whoever knows that nothing can still read it (`BodyPool.release`):
// a body never given back is simply collected, as before.

import type { FastifyRequest } from 'fastify';
import fastify from 'fastify';
import { MIN_REUSABLE_BYTES, reusableBuffer } from '../buffers.js';

const { FST_ERR_CTP_BODY_TOO_LARGE, FST_ERR_CTP_INVALID_CONTENT_LENGTH } = fastify.errorCodes;

export interface BodyPoolOptions {
  /** Buffers kept for reuse, at most. */
  readonly maxKept: number;
  /** A buffer larger than this serves its request only: one huge body does not pin its memory. */
  readonly maxKeptBytes: number;
}

export class BodyPool {
  readonly #free: Buffer[] = [];
  /** The buffer each body handed out is a view of. */
  readonly #owners = new WeakMap<Buffer, Buffer>();
  readonly #opts: BodyPoolOptions;

  constructor(opts: BodyPoolOptions = { maxKept: 32, maxKeptBytes: 1 << 20 }) {
    this.#opts = opts;
  }

  /** Buffers waiting for reuse (for tests). */
  get kept(): number {
    return this.#free.length;
  }

  /**
   * A buffer of at least `size` bytes: a kept one of at least `prefer` bytes if there is one, else
   * a kept one of at least `size`, else a new one.
   */
  take(size: number, prefer = size): Buffer {
    let fit = -1;
    for (let i = this.#free.length - 1; i >= 0; i--) {
      const n = this.#free[i]!.length;
      if (n >= prefer) {
        fit = i;
        break;
      }
      if (n >= size && fit < 0) fit = i;
    }
    if (fit >= 0) {
      const b = this.#free[fit]!;
      this.#free[fit] = this.#free[this.#free.length - 1]!;
      this.#free.pop();
      return b;
    }
    return reusableBuffer(size);
  }

  /** Gives `buffer` back for reuse; the caller must not touch it afterwards. */
  give(buffer: Buffer): void {
    if (buffer.length > this.#opts.maxKeptBytes || this.#free.length >= this.#opts.maxKept) return;
    this.#free.push(buffer);
  }

  /** The body `view` (of `owner`) as the parser hands it out, for `release`. */
  #handOut(view: Buffer, owner: Buffer): Buffer {
    this.#owners.set(view, owner);
    return view;
  }

  /**
   * Gives back the memory of a body the parser returned, once nothing can read it any more (not
   * before the upstream has answered a forward of it). Anything else is left alone.
   */
  release(body: unknown): void {
    if (!(body instanceof Buffer)) return;
    const owner = this.#owners.get(body);
    if (owner === undefined) return;
    this.#owners.delete(body);
    this.give(owner);
  }

  /**
   * A fastify content-type parser (the stream form) reading the whole body into pooled memory,
   * with the checks and errors of fastify's own buffer parser: a Content-Length over `limit` or
   * more bytes than it is 413 FST_ERR_CTP_BODY_TOO_LARGE before or while reading, a body of
   * another length than its Content-Length 400 FST_ERR_CTP_INVALID_CONTENT_LENGTH, a stream
   * error 400.
   */
  parser(limit: number) {
    return (
      request: FastifyRequest,
      payload: NodeJS.ReadableStream,
      done: (err: Error | null, body?: unknown) => void,
    ): void => {
      const declared = Number(request.headers['content-length']);
      if (declared > limit) {
        done(new FST_ERR_CTP_BODY_TOO_LARGE());
        return;
      }
      // New memory follows the bytes that arrived, not the Content-Length: a sender that declares
      // a large body and sends little costs at most the smallest buffer. A kept buffer of the
      // declared size costs nothing, so that one is preferred.
      const expected = Number.isNaN(declared) ? MIN_REUSABLE_BYTES : declared;
      let buffer = this.take(Math.min(expected, MIN_REUSABLE_BYTES), expected);
      let length = 0;
      const finish = (err: Error | null) => {
        payload.removeListener('data', onData);
        payload.removeListener('end', onEnd);
        payload.removeListener('error', onError);
        if (err !== null) {
          this.give(buffer);
          done(err);
          return;
        }
        done(null, this.#handOut(buffer.subarray(0, length), buffer));
      };
      const onData = (chunk: Buffer | string) => {
        const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (length + c.length > limit) {
          finish(new FST_ERR_CTP_BODY_TOO_LARGE());
          return;
        }
        if (length + c.length > buffer.length) {
          // A larger buffer, at most twice what has arrived (take rounds up to a power of two).
          const larger = this.take(length + c.length);
          buffer.copy(larger, 0, 0, length);
          this.give(buffer);
          buffer = larger;
        }
        // Always a copy: a chunk may be a view of the socket's read buffer.
        c.copy(buffer, length);
        length += c.length;
      };
      const onEnd = () => {
        if (!Number.isNaN(declared) && length !== declared) {
          finish(new FST_ERR_CTP_INVALID_CONTENT_LENGTH());
          return;
        }
        finish(null);
      };
      const onError = (err: Error & { statusCode?: number }) => {
        if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
        finish(err);
      };
      payload.on('data', onData);
      payload.on('end', onEnd);
      payload.on('error', onError);
      payload.resume();
    };
  }
}
