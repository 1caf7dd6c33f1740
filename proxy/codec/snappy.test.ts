import fc from 'fast-check';
import SnappyJS from 'snappyjs';
import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { snappyDecode, snappyDecodedLength, snappyEncode } from './snappy.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

function errorOf(run: () => unknown): CardinalError {
  try {
    run();
  } catch (err) {
    if (err instanceof CardinalError) return err;
    throw err;
  }
  throw new Error('expected a CardinalError, nothing was thrown');
}

describe('snappy block codec', () => {
  it('round-trips arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (raw) => {
        expect(Uint8Array.from(snappyDecode(snappyEncode(raw), raw.length))).toEqual(raw);
      }),
    );
  });

  it('interoperates with an independent implementation of the block format (snappyjs)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (raw) => {
        expect(Uint8Array.from(snappyDecode(SnappyJS.compress(raw), raw.length))).toEqual(raw);
        expect(Uint8Array.from(SnappyJS.uncompress(Uint8Array.from(snappyEncode(raw))))).toEqual(raw);
      }),
    );
  });

  it('decodes a hand-made block: preamble 5, one literal element of 5 bytes', () => {
    // Varint 05, then literal tag (len-1)<<2 | 0 = 0x10, then the bytes.
    expect(snappyDecode(hex('05 10 68656c6c6f'), 5).toString()).toBe('hello');
  });

  it.each([
    ['00', 0],
    ['05', 5],
    ['8001', 128],
    ['ffffffff0f', 0xffffffff],
    ['', -1],
    ['80', -1],
    ['ffffffff1f', -1],
    ['ffffffffff01', -1],
  ])('reads the length preamble of %s as %d', (bytes, length) => {
    expect(snappyDecodedLength(hex(bytes))).toBe(length);
  });

  it('a preamble declaring more than the block can hold is a malformed body (400), not a large one', () => {
    // Declares 4 GiB - 1 with nothing behind it.
    const err = errorOf(() => snappyDecode(hex('ffffffff0f'), 1 << 20));
    expect(err.code).toBe('MALFORMED_SNAPPY');
    expect(err.status).toBe(400);
    expect(err.message).toBe(
      'body is not a valid snappy block: the preamble declares 4294967295 bytes, more than a 5-byte block can hold',
    );
  });

  it('rejects an oversized body from its preamble alone, before decompressing', () => {
    const big = snappyEncode(new Uint8Array(2 << 20));
    const err = errorOf(() => snappyDecode(big, 1 << 20));
    expect(err.code).toBe('BODY_TOO_LARGE');
    expect(err.status).toBe(413);
    expect(err.message).toBe(
      'request body too large: decoded size 2097152 bytes exceeds the limit of 1048576 bytes',
    );
  });

  it('accepts a body exactly at the limit', () => {
    const raw = new Uint8Array(1000).fill(7);
    expect(snappyDecode(snappyEncode(raw), 1000)).toHaveLength(1000);
    expect(errorOf(() => snappyDecode(snappyEncode(raw), 999)).code).toBe('BODY_TOO_LARGE');
  });

  it.each([
    ['an empty body', ''],
    ['a bad preamble', 'ffffffffffff'],
    ['a literal running past the end', '05 10 6865'],
    ['a copy reaching before the start', '05 0a 0100'],
    ['fewer bytes than the preamble says', '06 10 68656c6c6f'],
  ])('rejects %s as MALFORMED_SNAPPY', (_name, bytes) => {
    const err = errorOf(() => snappyDecode(hex(bytes), 1 << 20));
    expect(err.code).toBe('MALFORMED_SNAPPY');
    expect(err.status).toBe(400);
  });

  it('never throws anything but CardinalError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (body) => {
        try {
          snappyDecode(body, 1 << 16);
        } catch (err) {
          expect(err).toBeInstanceOf(CardinalError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
