import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
  requestV2Type,
  writeRequestV1Type,
} from './proto.js';
import type { Histogram, RequestV2, WriteRequestV1 } from './types.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function histogram(fields: Partial<Histogram>): Histogram {
  return {
    sum: 0,
    schema: 0,
    zeroThreshold: 0,
    negativeSpans: [],
    negativeDeltas: [],
    negativeCounts: [],
    positiveSpans: [],
    positiveDeltas: [],
    positiveCounts: [],
    resetHint: 0,
    timestamp: 0,
    customValues: [],
    ...fields,
  };
}

// Byte vectors worked out by hand from the protobuf encoding rules (tag = field << 3 | wire type;
// doubles little-endian IEEE 754; sint = zigzag varint; repeated scalars packed).
const v1Vectors: { name: string; bytes: string; req: WriteRequestV1 }[] = [
  {
    // WriteRequest.timeseries(1,LEN)=0a len 0x15
    //   TimeSeries.labels(1,LEN)=0a len 6: Label.name(1)=0a 01 'a', Label.value(2)=12 01 'b'
    //   TimeSeries.samples(2,LEN)=12 len 0x0b: value(1,I64)=09 + 1.0 LE, timestamp(2,VARINT)=10 02
    name: 'one series, one label, one sample',
    bytes: '0a15 0a06 0a0161 120162 120b 09 000000000000f03f 1002',
    req: {
      timeseries: [
        {
          labels: [{ name: 'a', value: 'b' }],
          samples: [{ value: 1, timestamp: 2 }],
          exemplars: [],
          histograms: [],
        },
      ],
      metadata: [],
    },
  },
  {
    // WriteRequest.metadata(3,LEN)=1a len 8: type(1)=08 01 (COUNTER), metric_family_name(2)=12 01 'x',
    // help(4) empty so omitted, unit(5)=2a 01 's'
    name: 'metadata only',
    bytes: '1a08 0801 120178 2a0173',
    req: { timeseries: [], metadata: [{ type: 1, metricFamilyName: 'x', help: '', unit: 's' }] },
  },
  {
    // TimeSeries.histograms(4,LEN)=22 len 0x0f:
    //   count_int(1)=08 03, schema(4,sint32 -1 -> zigzag 1)=20 01,
    //   positive_spans(11,LEN)=5a 04 [offset(1,sint32 -2 -> 3)=08 03, length(2)=10 01],
    //   positive_deltas(12,packed sint64 [-1] -> [1])=62 01 01, reset_hint(14)=70 02 (NO)
    name: 'an integer native histogram with a negative offset and delta',
    bytes: '0a11 220f 0803 2001 5a04 0803 1001 620101 7002',
    req: {
      timeseries: [
        {
          labels: [],
          samples: [],
          exemplars: [],
          histograms: [
            histogram({
              countInt: 3,
              schema: -1,
              positiveSpans: [{ offset: -2, length: 1 }],
              positiveDeltas: [-1],
              resetHint: 2,
            }),
          ],
        },
      ],
      metadata: [],
    },
  },
];

const v2Vectors: { name: string; bytes: string; req: RequestV2 }[] = [
  {
    // Request.symbols(4,LEN)=22: "" "__name__" "up"
    // Request.timeseries(5,LEN)=2a len 0x15:
    //   labels_refs(1,packed)=0a 02 01 02, samples(2)=12 0b [09 + 1.0 LE, 10 02],
    //   metadata(5)=2a 02 [type(1)=08 02 GAUGE]; created_timestamp 0 omitted
    name: 'one gauge series with metadata',
    bytes: '2200 2208 5f5f6e616d655f5f 2202 7570 2a15 0a020102 120b 09 000000000000f03f 1002 2a020802',
    req: {
      symbols: ['', '__name__', 'up'],
      timeseries: [
        {
          labelsRefs: [1, 2],
          samples: [{ value: 1, timestamp: 2 }],
          histograms: [],
          exemplars: [],
          metadata: { type: 2, helpRef: 0, unitRef: 0 },
          createdTimestamp: 0,
        },
      ],
    },
  },
  {
    // symbols "" "trace_id" "abc"; timeseries(5)=2a len 0x14:
    //   exemplars(4)=22 0f [labels_refs(1)=0a 02 01 02, value(2,I64)=11 + 0.5 LE, timestamp(3)=18 05],
    //   created_timestamp(6,VARINT)=30 e8 07 (1000)
    name: 'an exemplar and a created timestamp',
    bytes: '2200 2208 74726163655f6964 2203 616263 2a14 220f 0a020102 11 000000000000e03f 1805 30e807',
    req: {
      symbols: ['', 'trace_id', 'abc'],
      timeseries: [
        {
          labelsRefs: [],
          samples: [],
          histograms: [],
          exemplars: [{ labelsRefs: [1, 2], value: 0.5, timestamp: 5 }],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 1000,
        },
      ],
    },
  },
];

describe('hand-checked byte vectors', () => {
  it.each(v1Vectors)('v1 $name: encodes to and decodes from the exact bytes', ({ bytes, req }) => {
    expect(toHex(encodeWriteRequestV1(req))).toBe(toHex(hex(bytes)));
    expect(decodeWriteRequestV1(hex(bytes))).toEqual(req);
  });

  it.each(v2Vectors)('v2 $name: encodes to and decodes from the exact bytes', ({ bytes, req }) => {
    expect(toHex(encodeRequestV2(req))).toBe(toHex(hex(bytes)));
    expect(decodeRequestV2(hex(bytes))).toEqual(req);
  });
});

const intHistogram = histogram({
  countInt: 12,
  sum: 18.4,
  schema: 1,
  zeroThreshold: 1e-128,
  zeroCountInt: 2,
  negativeSpans: [
    { offset: -3, length: 2 },
    { offset: 1, length: 1 },
  ],
  negativeDeltas: [2, -1, 3],
  positiveSpans: [
    { offset: 0, length: 2 },
    { offset: 5, length: 1 },
  ],
  positiveDeltas: [1, 2, -3],
  resetHint: 1,
  timestamp: 1_700_000_000_123,
});

const floatHistogram = histogram({
  countFloat: 7.5,
  sum: -3.25,
  schema: -4,
  zeroThreshold: 0.001,
  zeroCountFloat: 0.5,
  negativeSpans: [{ offset: 2, length: 2 }],
  negativeCounts: [1.5, 2.25],
  positiveSpans: [{ offset: -1, length: 1 }],
  positiveCounts: [3.25],
  resetHint: 3,
  timestamp: 1_700_000_000_456,
});

const customBucketsHistogram = histogram({
  countInt: 6,
  sum: 42,
  schema: -53,
  positiveSpans: [{ offset: 0, length: 3 }],
  positiveDeltas: [1, 1, 0],
  customValues: [0.1, 0.5, 2.5],
  resetHint: 2,
  timestamp: 1_700_000_000_789,
});

describe('v1 round trips', () => {
  const req: WriteRequestV1 = {
    timeseries: [
      {
        labels: [
          { name: '__name__', value: 'http_requests_total' },
          { name: 'job', value: 'api' },
          { name: 'path', value: '/ünïcödé' },
        ],
        samples: [
          { value: 1, timestamp: 1_700_000_000_000 },
          { value: -0, timestamp: -1 },
          { value: Number.NaN, timestamp: 2 ** 53 - 1 },
          { value: Number.POSITIVE_INFINITY, timestamp: 0 },
        ],
        exemplars: [
          { labels: [{ name: 'trace_id', value: 'abc123' }], value: 0.25, timestamp: 1_700_000_000_001 },
          { labels: [], value: 0, timestamp: 0 },
        ],
        histograms: [],
      },
      {
        labels: [{ name: '__name__', value: 'latency_seconds' }],
        samples: [],
        exemplars: [],
        histograms: [
          intHistogram,
          floatHistogram,
          customBucketsHistogram,
          histogram({ countInt: 0, zeroCountInt: 0 }),
        ],
      },
    ],
    metadata: [
      { type: 1, metricFamilyName: 'http_requests_total', help: 'Requests.', unit: '' },
      { type: 3, metricFamilyName: 'latency_seconds', help: 'Latency.', unit: 'seconds' },
      { type: 7, metricFamilyName: 'state', help: '', unit: '' },
    ],
  };

  it('keeps every field, including oneof members set to zero, -0 and NaN', () => {
    expect(decodeWriteRequestV1(encodeWriteRequestV1(req))).toEqual(req);
  });

  it('writes bytes that protobufjs decodes to the same message', () => {
    const decoded = writeRequestV1Type.toObject(writeRequestV1Type.decode(encodeWriteRequestV1(req)), {
      longs: Number,
      defaults: true,
      arrays: true,
    });
    expect(decoded).toEqual(req);
  });

  it('round-trips an empty request to zero bytes', () => {
    const empty = { timeseries: [], metadata: [] };
    expect(encodeWriteRequestV1(empty)).toHaveLength(0);
    expect(decodeWriteRequestV1(new Uint8Array(0))).toEqual(empty);
  });
});

describe('v2 round trips', () => {
  const req: RequestV2 = {
    symbols: ['', '__name__', 'latency_seconds', 'job', 'api', 'Latency.', 'seconds', 'trace_id', 'abc'],
    timeseries: [
      {
        labelsRefs: [1, 2, 3, 4],
        samples: [],
        histograms: [intHistogram, floatHistogram, customBucketsHistogram],
        exemplars: [{ labelsRefs: [7, 8], value: 0.3, timestamp: 1_700_000_000_002 }],
        metadata: { type: 3, helpRef: 5, unitRef: 6 },
        createdTimestamp: 1_600_000_000_000,
      },
      {
        labelsRefs: [1, 4],
        samples: [
          { value: 3, timestamp: 1_700_000_000_000 },
          { value: -0, timestamp: -5 },
        ],
        histograms: [],
        exemplars: [],
        metadata: { type: 0, helpRef: 0, unitRef: 0 },
        createdTimestamp: 0,
      },
    ],
  };

  it('keeps every field, including metadata, exemplars and the created timestamp', () => {
    expect(decodeRequestV2(encodeRequestV2(req))).toEqual(req);
  });

  it('writes bytes that protobufjs decodes to the same message', () => {
    const decoded = requestV2Type.toObject(requestV2Type.decode(encodeRequestV2(req)), {
      longs: Number,
      defaults: true,
      arrays: true,
    });
    expect(decoded.timeseries[0]).toEqual(req.timeseries[0]);
  });

  it('gives a series without a metadata field the all-zero metadata', () => {
    const decoded = decodeRequestV2(hex('2200 2a00'));
    expect(decoded.timeseries[0]?.metadata).toEqual({ type: 0, helpRef: 0, unitRef: 0 });
  });
});

describe('decoding errors', () => {
  it.each([
    ['v1 truncated length', () => decodeWriteRequestV1(hex('0a05 0a01')), 'MALFORMED_PROTOBUF'],
    ['v1 wrong wire type', () => decodeWriteRequestV1(hex('0801')), 'MALFORMED_PROTOBUF'],
    ['v2 bad first symbol', () => decodeRequestV2(hex('220161')), 'INVALID_WRITE_REQUEST'],
    ['v2 label ref out of range', () => decodeRequestV2(hex('2200 2a03 0a0105')), 'INVALID_WRITE_REQUEST'],
  ])('%s throws %s', (_name, run, code) => {
    expect(run).toThrow(CardinalError);
    try {
      run();
    } catch (err) {
      expect((err as CardinalError).code).toBe(code);
    }
  });
});
