import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ADMIT_KNOWN,
  ADMIT_NEW,
  ADMIT_OVER_LIMIT,
  ADMIT_TABLE_FULL,
  hashBytes,
  hashBytesPair,
  hashString,
  LOOKUP_KNOWN,
  LOOKUP_UNKNOWN,
  METRIC_OVERFLOW,
  METRIC_OVERFLOW_NAME,
  MetricInterner,
  SeriesTracker,
} from './cardinality.js';

const utf8 = (s: string) => new TextEncoder().encode(s);
const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

describe('hashBytes (MurmurHash3 x86_32)', () => {
  // Published test vectors for MurmurHash3_x86_32.
  it.each([
    ['', 0, 0x00000000],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['\0\0\0\0', 0, 0x2362f9de],
    ['a', 0x9747b28c, 0x7fa09ea6],
    ['aa', 0x9747b28c, 0x5d211726],
    ['aaa', 0x9747b28c, 0x283e0130],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['abc', 0x9747b28c, 0xc84a62dd],
    ['abcd', 0x9747b28c, 0xf0478627],
    ['Hello, world!', 0x9747b28c, 0x24884cba],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ])('%j with seed %i is %i', (input, seed, expected) => {
    const bytes = utf8(input);
    expect(hashBytes(bytes, 0, bytes.length, seed)).toBe(expected);
    expect(hashString(input, seed)).toBe(expected);
  });

  it("passes SMHasher's verification (0xB0F57EE3)", () => {
    // SMHasher VerificationTest: hash keys {0}, {0,1}, ... of length 0..255 with seed 256-length,
    // then hash the 256 little-endian results with seed 0.
    const key = new Uint8Array(256);
    const results = new Uint8Array(1024);
    const view = new DataView(results.buffer);
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      view.setUint32(i * 4, hashBytes(key, 0, i, 256 - i), true);
    }
    expect(hashBytes(results, 0, results.length, 0)).toBe(0xb0f57ee3);
  });

  it('hashBytesPair gives the two hashBytes of any range with its two seeds', () => {
    const out = new Uint32Array(2);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(),
        fc.nat(),
        fc.integer(),
        fc.integer(),
        (bytes, x, y, seedA, seedB) => {
          const start = bytes.length === 0 ? 0 : x % (bytes.length + 1);
          const end = start + (bytes.length === 0 ? 0 : y % (bytes.length - start + 1));
          hashBytesPair(bytes, start, end, seedA, seedB, out);
          expect([out[0], out[1]]).toEqual([
            hashBytes(bytes, start, end, seedA),
            hashBytes(bytes, start, end, seedB),
          ]);
        },
      ),
    );
  });

  it('hashes only the given range', () => {
    const whole = utf8('xxHello, world!yy');
    expect(hashBytes(whole, 2, whole.length - 2, 0x9747b28c)).toBe(0x24884cba);
  });

  it('hashString equals hashBytes of the UTF-8 encoding, surrogates included', () => {
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    const anyString = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: codeUnit }));
    fc.assert(
      fc.property(anyString, fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => {
        const bytes = utf8(s);
        expect(hashString(s, seed)).toBe(hashBytes(bytes, 0, bytes.length, seed));
      }),
      { numRuns: 500 },
    );
  });
});

function tracker(maxTrackedSeries: number, windowMs = 10 * MINUTE, buckets = 16, sweepPerAdmit = 2) {
  return new SeriesTracker({ maxTrackedSeries, buckets, windowMs, sweepPerAdmit });
}

describe('SeriesTracker admission', () => {
  it('admits a new key once and then knows it', () => {
    const t = tracker(100);
    expect(t.admit(1, 42, T0, 10)).toBe(ADMIT_NEW);
    expect(t.admit(1, 42, T0 + 1000, 10)).toBe(ADMIT_KNOWN);
    expect(t.count(1)).toBe(1);
    expect(t.size).toBe(1);
  });

  it('keeps buckets apart: the same hash in two buckets is two keys', () => {
    const t = tracker(100);
    expect(t.admit(1, 42, T0, 10)).toBe(ADMIT_NEW);
    expect(t.admit(2, 42, T0, 10)).toBe(ADMIT_NEW);
    expect([t.count(1), t.count(2), t.count(3)]).toEqual([1, 1, 0]);
  });

  it('treats hash 0 like any other hash', () => {
    const t = tracker(100);
    expect(t.admit(0, 0, T0, 10)).toBe(ADMIT_NEW);
    expect(t.admit(0, 0, T0, 10)).toBe(ADMIT_KNOWN);
  });

  it('dropNewSeries: refuses new series at the limit while admitted series keep flowing', () => {
    const t = tracker(100);
    const results = [11, 12, 13, 14, 15].map((h) => t.admit(3, hashString(`s${h}`, 0), T0, 3));
    expect(results).toEqual([ADMIT_NEW, ADMIT_NEW, ADMIT_NEW, ADMIT_OVER_LIMIT, ADMIT_OVER_LIMIT]);
    for (let minute = 1; minute <= 30; minute++) {
      for (const h of [11, 12, 13])
        expect(t.admit(3, hashString(`s${h}`, 0), T0 + minute * MINUTE, 3)).toBe(ADMIT_KNOWN);
      expect(t.admit(3, hashString('s14', 0), T0 + minute * MINUTE, 3)).toBe(ADMIT_OVER_LIMIT);
    }
    expect(t.count(3)).toBe(3);
    expect(t.overLimitRejections).toBe(32);
  });

  it('limits each bucket on its own', () => {
    const t = tracker(100);
    for (let i = 0; i < 5; i++) t.admit(1, 100 + i, T0, 5);
    expect(t.admit(1, 200, T0, 5)).toBe(ADMIT_OVER_LIMIT);
    expect(t.admit(2, 200, T0, 5)).toBe(ADMIT_NEW);
  });

  it('forget releases a place under the limit', () => {
    const t = tracker(100);
    t.admit(1, 1, T0, 2);
    t.admit(1, 2, T0, 2);
    expect(t.admit(1, 3, T0, 2)).toBe(ADMIT_OVER_LIMIT);
    expect(t.forget(1, 2)).toBe(true);
    expect(t.forget(1, 2)).toBe(false);
    expect(t.admit(1, 3, T0, 2)).toBe(ADMIT_NEW);
    expect(t.admit(1, 1, T0, 2)).toBe(ADMIT_KNOWN);
  });

  it('rejects buckets out of range rather than corrupting counts', () => {
    const t = tracker(10, MINUTE, 4);
    expect(() => t.admit(4, 1, T0, 1)).toThrow(RangeError);
    expect(() => t.admit(-1, 1, T0, 1)).toThrow(RangeError);
    expect(() => t.admit(1.5, 1, T0, 1)).toThrow(RangeError);
  });
});

describe('SeriesTracker window', () => {
  it('keeps a key active for the window and expires it after, at one-second resolution', () => {
    const t = tracker(100, MINUTE, 4, 0);
    t.admit(1, 7, T0, 10);
    expect(t.admit(1, 7, T0 + MINUTE, 10)).toBe(ADMIT_KNOWN); // refreshed at T0+60s
    expect(t.admit(1, 7, T0 + 2 * MINUTE + 999, 10)).toBe(ADMIT_KNOWN); // 60 s later in whole seconds
    expect(t.admit(1, 7, T0 + 3 * MINUTE + 2000, 10)).toBe(ADMIT_NEW); // 62 s later: expired, new again
    expect(t.count(1)).toBe(1);
  });

  it('counts an expired series that comes back before the sweep once, not twice', () => {
    const t = tracker(100, MINUTE, 4, 0);
    t.admit(1, 1, T0, 2);
    t.admit(1, 2, T0, 2);
    t.admit(1, 2, T0 + 50_000, 2);
    // Key 1 expired but still counted: it comes back as new, in its own place under the limit.
    expect(t.admit(1, 1, T0 + 70_000, 2)).toBe(ADMIT_NEW);
    expect(t.count(1)).toBe(2);
    // With a limit of 1 and key 2 still active, the same return is over the limit and frees the slot.
    t.admit(2, 3, T0, 1);
    t.admit(2, 4, T0 + 50_000, 5);
    expect(t.admit(2, 3, T0 + 70_000, 1)).toBe(ADMIT_OVER_LIMIT);
    expect(t.count(2)).toBe(1);
  });

  it('makes room under the limit as series expire (sweep)', () => {
    const t = tracker(100, MINUTE, 4, 0);
    t.admit(1, 1, T0, 2);
    t.admit(1, 2, T0 + 30_000, 2);
    expect(t.admit(1, 3, T0 + 40_000, 2)).toBe(ADMIT_OVER_LIMIT);
    expect(t.sweep(T0 + 61_000, t.slots)).toBe(1); // key 1 expired, key 2 not yet
    expect(t.count(1)).toBe(1);
    expect(t.admit(1, 3, T0 + 61_000, 2)).toBe(ADMIT_NEW);
    expect(t.admit(1, 2, T0 + 61_000, 2)).toBe(ADMIT_KNOWN);
    expect(t.admit(1, 4, T0 + 61_000, 2)).toBe(ADMIT_OVER_LIMIT);
  });

  it('lets a new series take the place of an expired one of its bucket before any sweep', () => {
    // One slot of room: the new key must probe over the expired one to reach an empty slot.
    const t = tracker(2, MINUTE, 4, 0);
    t.admit(1, 1, T0, 2);
    t.admit(1, 2, T0, 2);
    expect(t.admit(1, 3, T0 + 5 * MINUTE, 2)).toBe(ADMIT_NEW);
    expect(t.count(1)).toBe(2);
    expect(t.size).toBe(2);
  });

  it('sweeps expired keys as it admits, without explicit sweep calls', () => {
    const t = tracker(1000, MINUTE, 4, 2);
    for (let i = 1; i <= 500; i++) t.admit(1, hashString(`old${i}`, 0), T0, Infinity);
    expect(t.count(1)).toBe(500);
    // A few thousand admits of one live key sweep the whole table (2 slots each).
    for (let i = 0; i < t.slots; i++) t.admit(2, 9, T0 + 5 * MINUTE, Infinity);
    expect(t.count(1)).toBe(0);
    expect(t.count(2)).toBe(1);
    expect(t.expirations).toBe(500);
  });
});

describe('SeriesTracker capacity', () => {
  it('never holds more than maxTrackedSeries: new keys beyond it are refused, known keys flow', () => {
    const t = tracker(4, MINUTE, 4, 0);
    for (let h = 1; h <= 4; h++) expect(t.admit(h % 2, h, T0, Infinity)).toBe(ADMIT_NEW);
    expect(t.admit(3, 5, T0, Infinity)).toBe(ADMIT_TABLE_FULL);
    expect(t.admit(1, 1, T0, Infinity)).toBe(ADMIT_KNOWN);
    expect(t.fullRejections).toBe(1);
    expect(t.count(3)).toBe(0);
    // A bucket at its limit reports the limit, not the full table.
    expect(t.admit(1, 6, T0, 2)).toBe(ADMIT_OVER_LIMIT);
    // Once keys expire there is room again.
    expect(t.admit(3, 5, T0 + 2 * MINUTE, Infinity)).toBe(ADMIT_NEW);
  });

  it('contains a cardinality bomb: fixed memory, bounded size, admitted series keep flowing', () => {
    const t = tracker(1000, 10 * MINUTE, 4);
    const bytes = t.bytes;
    for (let i = 1; i <= 500; i++)
      expect(t.admit(1, hashString(`good${i}`, 0), T0, Infinity)).toBe(ADMIT_NEW);
    for (let i = 0; i < 100_000; i++) t.admit(2, hashString(`bomb${i}`, 0), T0 + i, Infinity);
    expect(t.size).toBe(1000);
    expect(t.count(2)).toBe(500);
    expect(t.fullRejections).toBe(99_500);
    for (let i = 1; i <= 500; i++)
      expect(t.admit(1, hashString(`good${i}`, 0), T0 + 100_000, Infinity)).toBe(ADMIT_KNOWN);
    expect(t.bytes).toBe(bytes);
    expect(t.bytes / t.maxTrackedSeries).toBeLessThanOrEqual(16);
  });

  it('sizes its memory by what it holds: small when empty, at most 16 bytes per tracked series when full', () => {
    // Thousands of policies each hold a tracker with the same bound; empty ones must cost little.
    const empty = tracker(1_000_000, MINUTE, 65536);
    expect(empty.bytes).toBeLessThan(16 * 1024);
    const full = tracker(100_000, MINUTE, 65536);
    for (let i = 0; i < 100_000; i++) expect(full.admit(i % 65536, i + 1, T0, Infinity)).toBe(ADMIT_NEW);
    expect(full.slots).toBe(Math.ceil(100_000 / 0.75) + 1);
    expect(full.bytes).toBe(full.slots * 10 + 65536 * 4);
    expect(full.bytes / full.maxTrackedSeries).toBeLessThan(16);
    expect(full.admit(7, 1_000_001, T0, Infinity)).toBe(ADMIT_TABLE_FULL);
  });

  it('keeps every key, its bucket count and its expiry across the table growing', () => {
    const t = tracker(50_000, MINUTE, 4096, 0);
    const model = new Map<number, number>();
    // Even keys first, odd keys half a window later: growth must carry their last-seen times.
    for (const parity of [0, 1])
      for (let i = 1; i <= 20_000; i++) {
        if (i % 2 !== parity) continue;
        const bucket = (i * 7919) % 4096;
        expect(t.admit(bucket, hashString(`k${i}`, 0), T0 + parity * 30_000, Infinity)).toBe(ADMIT_NEW);
        model.set(bucket, (model.get(bucket) ?? 0) + 1);
      }
    expect(t.size).toBe(20_000);
    for (const [bucket, n] of model) expect(t.count(bucket)).toBe(n);
    const now = T0 + MINUTE + 2000;
    for (let i = 1; i <= 20_000; i++) {
      const bucket = (i * 7919) % 4096;
      const r = t.lookup(bucket, hashString(`k${i}`, 0), now);
      expect(r).toBe(i % 2 === 0 ? LOOKUP_UNKNOWN : LOOKUP_KNOWN);
    }
    expect(t.sweep(now, t.slots)).toBe(10_000);
    expect(t.size).toBe(10_000);
    expect(t.forget((3 * 7919) % 4096, hashString('k3', 0))).toBe(true);
    expect(t.forget((4 * 7919) % 4096, hashString('k4', 0))).toBe(false);
  });
});

describe('per-label distinct values (a tracker keyed by metric and value hash)', () => {
  it('limits distinct values of one label per metric; known values keep flowing', () => {
    const pods = tracker(1000);
    const metricA = 1;
    const metricB = 2;
    const value = (v: string) => hashString(v, 0);
    const results = ['p1', 'p2', 'p1', 'p3', 'p4'].map((v) => pods.admit(metricA, value(v), T0, 3));
    expect(results).toEqual([ADMIT_NEW, ADMIT_NEW, ADMIT_KNOWN, ADMIT_NEW, ADMIT_OVER_LIMIT]);
    expect(pods.count(metricA)).toBe(3);
    // The same value under another metric is another distinct value of that metric.
    expect(pods.admit(metricB, value('p4'), T0, 3)).toBe(ADMIT_NEW);
    expect(pods.admit(metricA, value('p2'), T0 + 1000, 3)).toBe(ADMIT_KNOWN);
  });
});

describe('SeriesTracker against a Map model', () => {
  const WINDOW_MS = 5000;
  const step = fc.record({
    bucket: fc.integer({ min: 0, max: 2 }),
    key: fc.integer({ min: 0, max: 39 }),
    // Mostly short steps, so that up to all 120 keys are active together (long probe runs), and
    // now and then a jump that expires some or all of them (backward shifts inside those runs).
    dt: fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: 60 }), weight: 30 },
      { arbitrary: fc.integer({ min: 1000, max: 7000 }), weight: 1 },
    ),
  });

  /** A key is active while whole seconds since it was last seen are at most the window's. */
  function activeIn(model: Map<string, number>, bucket: number, nowSec: number): number {
    let n = 0;
    for (const [k, last] of model) if (k.startsWith(`${bucket}/`) && nowSec - last <= WINDOW_MS / 1000) n++;
    return n;
  }

  it('counts per bucket the distinct keys seen within the window (below capacity, no limit)', () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 400, size: 'max' }),
        fc.integer({ min: 0, max: 4 }),
        (steps, sweepPerAdmit) => {
          // 120 possible keys in 161 slots: long probe runs, wrap-around and backward shifts.
          const t = new SeriesTracker({
            maxTrackedSeries: 120,
            buckets: 3,
            windowMs: WINDOW_MS,
            sweepPerAdmit,
          });
          const model = new Map<string, number>();
          let now = T0;
          for (const { bucket, key, dt } of steps) {
            now += dt;
            const sec = Math.floor(now / 1000);
            const id = `${bucket}/${key}`;
            const last = model.get(id);
            const wasActive = last !== undefined && sec - last <= WINDOW_MS / 1000;
            const result = t.admit(bucket, hashString(`series-${key}`, 7), now, Infinity);
            expect(result).toBe(wasActive ? ADMIT_KNOWN : ADMIT_NEW);
            model.set(id, sec);
          }
          t.sweep(now, t.slots);
          for (let b = 0; b < 3; b++) expect(t.count(b)).toBe(activeIn(model, b, Math.floor(now / 1000)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('admits exactly what the model admits under a limit when counts are kept exact', () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 300, size: 'max' }),
        fc.integer({ min: 1, max: 12 }),
        (steps, limit) => {
          const t = new SeriesTracker({
            maxTrackedSeries: 120,
            buckets: 3,
            windowMs: WINDOW_MS,
            sweepPerAdmit: 1,
          });
          const model = new Map<string, number>();
          let now = T0;
          for (const { bucket, key, dt } of steps) {
            now += dt;
            const sec = Math.floor(now / 1000);
            t.sweep(now, t.slots);
            const id = `${bucket}/${key}`;
            const last = model.get(id);
            const wasActive = last !== undefined && sec - last <= WINDOW_MS / 1000;
            const expected = wasActive
              ? ADMIT_KNOWN
              : activeIn(model, bucket, sec) < limit
                ? ADMIT_NEW
                : ADMIT_OVER_LIMIT;
            expect(t.admit(bucket, hashString(`series-${key}`, 7), now, limit)).toBe(expected);
            if (expected === ADMIT_OVER_LIMIT) {
              if (last !== undefined && !wasActive) model.delete(id);
            } else {
              model.set(id, sec);
            }
            expect(t.count(bucket)).toBe(activeIn(model, bucket, sec));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('MetricInterner', () => {
  it('gives a name the same index from bytes and from a string, and keeps it', () => {
    const interner = new MetricInterner({ capacity: 16 });
    const body = utf8('..http_requests_total..');
    const a = interner.internBytes(body, 2, body.length - 2);
    expect(a).not.toBe(METRIC_OVERFLOW);
    expect(interner.internString('http_requests_total')).toBe(a);
    expect(interner.internString('up')).not.toBe(a);
    expect(interner.internBytes(body, 2, body.length - 2)).toBe(a);
    expect(interner.name(a)).toBe('http_requests_total');
    expect(interner.size).toBe(3);
  });

  it('handles UTF-8 names alike from bytes and from strings', () => {
    const interner = new MetricInterner({ capacity: 16 });
    const name = 'température_°C_总数';
    const bytes = utf8(name);
    expect(interner.internBytes(bytes, 0, bytes.length)).toBe(interner.internString(name));
    expect(interner.size).toBe(2);
  });

  it('maps names beyond capacity and names too long to the overflow index', () => {
    const interner = new MetricInterner({ capacity: 4, maxNameBytes: 10 });
    const indices = ['a', 'b', 'c', 'd', 'e'].map((n) => interner.internString(n));
    expect(indices).toEqual([1, 2, 3, METRIC_OVERFLOW, METRIC_OVERFLOW]);
    expect(interner.internString('a')).toBe(1);
    expect(interner.internString('x'.repeat(11))).toBe(METRIC_OVERFLOW);
    const long = utf8('y'.repeat(11));
    expect(interner.internBytes(long, 0, long.length)).toBe(METRIC_OVERFLOW);
    expect(interner.name(METRIC_OVERFLOW)).toBe(METRIC_OVERFLOW_NAME);
    expect(interner.overflows).toBe(4);
    expect(interner.size).toBe(4);
  });

  it('keeps distinct names distinct (many names, shared hash slots)', () => {
    const interner = new MetricInterner({ capacity: 5000 });
    const seen = new Set<number>();
    for (let i = 0; i < 4999; i++) seen.add(interner.internString(`metric_${i}`));
    expect(seen.size).toBe(4999);
    for (let i = 0; i < 4999; i++) {
      const b = utf8(`metric_${i}`);
      expect(interner.name(interner.internBytes(b, 0, b.length))).toBe(`metric_${i}`);
    }
  });
});
