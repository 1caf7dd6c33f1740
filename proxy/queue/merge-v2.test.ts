import { describe, expect, it } from 'vitest';
import { decodeRequestV2, encodeRequestV2 } from '../codec/proto.js';
import type { Histogram, RequestV2 } from '../codec/types.js';
import { mergeRequestsV2 } from './merge-v2.js';

const histogram: Histogram = {
  countInt: 7,
  sum: 12.5,
  schema: 3,
  zeroThreshold: 1e-128,
  zeroCountInt: 1,
  negativeSpans: [],
  negativeDeltas: [],
  negativeCounts: [],
  positiveSpans: [{ offset: -2, length: 2 }],
  positiveDeltas: [4, -2],
  positiveCounts: [],
  resetHint: 1,
  timestamp: 5000,
  customValues: [],
};

const a: RequestV2 = {
  symbols: ['', '__name__', 'rpc_seconds', 'job', 'api', 'Latency.', 'seconds', 'trace_id', 'abc'],
  timeseries: [
    {
      labelsRefs: [1, 2, 3, 4],
      samples: [],
      histograms: [histogram],
      exemplars: [{ labelsRefs: [7, 8], value: 0.25, timestamp: 4999 }],
      metadata: { type: 3, helpRef: 5, unitRef: 6 },
      createdTimestamp: 1234,
    },
  ],
};
const b: RequestV2 = {
  // The same strings at other indices, and new ones.
  symbols: ['', 'job', 'api', '__name__', 'up', 'Up.'],
  timeseries: [
    {
      labelsRefs: [3, 4, 1, 2],
      samples: [
        { value: 1, timestamp: 6000 },
        { value: 0, timestamp: 7000 },
      ],
      histograms: [],
      exemplars: [],
      metadata: { type: 2, helpRef: 5, unitRef: 0 },
      createdTimestamp: 0,
    },
  ],
};

/** Series with every reference resolved to its string. */
function resolved(req: RequestV2) {
  const s = (r: number) => req.symbols[r];
  return req.timeseries.map((ts) => ({
    ...ts,
    labelsRefs: ts.labelsRefs.map(s),
    exemplars: ts.exemplars.map((e) => ({ ...e, labelsRefs: e.labelsRefs.map(s) })),
    metadata: { type: ts.metadata.type, help: s(ts.metadata.helpRef), unit: s(ts.metadata.unitRef) },
  }));
}

describe('mergeRequestsV2', () => {
  it('keeps every field of every series, with references renumbered into one table', () => {
    const merged = decodeRequestV2(mergeRequestsV2([encodeRequestV2(a), encodeRequestV2(b)]));
    const want = [
      ...resolved(decodeRequestV2(encodeRequestV2(a))),
      ...resolved(decodeRequestV2(encodeRequestV2(b))),
    ];
    expect(resolved(merged)).toEqual(want);
    // Each distinct symbol once.
    expect(merged.symbols[0]).toBe('');
    expect(new Set(merged.symbols).size).toBe(merged.symbols.length);
    expect(merged.symbols.filter((x) => x === 'job')).toHaveLength(1);
  });

  it('reads unpacked labels_refs, as protobuf allows a sender to write them', () => {
    // symbols '', 'a', 'b'; one series with labels_refs = 1 and 2 as two unpacked varint records
    // (tag 8), then one sample.
    const sym = (s: string) => [34, s.length, ...Buffer.from(s)];
    const sample = [18, 11, 9, ...new Uint8Array(new Float64Array([3]).buffer), 16, 9];
    const series = [8, 1, 8, 2, ...sample];
    const body = Uint8Array.from([...sym(''), ...sym('a'), ...sym('b'), 42, series.length, ...series]);
    const merged = decodeRequestV2(mergeRequestsV2([body]));
    expect(resolved(merged)[0]?.labelsRefs).toEqual(['a', 'b']);
    expect(merged.timeseries[0]?.samples).toEqual([{ value: 3, timestamp: 9 }]);
  });

  it('refuses a reference outside the symbols table instead of renumbering it to something else', () => {
    const bad = {
      ...b,
      timeseries: [{ ...b.timeseries[0]!, metadata: { type: 2, helpRef: 40, unitRef: 0 } }],
    };
    expect(() => mergeRequestsV2([encodeRequestV2(bad)])).toThrow(/reference 40|INVALID|help/);
  });
});
