import { PassThrough } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { BodyPool } from './body.js';

type Done = { err: (Error & { code?: string; statusCode?: number }) | null; body?: unknown };

/** Runs the parser over `chunks` sent with `headers`; resolves with what it called `done` with. */
function parse(pool: BodyPool, limit: number, chunks: (Buffer | Error)[], contentLength?: number) {
  const payload = new PassThrough();
  const request = {
    headers: contentLength === undefined ? {} : { 'content-length': String(contentLength) },
  } as unknown as FastifyRequest;
  const result = new Promise<Done>((resolve) => {
    pool.parser(limit)(request, payload, (err, body) => resolve({ err, body }));
  });
  for (const c of chunks) {
    if (c instanceof Error) payload.destroy(c);
    else payload.write(c);
  }
  if (!chunks.some((c) => c instanceof Error)) payload.end();
  return result;
}

const bytes = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255));

describe('BodyPool.parser', () => {
  it('reads a body of several chunks whole, and a released body is read into the same memory next time', async () => {
    const pool = new BodyPool();
    const a = bytes(100_000, 1);
    const first = await parse(pool, 1 << 20, [a.subarray(0, 30_000), a.subarray(30_000)], a.length);
    expect(first.err).toBeNull();
    expect(Buffer.compare(first.body as Buffer, a)).toBe(0);
    // Read into 64 KiB first, then 128 KiB: both are kept once the body is given back.
    expect(pool.kept).toBe(1);
    pool.release(first.body);
    expect(pool.kept).toBe(2);

    // The kept buffer that holds the declared length whole is the one taken.
    const b = bytes(90_000, 2);
    const second = await parse(pool, 1 << 20, [b], b.length);
    expect(Buffer.compare(second.body as Buffer, b)).toBe(0);
    expect((second.body as Buffer).buffer).toBe((first.body as Buffer).buffer);
    expect(pool.kept).toBe(1);
  });

  it('does not reuse memory of a body nobody released', async () => {
    const pool = new BodyPool();
    const a = bytes(1000, 3);
    const first = await parse(pool, 1 << 20, [a], a.length);
    const second = await parse(pool, 1 << 20, [bytes(1000, 4)], 1000);
    expect((second.body as Buffer).buffer).not.toBe((first.body as Buffer).buffer);
    expect(Buffer.compare(first.body as Buffer, a)).toBe(0);
  });

  it('releases each body once: a second release of it, or of anything else, changes nothing', async () => {
    const pool = new BodyPool();
    const first = await parse(pool, 1 << 20, [bytes(10, 5)], 10);
    pool.release(first.body);
    pool.release(first.body);
    pool.release(Buffer.alloc(10));
    pool.release(undefined);
    expect(pool.kept).toBe(1);
  });

  it('grows past the first buffer for a body without Content-Length', async () => {
    const pool = new BodyPool();
    const a = bytes(300_000, 6);
    const r = await parse(pool, 1 << 20, [
      a.subarray(0, 100_000),
      a.subarray(100_000, 200_000),
      a.subarray(200_000),
    ]);
    expect(r.err).toBeNull();
    expect(Buffer.compare(r.body as Buffer, a)).toBe(0);
    // The outgrown buffers went back to the pool.
    expect(pool.kept).toBeGreaterThan(0);
  });

  it('refuses a declared length over the limit before reading, and a body that grows past it', async () => {
    const pool = new BodyPool();
    const declared = await parse(pool, 1000, [bytes(10, 7)], 5000);
    expect(declared.err?.code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
    expect(declared.err?.statusCode).toBe(413);
    const grown = await parse(pool, 1000, [bytes(600, 8), bytes(600, 9)]);
    expect(grown.err?.code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
  });

  it('holds memory for the bytes that arrived, not for the length a sender declared', async () => {
    const pool = new BodyPool();
    const r = await parse(pool, 1 << 20, [bytes(10, 13)], 900_000);
    expect(r.err?.code).toBe('FST_ERR_CTP_INVALID_CONTENT_LENGTH');
    // The buffer it had went back to the pool: the smallest one, not 900,000 bytes.
    expect(pool.kept).toBe(1);
    expect(pool.take(1).length).toBe(1 << 16);
    // An honest large body still arrives whole.
    const a = bytes(900_000, 14);
    const whole = await parse(pool, 1 << 20, [a.subarray(0, 65_536), a.subarray(65_536)], a.length);
    expect(Buffer.compare(whole.body as Buffer, a)).toBe(0);
  });

  it('refuses a body whose length is not its Content-Length', async () => {
    const pool = new BodyPool();
    const short = await parse(pool, 1 << 20, [bytes(10, 10)], 20);
    expect(short.err?.code).toBe('FST_ERR_CTP_INVALID_CONTENT_LENGTH');
    expect(short.err?.statusCode).toBe(400);
    const long = await parse(pool, 1 << 20, [bytes(30, 11)], 20);
    expect(long.err?.code).toBe('FST_ERR_CTP_INVALID_CONTENT_LENGTH');
  });

  it('answers a stream error with 400, and keeps the memory for the next body', async () => {
    const pool = new BodyPool();
    const r = await parse(pool, 1 << 20, [bytes(10, 12), new Error('connection reset')], 100);
    expect(r.err?.message).toBe('connection reset');
    expect(r.err?.statusCode).toBe(400);
    expect(pool.kept).toBe(1);
  });

  it('keeps at most maxKept buffers, none larger than maxKeptBytes', async () => {
    const pool = new BodyPool({ maxKept: 2, maxKeptBytes: 1 << 17 });
    const bodies = await Promise.all([1, 2, 3].map((s) => parse(pool, 1 << 20, [bytes(100, s)], 100)));
    for (const b of bodies) pool.release(b.body);
    expect(pool.kept).toBe(2);
    const fresh = new BodyPool({ maxKept: 2, maxKeptBytes: 1 << 17 });
    const big = await parse(fresh, 1 << 20, [bytes(200_000, 4)], 200_000);
    // The 64 KiB it started in is kept; its 256 KiB buffer is not.
    expect(fresh.kept).toBe(1);
    fresh.release(big.body);
    expect(fresh.kept).toBe(1);
    const small = await parse(fresh, 1 << 20, [bytes(100_000, 5)], 100_000);
    expect(fresh.kept).toBe(1);
    fresh.release(small.body);
    expect(fresh.kept).toBe(2);
  });
});
