import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
} from '../codec/proto.js';
import { snappyDecode, snappyEncode } from '../codec/snappy.js';
import type { RequestV2, TimeSeriesV2, WriteRequestV1 } from '../codec/types.js';
import { concatSnappyBlocks, mergeEntries, type Piece, splitPiece } from './batch.js';
import type { QueueEntry } from './format.js';

function v1Entry(req: WriteRequestV1, tenant?: string): QueueEntry {
  let samples = 0;
  for (const ts of req.timeseries) samples += ts.samples.length;
  return {
    version: '1.0',
    tenant,
    enqueuedAtMs: 0,
    series: req.timeseries.length,
    samples,
    histograms: 0,
    exemplars: 0,
    metadata: req.metadata.length,
    body: snappyEncode(encodeWriteRequestV1(req)),
  };
}

function v1Series(name: string, n: number, t0: number) {
  return {
    labels: [
      { name: '__name__', value: name },
      { name: 'i', value: String(n) },
    ],
    samples: [{ value: n, timestamp: t0 }],
    exemplars: [],
    histograms: [],
  };
}

/** A 2.0 request built from label sets, with symbols in the order given (so tables differ). */
function v2Request(series: { labels: [string, string][]; help: string; ts: number }[]): RequestV2 {
  const symbols = [''];
  const ref = (s: string) => {
    let i = symbols.indexOf(s);
    if (i < 0) i = symbols.push(s) - 1;
    return i;
  };
  const timeseries: TimeSeriesV2[] = series.map((s) => ({
    labelsRefs: s.labels.flatMap(([k, v]) => [ref(k), ref(v)]),
    samples: [{ value: s.ts / 1000, timestamp: s.ts }],
    histograms: [],
    exemplars: [{ labelsRefs: [ref('trace_id'), ref(`t${s.ts}`)], value: 1, timestamp: s.ts }],
    metadata: { type: 1, helpRef: ref(s.help), unitRef: 0 },
    createdTimestamp: 0,
  }));
  return { symbols, timeseries };
}

function v2Entry(req: RequestV2): QueueEntry {
  return {
    version: '2.0',
    tenant: undefined,
    enqueuedAtMs: 0,
    series: req.timeseries.length,
    samples: req.timeseries.length,
    histograms: 0,
    exemplars: 0,
    metadata: 0,
    body: snappyEncode(encodeRequestV2(req)),
  };
}

/** Every series of a 2.0 request with its references resolved to strings. */
function resolved(req: RequestV2) {
  const s = (r: number) => req.symbols[r];
  return req.timeseries.map((ts) => ({
    labels: ts.labelsRefs.map(s),
    exemplars: ts.exemplars.map((e) => e.labelsRefs.map(s)),
    help: s(ts.metadata.helpRef),
    unit: s(ts.metadata.unitRef),
    samples: ts.samples,
  }));
}

const decode1 = (p: Piece) => decodeWriteRequestV1(snappyDecode(p.body, 1 << 30));
const decode2 = (p: Piece) => decodeRequestV2(snappyDecode(p.body, 1 << 30));

describe('concatSnappyBlocks', () => {
  it('joins blocks into one that decompresses to the concatenation, for any contents', () => {
    // Repetitive contents make the compressor emit copies, which must stay valid after joining.
    const content = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      fc
        .tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 400 }))
        .map(([unit, n]) => Buffer.concat(Array.from({ length: n }, () => unit))),
    );
    fc.assert(
      fc.property(fc.array(content, { minLength: 1, maxLength: 6 }), (raws) => {
        const joined = concatSnappyBlocks(raws.map((r) => snappyEncode(r)));
        expect(joined).toBeDefined();
        expect(snappyDecode(joined!, 1 << 30).equals(Buffer.concat(raws))).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('refuses a malformed preamble', () => {
    expect(concatSnappyBlocks([Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])])).toBeUndefined();
  });
});

describe('mergeEntries', () => {
  it('1.0: concatenated messages are one message holding every series and metadata entry, in order', () => {
    const a: WriteRequestV1 = {
      timeseries: [v1Series('a', 1, 1000), v1Series('a', 2, 1000)],
      metadata: [{ type: 1, metricFamilyName: 'a', help: 'A.', unit: '' }],
    };
    const b: WriteRequestV1 = { timeseries: [v1Series('b', 3, 2000)], metadata: [] };
    const merged = mergeEntries([v1Entry(a), v1Entry(b)]);
    expect(merged).toMatchObject({ version: '1.0', records: 2, samples: 3 });
    const got = decode1(merged);
    expect(got.timeseries.map((t) => t.labels[1]?.value)).toEqual(['1', '2', '3']);
    expect(got.metadata).toHaveLength(1);
  });

  it('sends a single record as queued, byte for byte', () => {
    const e = v1Entry({ timeseries: [v1Series('a', 1, 1)], metadata: [] });
    expect(mergeEntries([e]).body).toBe(e.body);
  });

  it('refuses to mix tenants or protocol versions', () => {
    const req = { timeseries: [v1Series('a', 1, 1)], metadata: [] };
    expect(() => mergeEntries([v1Entry(req, 'x'), v1Entry(req, 'y')])).toThrow('must not mix');
    expect(() => mergeEntries([v1Entry(req), v2Entry(v2Request([]))])).toThrow('must not mix');
  });

  it('2.0: rebuilds the symbols table so that every reference resolves to the same strings', () => {
    const label = fc.tuple(fc.constantFrom('__name__', 'job', 'path', ''), fc.string({ maxLength: 4 }));
    const series = fc.record({
      labels: fc.array(label, { maxLength: 4 }),
      help: fc.string({ maxLength: 4 }),
      ts: fc.integer({ min: 1, max: 1e12 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.array(series, { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 4 }),
        (reqs) => {
          const requests = reqs.map(v2Request);
          const merged = decode2(mergeEntries(requests.map(v2Entry)));
          expect(merged.symbols[0]).toBe('');
          expect(new Set(merged.symbols).size).toBe(merged.symbols.length);
          // The decoder fills absent fields; compare through one decode of each original.
          const originals = requests.flatMap((r) => resolved(decodeRequestV2(encodeRequestV2(r))));
          expect(resolved(merged)).toEqual(originals);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('splitPiece', () => {
  it('halves along records first, then along series, and stops at one series', () => {
    const entries = [1, 2, 3].map((i) =>
      v1Entry({ timeseries: [v1Series('a', i, i), v1Series('b', i, i)], metadata: [] }),
    );
    const merged = mergeEntries(entries);
    const [x, y] = splitPiece(merged)!;
    expect([x.records, y.records]).toEqual([2, 1]);
    const [y1, y2] = splitPiece(y)!;
    expect([decode1(y1).timeseries.length, decode1(y2).timeseries.length]).toEqual([1, 1]);
    expect([y1.samples, y2.samples]).toEqual([1, 1]);
    expect(splitPiece(y1)).toBeUndefined();
  });

  it('2.0 halves keep their series intact with their own symbols tables', () => {
    const req = v2Request([
      {
        labels: [
          ['__name__', 'up'],
          ['job', 'a'],
        ],
        help: 'h1',
        ts: 1000,
      },
      {
        labels: [
          ['__name__', 'up'],
          ['job', 'b'],
        ],
        help: 'h2',
        ts: 2000,
      },
      {
        labels: [
          ['__name__', 'down'],
          ['job', 'c'],
        ],
        help: 'h1',
        ts: 3000,
      },
    ]);
    const [a, b] = splitPiece(mergeEntries([v2Entry(req)]))!;
    const whole = resolved(decodeRequestV2(encodeRequestV2(req)));
    expect([...resolved(decode2(a)), ...resolved(decode2(b))]).toEqual(whole);
    expect(decode2(b).symbols).not.toContain('h2');
    expect(decode2(b).symbols).not.toContain('up');
    expect(a.samples + b.samples).toBe(3);
  });
});
