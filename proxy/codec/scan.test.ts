import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { decodeRequestV2, decodeWriteRequestV1, encodeRequestV2, encodeWriteRequestV1 } from './proto.js';
import {
  createSeriesIndex,
  readLabelRefsV2,
  readLabelsV1,
  type SeriesIndex,
  scanRequestV2,
  scanWriteRequestV1,
  symbolBytes,
} from './scan.js';
import type { Histogram, RequestV2, TimeSeriesV2, WriteRequestV1 } from './types.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const text = (buf: Uint8Array, s: number, e: number): string =>
  Buffer.from(buf.subarray(s, e)).toString('utf8');

function labelsV1(buf: Uint8Array, index: SeriesIndex, i: number): [string, string][] {
  const out: [string, string][] = [];
  readLabelsV1(buf, index, i, (ns, ne, vs, ve) => out.push([text(buf, ns, ne), text(buf, vs, ve)]));
  return out;
}

function refsV2(buf: Uint8Array, index: SeriesIndex, i: number): number[] {
  const out: number[] = [];
  readLabelRefsV2(buf, index, i, (n, v) => out.push(n, v));
  return out;
}

function errorOf(run: () => unknown): CardinalError {
  try {
    run();
  } catch (err) {
    if (err instanceof CardinalError) return err;
    throw err;
  }
  throw new Error('expected a CardinalError, nothing was thrown');
}

describe('scanWriteRequestV1 on valid input', () => {
  it('indexes series, labels and counts', () => {
    // Two series: {a="b"} with one sample; {} with a histogram and an exemplar; then metadata.
    const buf = hex('0a15 0a06 0a0161 120162 120b 09000000000000f03f 1002  0a06 2200 1a02 1800  1a00');
    const index = scanWriteRequestV1(buf);
    expect(index.count).toBe(2);
    expect(Array.from(index.start.subarray(0, 2))).toEqual([0, 23]);
    expect(Array.from(index.end.subarray(0, 2))).toEqual([23, 31]);
    expect([index.labelsStart[0], index.labelsEnd[0]]).toEqual([2, 10]);
    expect(index.labelsStart[1]).toBe(index.labelsEnd[1]);
    expect(Array.from(index.samples.subarray(0, 2))).toEqual([1, 0]);
    expect(Array.from(index.histograms.subarray(0, 2))).toEqual([0, 1]);
    expect(Array.from(index.exemplars.subarray(0, 2))).toEqual([0, 1]);
    expect([index.totalSamples, index.totalHistograms, index.totalExemplars, index.metadataCount]).toEqual([
      1, 1, 1, 1,
    ]);
    expect(labelsV1(buf, index, 0)).toEqual([['a', 'b']]);
    expect(labelsV1(buf, index, 1)).toEqual([]);
  });

  it.each([
    ['an empty body', '', 0],
    ['unknown top-level fields of every scalar wire type', '1001 2500000000 290000000000000000 3202aabb', 0],
    ['unknown fields inside a series and a label', '0a0b 0a05 0a0161 3801 2801 7000', 1],
    ['a field number at the top of the range', '0a00 f8ffffff0f01', 1],
  ])('accepts %s', (_name, bytes, count) => {
    expect(scanWriteRequestV1(hex(bytes)).count).toBe(count);
  });

  it('accepts unpacked deltas and counts in a histogram', () => {
    // histograms(4)=22 len 0x0d: positive_deltas(12,VARINT)=60 02, 60 03; positive_counts(13,I64)=69 + 8 bytes
    const buf = hex('0a0f 220d 6002 6003 69 000000000000f03f');
    const index = scanWriteRequestV1(buf);
    expect(index.histograms[0]).toBe(1);
    expect(decodeWriteRequestV1(buf).timeseries[0]?.histograms[0]?.positiveCounts).toEqual([1]);
  });

  it('reads labels interleaved with samples, skipping the samples', () => {
    // labels{a=b}, samples{}, labels{c=d}
    const buf = hex('0a12 0a06 0a0161 120162 1200 0a06 0a0163 120164');
    const index = scanWriteRequestV1(buf);
    expect([index.labelsStart[0], index.labelsEnd[0]]).toEqual([2, 20]);
    expect(labelsV1(buf, index, 0)).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    expect(index.samples[0]).toBe(1);
  });

  it('keeps the last name of a label that repeats it', () => {
    const buf = hex('0a0b 0a09 0a0161 0a0178 120162');
    expect(labelsV1(buf, scanWriteRequestV1(buf), 0)).toEqual([['x', 'b']]);
  });

  it('reuses and grows the arrays of the index it is given', () => {
    const into = createSeriesIndex(1);
    const body = encodeWriteRequestV1({
      timeseries: Array.from({ length: 5 }, (_, i) => ({
        labels: [{ name: 'i', value: String(i) }],
        samples: [{ value: i, timestamp: i }],
        exemplars: [],
        histograms: [],
      })),
      metadata: [],
    });
    const index = scanWriteRequestV1(body, into);
    expect(index).toBe(into);
    expect(index.count).toBe(5);
    expect(index.start.length).toBeGreaterThanOrEqual(5);
    expect(labelsV1(body, index, 4)).toEqual([['i', '4']]);
    expect(scanWriteRequestV1(new Uint8Array(0), index).count).toBe(0);
  });
});

describe('scanWriteRequestV1 on invalid input', () => {
  it.each([
    ['0a', 'WriteRequest: truncated varint at byte 1'],
    ['0a05 0a01', 'timeseries: length 5 exceeds the 2 bytes left at byte 1'],
    ['0801', 'timeseries: wire type 0, expected 2 at byte 0'],
    ['00', 'WriteRequest: invalid field number 0 at byte 0'],
    ['2b', 'field 5: group wire type 3 is not supported at byte 0'],
    ['2c', 'field 5: group wire type 4 is not supported at byte 0'],
    ['2e', 'field 5: invalid wire type 6 at byte 0'],
    ['10 ffffffffffffffffffff01', 'WriteRequest: varint longer than 10 bytes at byte 1'],
    ['8080808010', 'WriteRequest: invalid field number 536870912 at byte 0'],
    ['250000', 'field 4: 4-byte value truncated at byte 1'],
    ['0a04 1202 0801', 'timeseries[0].samples[0].value: wire type 0, expected 1 at byte 4'],
    ['0a04 1202 0900', 'timeseries[0].samples[0].value: 8-byte value truncated at byte 5'],
    ['0a04 0a02 0a05', 'timeseries[0].labels[0].name: length 5 exceeds the 0 bytes left at byte 5'],
    [
      '0a05 2203 5201 00',
      'timeseries[0].histograms[0].negative_counts: packed length 1 is not a multiple of 8 at byte 4',
    ],
    ['0a05 2203 4a01 80', 'timeseries[0].histograms[0]: truncated varint at byte 6'],
    [
      '0a06 2204 5a02 0d00',
      'timeseries[0].histograms[0].positive_spans[0].offset: wire type 5, expected 0 at byte 6',
    ],
    ['0a04 2206 5a02', 'timeseries[0].histograms: length 6 exceeds the 2 bytes left at byte 3'],
    ['0a06 1a04 0a02 1001', 'timeseries[0].exemplars[0].labels[0].value: wire type 0, expected 2 at byte 6'],
    ['1a02 1001', 'metadata[0].metric_family_name: wire type 0, expected 2 at byte 2'],
    ['0a00 0a02 0a02', 'timeseries[1].labels: length 2 exceeds the 0 bytes left at byte 5'],
  ])('%s is rejected: %s', (bytes, detail) => {
    const err = errorOf(() => scanWriteRequestV1(hex(bytes)));
    expect(err.code).toBe('MALFORMED_PROTOBUF');
    expect(err.status).toBe(400);
    expect(err.message).toBe(`body is not a valid protobuf message: ${detail}`);
  });
});

describe('scanRequestV2', () => {
  it('indexes symbols, series and counts', () => {
    const req: RequestV2 = {
      symbols: ['', '__name__', 'up', 'Help.'],
      timeseries: [
        {
          labelsRefs: [1, 2],
          samples: [{ value: 1, timestamp: 5 }],
          histograms: [],
          exemplars: [{ labelsRefs: [], value: 1, timestamp: 5 }],
          metadata: { type: 2, helpRef: 3, unitRef: 0 },
          createdTimestamp: 0,
        },
        {
          labelsRefs: [],
          samples: [],
          histograms: [],
          exemplars: [],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 7,
        },
      ],
    };
    const buf = encodeRequestV2(req);
    const index = scanRequestV2(buf);
    expect(index.version).toBe(2);
    expect(index.symbolCount).toBe(4);
    expect(Buffer.from(symbolBytes(buf, index, 1)).toString()).toBe('__name__');
    expect(symbolBytes(buf, index, 0)).toHaveLength(0);
    expect(index.count).toBe(2);
    expect(refsV2(buf, index, 0)).toEqual([1, 2]);
    expect(refsV2(buf, index, 1)).toEqual([]);
    expect([index.totalSamples, index.totalExemplars, index.totalHistograms, index.metadataCount]).toEqual([
      1, 1, 0, 1,
    ]);
  });

  it.each([
    ['symbols after the series that use them', '2a04 0a020102 2200 220161 220162', [1, 2]],
    ['unpacked label refs', '2200 220161 2a04 0801 0801', [1, 1]],
    [
      'label refs split over two packed records around a sample',
      '2200 220161 2a08 0a0101 1200 0a0100',
      [1, 0],
    ],
    ['a created timestamp and unknown fields', '2200 220161 2a0a 0a020101 3001 3801 4a00', [1, 1]],
  ])('accepts %s', (_name, bytes, refs) => {
    const buf = hex(bytes);
    const index = scanRequestV2(buf);
    expect(refsV2(buf, index, 0)).toEqual(refs);
    expect(decodeRequestV2(buf).timeseries[0]?.labelsRefs).toEqual(refs);
  });

  it.each([
    ['220161', 'INVALID_WRITE_REQUEST', 'symbols[0] is not the empty string (1 bytes) at byte 2'],
    [
      '2200 2a03 0a0105',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].labels_refs[0]=5 out of range (symbols: 1) at byte 6',
    ],
    [
      '2a03 0a0100',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].labels_refs[0]=0 out of range (symbols: 0) at byte 4',
    ],
    [
      '2200 2a04 0800 0807',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].labels_refs[1]=7 out of range (symbols: 1) at byte 7',
    ],
    [
      '2200 2a03 0a0100',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].labels_refs: odd number of refs (1) at byte 4',
    ],
    [
      '2200 2a04 2a021807',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].metadata.help_ref=7 out of range (symbols: 1) at byte 7',
    ],
    [
      '2200 2a04 2a022002',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].metadata.unit_ref=2 out of range (symbols: 1) at byte 7',
    ],
    [
      '2200 2a06 2204 0a020009',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].exemplars[0].labels_refs[1]=9 out of range (symbols: 1) at byte 9',
    ],
    [
      '2200 2a05 2203 0a0100',
      'INVALID_WRITE_REQUEST',
      'timeseries[0].exemplars[0].labels_refs: odd number of refs (1) at byte 6',
    ],
    ['2000', 'MALFORMED_PROTOBUF', 'symbols: wire type 0, expected 2 at byte 0'],
    [
      '2200 2a02 1201',
      'MALFORMED_PROTOBUF',
      'timeseries[0].samples: length 1 exceeds the 0 bytes left at byte 5',
    ],
    [
      '2200 2a02 0d00',
      'MALFORMED_PROTOBUF',
      'timeseries[0].labels_refs: wire type 5, expected 2 or 0 at byte 4',
    ],
    ['2200 2a03 0a0180', 'MALFORMED_PROTOBUF', 'timeseries[0]: truncated varint at byte 6'],
  ])('%s is rejected with %s: %s', (bytes, code, detail) => {
    const err = errorOf(() => scanRequestV2(hex(bytes)));
    expect(err.code).toBe(code);
    expect(err.message).toContain(`: ${detail}`);
  });
});

// Arbitraries for whole requests. Timestamps and integer counts stay within 2^53 (the codec's
// contract); doubles include NaN, infinities and -0.
const int64 = fc.maxSafeInteger();
const uint64 = fc.maxSafeNat();
const span = fc.record({ offset: fc.integer(), length: fc.integer({ min: 0, max: 0xffffffff }) });
const histogramArb: fc.Arbitrary<Histogram> = fc
  .tuple(
    fc.record({
      sum: fc.double(),
      schema: fc.integer(),
      zeroThreshold: fc.double(),
      negativeSpans: fc.array(span, { maxLength: 3 }),
      negativeDeltas: fc.array(int64, { maxLength: 4 }),
      negativeCounts: fc.array(fc.double(), { maxLength: 4 }),
      positiveSpans: fc.array(span, { maxLength: 3 }),
      positiveDeltas: fc.array(int64, { maxLength: 4 }),
      positiveCounts: fc.array(fc.double(), { maxLength: 4 }),
      resetHint: fc.integer({ min: 0, max: 3 }),
      timestamp: int64,
      customValues: fc.array(fc.double(), { maxLength: 4 }),
    }),
    fc.oneof(fc.constant({}), fc.record({ countInt: uint64 }), fc.record({ countFloat: fc.double() })),
    fc.oneof(
      fc.constant({}),
      fc.record({ zeroCountInt: uint64 }),
      fc.record({ zeroCountFloat: fc.double() }),
    ),
  )
  .map(([h, count, zero]) => ({ ...h, ...count, ...zero }));
const sampleArb = fc.record({ value: fc.double(), timestamp: int64 });
const labelArb = fc.record({ name: fc.string({ maxLength: 12 }), value: fc.string({ maxLength: 12 }) });

const writeRequestV1Arb: fc.Arbitrary<WriteRequestV1> = fc.record({
  timeseries: fc.array(
    fc.record({
      labels: fc.array(labelArb, { maxLength: 4 }),
      samples: fc.array(sampleArb, { maxLength: 3 }),
      exemplars: fc.array(
        fc.record({ labels: fc.array(labelArb, { maxLength: 2 }), value: fc.double(), timestamp: int64 }),
        { maxLength: 2 },
      ),
      histograms: fc.array(histogramArb, { maxLength: 2 }),
    }),
    { maxLength: 6 },
  ),
  metadata: fc.array(
    fc.record({
      type: fc.integer({ min: 0, max: 7 }),
      metricFamilyName: fc.string({ maxLength: 10 }),
      help: fc.string({ maxLength: 10 }),
      unit: fc.string({ maxLength: 5 }),
    }),
    { maxLength: 3 },
  ),
});

function refPairs(symbolCount: number, maxPairs: number): fc.Arbitrary<number[]> {
  const ref = fc.nat(symbolCount - 1);
  return fc.array(fc.tuple(ref, ref), { maxLength: maxPairs }).map((pairs) => pairs.flat());
}

const requestV2Arb: fc.Arbitrary<RequestV2> = fc
  .uniqueArray(fc.string({ minLength: 1, maxLength: 10 }), { maxLength: 8 })
  .map((rest) => ['', ...rest])
  .chain((symbols) => {
    const ref = fc.nat(symbols.length - 1);
    const series: fc.Arbitrary<TimeSeriesV2> = fc.record({
      labelsRefs: refPairs(symbols.length, 4),
      samples: fc.array(sampleArb, { maxLength: 3 }),
      histograms: fc.array(histogramArb, { maxLength: 2 }),
      exemplars: fc.array(
        fc.record({ labelsRefs: refPairs(symbols.length, 2), value: fc.double(), timestamp: int64 }),
        { maxLength: 2 },
      ),
      metadata: fc.record({ type: fc.integer({ min: 0, max: 7 }), helpRef: ref, unitRef: ref }),
      createdTimestamp: int64,
    });
    return fc.record({ symbols: fc.constant(symbols), timeseries: fc.array(series, { maxLength: 6 }) });
  });

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

describe('properties', () => {
  it('v1: decode(encode(x)) is x', () => {
    fc.assert(
      fc.property(writeRequestV1Arb, (x) => {
        expect(decodeWriteRequestV1(encodeWriteRequestV1(x))).toEqual(x);
      }),
    );
  });

  it('v2: decode(encode(x)) is x', () => {
    fc.assert(
      fc.property(requestV2Arb, (x) => {
        expect(decodeRequestV2(encodeRequestV2(x))).toEqual(x);
      }),
    );
  });

  it('v1: the index counts what was encoded, and its slices and labels are the series', () => {
    const into = createSeriesIndex(1);
    fc.assert(
      fc.property(writeRequestV1Arb, (x) => {
        const buf = encodeWriteRequestV1(x);
        const index = scanWriteRequestV1(buf, into);
        expect(index.count).toBe(x.timeseries.length);
        expect(index.metadataCount).toBe(x.metadata.length);
        const sum = (f: (t: (typeof x.timeseries)[number]) => number) =>
          x.timeseries.reduce((a, t) => a + f(t), 0);
        expect(index.totalSamples).toBe(sum((t) => t.samples.length));
        expect(index.totalHistograms).toBe(sum((t) => t.histograms.length));
        expect(index.totalExemplars).toBe(sum((t) => t.exemplars.length));
        const slices: Uint8Array[] = [];
        for (let i = 0; i < index.count; i++) {
          const ts = x.timeseries[i]!;
          expect(index.samples[i]).toBe(ts.samples.length);
          expect(index.histograms[i]).toBe(ts.histograms.length);
          expect(index.exemplars[i]).toBe(ts.exemplars.length);
          expect(labelsV1(buf, index, i)).toEqual(ts.labels.map((l) => [l.name, l.value]));
          slices.push(buf.subarray(index.start[i], index.end[i]));
        }
        expect(decodeWriteRequestV1(concat(slices))).toEqual({ timeseries: x.timeseries, metadata: [] });
      }),
    );
  });

  it('v2: the index counts what was encoded, and its slices and label refs are the series', () => {
    fc.assert(
      fc.property(requestV2Arb, (x) => {
        const buf = encodeRequestV2(x);
        const index = scanRequestV2(buf);
        expect(index.count).toBe(x.timeseries.length);
        expect(index.symbolCount).toBe(x.symbols.length);
        for (let k = 0; k < x.symbols.length; k++) {
          expect(Buffer.from(symbolBytes(buf, index, k)).toString('utf8')).toBe(x.symbols[k]);
        }
        const withMetadata = x.timeseries.filter(
          (t) => t.metadata.type + t.metadata.helpRef + t.metadata.unitRef > 0,
        );
        expect(index.metadataCount).toBe(withMetadata.length);
        const slices: Uint8Array[] = [encodeRequestV2({ symbols: x.symbols, timeseries: [] })];
        for (let i = 0; i < index.count; i++) {
          const ts = x.timeseries[i]!;
          expect(index.samples[i]).toBe(ts.samples.length);
          expect(index.histograms[i]).toBe(ts.histograms.length);
          expect(index.exemplars[i]).toBe(ts.exemplars.length);
          expect(refsV2(buf, index, i)).toEqual(ts.labelsRefs);
          slices.push(buf.subarray(index.start[i], index.end[i]));
        }
        expect(decodeRequestV2(concat(slices))).toEqual(x);
      }),
    );
  });

  const onlyCardinalErrors = (run: () => unknown): void => {
    try {
      run();
    } catch (err) {
      if (!(err instanceof CardinalError)) throw err;
    }
  };

  it('arbitrary bytes never raise anything but CardinalError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        onlyCardinalErrors(() => scanWriteRequestV1(bytes));
        onlyCardinalErrors(() => scanRequestV2(bytes));
        onlyCardinalErrors(() => decodeWriteRequestV1(bytes));
        onlyCardinalErrors(() => decodeRequestV2(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('truncated and corrupted valid requests never raise anything but CardinalError', () => {
    fc.assert(
      fc.property(
        writeRequestV1Arb,
        requestV2Arb,
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (x1, x2, cut, at, flip) => {
          for (const [buf, scan, decode] of [
            [encodeWriteRequestV1(x1), scanWriteRequestV1, decodeWriteRequestV1],
            [encodeRequestV2(x2), scanRequestV2, decodeRequestV2],
          ] as const) {
            const truncated = buf.subarray(0, buf.length === 0 ? 0 : cut % buf.length);
            onlyCardinalErrors(() => scan(truncated));
            onlyCardinalErrors(() => decode(truncated));
            if (buf.length > 0) {
              const corrupted = Uint8Array.from(buf);
              corrupted[at % buf.length]! ^= flip;
              onlyCardinalErrors(() => scan(corrupted));
              onlyCardinalErrors(() => decode(corrupted));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('scan and decode accept exactly the same bodies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const ok = (run: () => unknown) => {
          try {
            run();
            return true;
          } catch {
            return false;
          }
        };
        expect(ok(() => decodeWriteRequestV1(bytes))).toBe(ok(() => scanWriteRequestV1(bytes)));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('fast paths', () => {
  // The fast paths must accept, index and reject exactly like the generic scanner. Mutating valid
  // bodies byte by byte reaches their every early exit.
  function outcome(scan: () => SeriesIndex): unknown {
    try {
      const ix = scan();
      const per = (a: Int32Array) => Array.from(a.subarray(0, ix.count));
      return {
        count: ix.count,
        totals: [ix.totalSamples, ix.totalHistograms, ix.totalExemplars, ix.metadataCount, ix.symbolCount],
        arrays: [ix.start, ix.end, ix.labelsStart, ix.labelsEnd, ix.samples, ix.histograms, ix.exemplars].map(
          per,
        ),
      };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
  const mutation = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }));

  it('v1: same result as the generic scanner on valid and mutated bodies', () => {
    fc.assert(
      fc.property(writeRequestV1Arb, fc.array(mutation, { maxLength: 3 }), (x, mutations) => {
        const buf = Uint8Array.from(encodeWriteRequestV1(x));
        for (const [at, byte] of mutations) if (buf.length > 0) buf[at % buf.length] = byte;
        expect(outcome(() => scanWriteRequestV1(buf))).toEqual(
          outcome(() => scanWriteRequestV1(buf, undefined, { fastPath: false })),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('v2: same result as the generic scanner on valid and mutated bodies', () => {
    fc.assert(
      fc.property(requestV2Arb, fc.array(mutation, { maxLength: 3 }), (x, mutations) => {
        const buf = Uint8Array.from(encodeRequestV2(x));
        for (const [at, byte] of mutations) if (buf.length > 0) buf[at % buf.length] = byte;
        expect(outcome(() => scanRequestV2(buf))).toEqual(
          outcome(() => scanRequestV2(buf, undefined, { fastPath: false })),
        );
      }),
      { numRuns: 2000 },
    );
  });
});
