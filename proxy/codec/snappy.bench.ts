// `npx vitest bench --run proxy/codec/snappy.bench.ts`: the native snappy binding against the
// pure-JavaScript snappyjs, and the scanner, on one ~600 KB remote-write 1.0 body (3,000 series of
// 8 labels and one sample, the shape a Prometheus shard sends). Reports numbers, asserts nothing.
import snappy from 'snappy';
import SnappyJS from 'snappyjs';
import { bench, describe } from 'vitest';
import { encodeWriteRequestV1 } from './proto.js';
import { createSeriesIndex, scanWriteRequestV1 } from './scan.js';
import { snappyDecode, snappyEncode } from './snappy.js';
import type { TimeSeriesV1 } from './types.js';

function body(series: number): Uint8Array {
  const timeseries: TimeSeriesV1[] = [];
  for (let i = 0; i < series; i++) {
    timeseries.push({
      labels: [
        { name: '__name__', value: `http_requests_total_${i % 40}` },
        { name: 'cluster', value: 'eu-west-1' },
        { name: 'instance', value: `10.0.${i % 250}.${i % 7}:9100` },
        { name: 'job', value: 'api' },
        { name: 'method', value: i % 3 === 0 ? 'GET' : 'POST' },
        { name: 'namespace', value: 'payments' },
        { name: 'pod', value: `api-7d9f8b6c4-${(i * 7919).toString(36)}` },
        { name: 'status', value: String(200 + (i % 5)) },
      ],
      samples: [{ value: i * 1.5, timestamp: 1_700_000_000_000 + i }],
      exemplars: [],
      histograms: [],
    });
  }
  return encodeWriteRequestV1({ timeseries, metadata: [] });
}

const raw = body(3000);
const native = snappyEncode(raw);
const js = SnappyJS.compress(raw);
const index = createSeriesIndex(8192);

describe(`decompress ${raw.length} B (native ${native.length} B compressed)`, () => {
  bench('native snappy', () => {
    snappyDecode(native, 64 << 20);
  });
  bench('native snappy, external output buffer (the binding default)', () => {
    snappy.uncompressSync(native, { asBuffer: true });
  });
  bench('snappyjs', () => {
    SnappyJS.uncompress(js);
  });
});

describe(`compress ${raw.length} B`, () => {
  bench('native snappy', () => {
    snappyEncode(raw);
  });
  bench('native snappy, external output buffer (the binding default)', () => {
    snappy.compressSync(raw);
  });
  bench('snappyjs', () => {
    SnappyJS.compress(raw);
  });
});

describe(`scan ${raw.length} B`, () => {
  bench('scanWriteRequestV1', () => {
    scanWriteRequestV1(raw, index);
  });
});
