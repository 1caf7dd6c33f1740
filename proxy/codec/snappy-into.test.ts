import fc from 'fast-check';
import SnappyJS from 'snappyjs';
import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { encodeWriteRequestV1 } from './proto.js';
import { snappyDecode, snappyEncode } from './snappy.js';
import { SNAPPY_SLACK, snappyDecodeInto, snappyDecodeReusing } from './snappy-into.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

/** What snappyDecodeReusing does with the body: the decoded bytes, or the error's code. */
function outcome(body: Uint8Array, max: number, scratch?: Buffer): string {
  try {
    return Buffer.from(snappyDecodeReusing(body, max, scratch).decoded).toString('hex');
  } catch (err) {
    if (err instanceof CardinalError) return err.code;
    throw err;
  }
}

function nativeOutcome(body: Uint8Array, max: number): string {
  try {
    return snappyDecode(body, max).toString('hex');
  } catch (err) {
    if (err instanceof CardinalError) return err.code;
    throw err;
  }
}

// Bytes with runs and repeats, so that the encoders write copies of every kind, overlapping ones
// (a repeated byte or pair) included, not only literals.
const repetitive = fc
  .array(
    fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 80 }),
      fc
        .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 300 }))
        .map(([b, n]) => new Uint8Array(n).fill(b)),
      fc
        .tuple(fc.uint8Array({ minLength: 2, maxLength: 9 }), fc.integer({ min: 1, max: 40 }))
        .map(([unit, n]) => Uint8Array.from(Array.from({ length: n }, () => [...unit]).flat())),
    ),
    { maxLength: 40 },
  )
  .map((parts) => Uint8Array.from(parts.flatMap((p) => [...p])));

describe('snappy decoding into a reused buffer', () => {
  it('decodes what the native encoder and snappyjs write, byte for byte as the native decoder', () => {
    fc.assert(
      fc.property(repetitive, (raw) => {
        const out = Buffer.alloc(raw.length + SNAPPY_SLACK);
        for (const block of [snappyEncode(raw), SnappyJS.compress(raw)]) {
          const n = snappyDecodeInto(block, out);
          expect(n).toBe(raw.length);
          expect(Buffer.compare(out.subarray(0, n), raw)).toBe(0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a remote-write body, reusing the buffer it was given', () => {
    const raw = encodeWriteRequestV1({
      timeseries: Array.from({ length: 500 }, (_, i) => ({
        labels: [
          { name: '__name__', value: `metric_${i % 7}` },
          { name: 'pod', value: `pod-${i}` },
        ],
        samples: [{ value: i, timestamp: 1_700_000_000_000 + i }],
        exemplars: [],
        histograms: [],
      })),
      metadata: [],
    });
    const first = snappyDecodeReusing(snappyEncode(raw), 1 << 20, undefined);
    expect(Buffer.compare(first.decoded, raw)).toBe(0);
    const again = snappyDecodeReusing(snappyEncode(raw), 1 << 20, first.buffer);
    expect(again.buffer).toBe(first.buffer);
    expect(Buffer.compare(again.decoded, raw)).toBe(0);
  });

  it('takes a new buffer when the one given is too small, and does not keep one over 8 MiB', () => {
    const small = Buffer.alloc(16);
    const r = snappyDecodeReusing(snappyEncode(new Uint8Array(100).fill(1)), 1 << 20, small);
    expect(r.buffer).not.toBe(small);
    expect(r.decoded).toHaveLength(100);
    const huge = snappyDecodeReusing(snappyEncode(new Uint8Array(9 << 20)), 16 << 20, r.buffer);
    expect(huge.decoded).toHaveLength(9 << 20);
    expect(huge.buffer).toBeUndefined();
  });

  it('writes nothing past the decoded length and its slack', () => {
    const raw = new Uint8Array(37).fill(9);
    const out = Buffer.alloc(raw.length + SNAPPY_SLACK + 8, 0xee);
    snappyDecodeInto(snappyEncode(raw), out);
    expect([...out.subarray(raw.length + SNAPPY_SLACK)]).toEqual(new Array(8).fill(0xee));
  });

  it.each([
    ['an empty body', ''],
    ['a bad preamble', 'ffffffffffff'],
    ['a literal running past the end', '05 10 6865'],
    ['a copy reaching before the start', '05 0a 0100'],
    ['fewer bytes than the preamble says', '06 10 68656c6c6f'],
    ['more bytes than the preamble says', '04 10 68656c6c6f'],
    ['a copy past the declared length', '06 10 68656c6c6f 0e 0500'],
    ['a copy element cut short', '06 10 68656c6c6f 02 05'],
    ['a literal length cut short', '06 f0'],
  ])('rejects %s as MALFORMED_SNAPPY', (_name, bytes) => {
    expect(outcome(hex(bytes), 1 << 20)).toBe('MALFORMED_SNAPPY');
  });

  it('refuses an oversized body from its preamble, as snappyDecode does', () => {
    const big = snappyEncode(new Uint8Array(2 << 20));
    expect(outcome(big, 1 << 20)).toBe('BODY_TOO_LARGE');
  });

  it('agrees with the native decoder on arbitrary and on damaged blocks', () => {
    const damaged = fc
      .tuple(repetitive, fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([raw, at, byte]) => {
        const block = Uint8Array.from(snappyEncode(raw));
        if (block.length > 0) block[at % block.length] = byte;
        return block;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 256 }), damaged), (body) => {
        const mine = outcome(body, 1 << 16);
        const native = nativeOutcome(body, 1 << 16);
        // A block both decode is decoded to the same bytes; a refused block is refused by both.
        expect(mine).toBe(native);
      }),
      { numRuns: 3000 },
    );
  });
});
