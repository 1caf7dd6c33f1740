import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkSegmentHeader,
  decodeAck,
  encodeAck,
  encodeRecord,
  encodeSegmentHeader,
  parseRecord,
  parseSegmentFileName,
  type QueueEntry,
  segmentFileName,
} from './format.js';

const entryArb: fc.Arbitrary<QueueEntry> = fc.record({
  version: fc.constantFrom('1.0' as const, '2.0' as const),
  tenant: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  enqueuedAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
  series: fc.nat({ max: 2 ** 32 - 1 }),
  samples: fc.nat({ max: 2 ** 32 - 1 }),
  histograms: fc.nat({ max: 1000 }),
  exemplars: fc.nat({ max: 1000 }),
  metadata: fc.nat({ max: 1000 }),
  body: fc.uint8Array({ maxLength: 300 }),
});

/** Parses every record of a buffer from offset 0; stops at the first one that does not parse. */
function parseAll(buf: Uint8Array) {
  const out: QueueEntry[] = [];
  let pos = 0;
  for (;;) {
    const r = parseRecord(buf, pos);
    if (r.kind !== 'record') return { entries: out, stop: r.kind, pos };
    out.push({ ...r.entry, body: Uint8Array.from(r.entry.body) });
    pos += r.size;
  }
}

describe('queue record format', () => {
  it('round-trips every entry', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 8 }), (entries) => {
        const buf = Buffer.concat(entries.map(encodeRecord));
        const got = parseAll(buf);
        expect(got.entries).toEqual(entries);
        expect(got.pos).toBe(buf.length);
      }),
    );
  });

  it('truncated at any byte of the last record: every record before it is recovered, the tail is incomplete', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { minLength: 1, maxLength: 5 }), (entries) => {
        const records = entries.map(encodeRecord);
        const before = Buffer.concat(records.slice(0, -1));
        const last = records.at(-1)!;
        for (let cut = 0; cut < last.length; cut++) {
          const got = parseAll(Buffer.concat([before, last.subarray(0, cut)]));
          expect(got.entries).toEqual(entries.slice(0, -1));
          expect(got.pos).toBe(before.length);
          // A cut inside the length field may look like a length too large only when it is not:
          // what is there never parses as a record.
          expect(got.stop).not.toBe('record');
        }
      }),
      { numRuns: 40 },
    );
  });

  it('detects every single bit flip in a record', () => {
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.nat({ max: 7 }), (entry, at, bit) => {
        const rec = encodeRecord(entry);
        const i = at % rec.length;
        rec[i]! ^= 1 << bit;
        const r = parseRecord(rec, 0);
        // A flip in the length field makes the record look longer (incomplete) or shorter
        // (checksum over the wrong bytes); anywhere else the checksum catches it.
        expect(r.kind).not.toBe('record');
      }),
      { numRuns: 500 },
    );
  });

  it('segment headers carry the magic and the version', () => {
    expect(checkSegmentHeader(encodeSegmentHeader())).toEqual({ ok: true });
    const newer = encodeSegmentHeader();
    newer[4] = 2;
    expect(checkSegmentHeader(newer)).toEqual({ ok: false, reason: 'version', version: 2 });
    expect(checkSegmentHeader(Buffer.from('XXXX\x01\0\0\0', 'latin1'))).toMatchObject({ reason: 'magic' });
    expect(checkSegmentHeader(Buffer.from('CRD'))).toMatchObject({ reason: 'short' });
  });

  it('names segments so that they sort by number', () => {
    expect(segmentFileName(42)).toBe('0000000000000042.seg');
    expect(parseSegmentFileName('0000000000000042.seg')).toBe(42);
    expect(parseSegmentFileName('0000000000000042.seg.corrupt')).toBeUndefined();
    expect(parseSegmentFileName('ack')).toBeUndefined();
  });

  it('ack files round-trip and any damage is reported', () => {
    const state = { acked: { segment: 3, offset: 1234 }, sent: { segment: 4, offset: 8 } };
    const b = encodeAck(state);
    expect(decodeAck(b)).toEqual(state);
    for (let i = 0; i < b.length; i++) {
      const bad = Buffer.from(b);
      bad[i]! ^= 0x10;
      expect(typeof decodeAck(bad)).toBe('string');
    }
    expect(decodeAck(b.subarray(0, 20))).toMatch(/20 bytes/);
  });
});
