import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { familyName, metricTypeV2ToV1, requestV2ToWriteRequestV1 } from './convert.js';
import { decodeRequestV2, decodeWriteRequestV1, encodeRequestV2, encodeWriteRequestV1 } from './proto.js';
import { type Histogram, MetricTypeV1, MetricTypeV2, type RequestV2, type TimeSeriesV2 } from './types.js';

const NO_METADATA = { type: 0, helpRef: 0, unitRef: 0 };

function series(fields: Partial<TimeSeriesV2>): TimeSeriesV2 {
  return {
    labelsRefs: [],
    samples: [],
    histograms: [],
    exemplars: [],
    metadata: NO_METADATA,
    createdTimestamp: 0,
    ...fields,
  };
}

const floatHistogram: Histogram = {
  countFloat: 4.5,
  sum: 10,
  schema: -53,
  zeroThreshold: 0,
  zeroCountFloat: 0.5,
  negativeSpans: [{ offset: -1, length: 1 }],
  negativeDeltas: [],
  negativeCounts: [1],
  positiveSpans: [{ offset: 0, length: 2 }],
  positiveDeltas: [],
  positiveCounts: [1, 2],
  resetHint: 3,
  timestamp: 1_700_000_000_500,
  customValues: [0.5, 1],
};

// Symbols: 0 '' | 1 __name__ | 2 rpc_seconds_bucket | 3 le | 4 0.5 | 5 rpc_seconds_count | 6 RPC latency.
// 7 seconds | 8 up | 9 trace_id | 10 abc | 11 job | 12 api | 13 native_seconds | 14 Native.
const symbols = [
  '',
  '__name__',
  'rpc_seconds_bucket',
  'le',
  '0.5',
  'rpc_seconds_count',
  'RPC latency.',
  'seconds',
  'up',
  'trace_id',
  'abc',
  'job',
  'api',
  'native_seconds',
  'Native.',
];
const histogramMeta = { type: MetricTypeV2.HISTOGRAM, helpRef: 6, unitRef: 7 };
const req: RequestV2 = {
  symbols,
  timeseries: [
    series({
      labelsRefs: [1, 2, 3, 4, 11, 12],
      samples: [{ value: 3, timestamp: 1_700_000_000_000 }],
      exemplars: [{ labelsRefs: [9, 10], value: 0.2, timestamp: 1_700_000_000_001 }],
      metadata: histogramMeta,
      createdTimestamp: 1_600_000_000_000,
    }),
    series({
      labelsRefs: [1, 5],
      samples: [{ value: 7, timestamp: 1_700_000_000_000 }],
      metadata: histogramMeta,
    }),
    series({ labelsRefs: [1, 8], samples: [{ value: 1, timestamp: 1_700_000_000_000 }] }),
    series({
      labelsRefs: [1, 13],
      histograms: [floatHistogram],
      metadata: { type: MetricTypeV2.HISTOGRAM, helpRef: 14, unitRef: 7 },
    }),
  ],
};

describe('requestV2ToWriteRequestV1', () => {
  const v1 = requestV2ToWriteRequestV1(req);

  it('resolves labels and exemplar labels from the symbols table, in order', () => {
    expect(v1.timeseries.map((t) => t.labels)).toEqual([
      [
        { name: '__name__', value: 'rpc_seconds_bucket' },
        { name: 'le', value: '0.5' },
        { name: 'job', value: 'api' },
      ],
      [{ name: '__name__', value: 'rpc_seconds_count' }],
      [{ name: '__name__', value: 'up' }],
      [{ name: '__name__', value: 'native_seconds' }],
    ]);
    expect(v1.timeseries[0]?.exemplars).toEqual([
      { labels: [{ name: 'trace_id', value: 'abc' }], value: 0.2, timestamp: 1_700_000_000_001 },
    ]);
  });

  it('keeps samples and maps every histogram field', () => {
    expect(v1.timeseries.map((t) => t.samples)).toEqual(req.timeseries.map((t) => t.samples));
    expect(v1.timeseries[3]?.histograms).toEqual([floatHistogram]);
    expect(v1.timeseries[3]?.histograms[0]).not.toBe(floatHistogram);
  });

  it('turns per-series metadata into one entry per family, with suffixes of classic histograms removed', () => {
    expect(v1.metadata).toEqual([
      {
        type: MetricTypeV1.HISTOGRAM,
        metricFamilyName: 'rpc_seconds',
        help: 'RPC latency.',
        unit: 'seconds',
      },
      { type: MetricTypeV1.HISTOGRAM, metricFamilyName: 'native_seconds', help: 'Native.', unit: 'seconds' },
    ]);
  });

  it('survives the 1.0 wire format: the encoded result decodes to the same request, created timestamps gone', () => {
    const bytes = encodeWriteRequestV1(v1);
    expect(decodeWriteRequestV1(bytes)).toEqual(v1);
    expect(JSON.stringify(v1)).not.toContain('1600000000000');
  });

  it('converts a decoded 2.0 body end to end', () => {
    expect(requestV2ToWriteRequestV1(decodeRequestV2(encodeRequestV2(req)))).toEqual(v1);
  });

  it.each([
    [
      { symbols: [''], timeseries: [series({ labelsRefs: [0, 3] })] },
      'timeseries[0].labels_refs[1]=3 out of range (symbols: 1)',
    ],
    [
      { symbols: [''], timeseries: [series({ labelsRefs: [0] })] },
      'timeseries[0].labels_refs: odd number of refs (1)',
    ],
    [
      {
        symbols: [''],
        timeseries: [series({ exemplars: [{ labelsRefs: [2, 0], value: 1, timestamp: 1 }] })],
      },
      'timeseries[0].exemplars[0].labels_refs[0]=2 out of range (symbols: 1)',
    ],
    [
      { symbols: [''], timeseries: [series({ metadata: { type: 1, helpRef: 0, unitRef: 4 } })] },
      'timeseries[0].metadata.unit_ref=4 out of range (symbols: 1)',
    ],
  ])('rejects broken references: %#', (bad, detail) => {
    expect(() => requestV2ToWriteRequestV1(bad)).toThrow(new CardinalError('INVALID_WRITE_REQUEST', detail));
  });
});

describe('metric types and family names', () => {
  it.each([
    [MetricTypeV2.UNSPECIFIED, MetricTypeV1.UNKNOWN],
    [MetricTypeV2.COUNTER, MetricTypeV1.COUNTER],
    [MetricTypeV2.GAUGE, MetricTypeV1.GAUGE],
    [MetricTypeV2.HISTOGRAM, MetricTypeV1.HISTOGRAM],
    [MetricTypeV2.GAUGEHISTOGRAM, MetricTypeV1.GAUGEHISTOGRAM],
    [MetricTypeV2.SUMMARY, MetricTypeV1.SUMMARY],
    [MetricTypeV2.INFO, MetricTypeV1.INFO],
    [MetricTypeV2.STATESET, MetricTypeV1.STATESET],
    [42, MetricTypeV1.UNKNOWN],
  ])('v2 type %d is v1 type %d', (v2, v1) => {
    expect(metricTypeV2ToV1(v2)).toBe(v1);
  });

  it.each([
    ['rpc_seconds_bucket', MetricTypeV1.HISTOGRAM, false, 'rpc_seconds'],
    ['rpc_seconds_sum', MetricTypeV1.GAUGEHISTOGRAM, false, 'rpc_seconds'],
    ['rpc_seconds_count', MetricTypeV1.SUMMARY, false, 'rpc_seconds'],
    ['rpc_seconds', MetricTypeV1.SUMMARY, false, 'rpc_seconds'],
    ['native_count', MetricTypeV1.HISTOGRAM, true, 'native_count'],
    ['_count', MetricTypeV1.HISTOGRAM, false, '_count'],
    ['jobs_count', MetricTypeV1.GAUGE, false, 'jobs_count'],
    ['http_requests_total', MetricTypeV1.COUNTER, false, 'http_requests_total'],
  ])('%s of type %d (native: %s) belongs to family %s', (name, type, native, family) => {
    expect(familyName(name, type, native)).toBe(family);
  });
});
