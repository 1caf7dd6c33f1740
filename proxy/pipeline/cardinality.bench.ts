// `npx vitest bench --run --project unit proxy/pipeline/cardinality.bench.ts`: the cost of
// SeriesTracker.admit for known and for new series, bytes of memory per tracked series, and the
// heap under a cardinality bomb (5,000,000 distinct new series into a tracker of capacity
// 1,000,000). One measured run, printed as a table; it reports numbers and asserts nothing.
import v8 from 'node:v8';
import vm from 'node:vm';
import { bench, describe } from 'vitest';
import { ADMIT_TABLE_FULL, hashBytes, SeriesTracker } from './cardinality.js';

interface CardinalityMeasurement {
  /** ns per admit of a known series, 10,000 series (cache-resident table). */
  knownSmallNs: number;
  /** ns per admit of a known series, 1,000,000 series (table far larger than the CPU caches). */
  knownLargeNs: number;
  /** ns per admit of a new series admitted, filling an empty tracker to 1,000,000. */
  newAdmittedNs: number;
  /** ns per admit of a new series refused over a per-bucket limit. */
  newOverLimitNs: number;
  /** ns per admit of a new series refused because the table is full. */
  newTableFullNs: number;
  /** ns per hashBytes over a 120-byte label set. */
  hash120BytesNs: number;
  /** Heap + array buffers grown by a tracker of capacity 1,000,000 holding 1,000,000 series, per series. */
  bytesPerSeries: number;
  /** Heap + array buffers (bytes) with the 1,000,000-series tracker full, before the bomb. */
  memoryBeforeBomb: number;
  /** The same after 5,000,000 distinct new series at one instant (all refused: table full). */
  memoryAfterBomb: number;
  /**
   * The same after a further 5,000,000 distinct new series spread over 5 minutes, a million a
   * minute into the tracker's 1-minute window, so keys expire and are replaced.
   */
  memoryAfterChurn: number;
  /** Series the tracker holds after that churn. */
  trackedAfterChurn: number;
}

const MILLION = 1_000_000;
const BUCKETS = 4096;
const T0 = 1_700_000_000_000;

/** A bijection on 32-bit integers (MurmurHash3's finaliser), so distinct i give distinct keys. */
function key(i: number): number {
  let h = i ^ 0x5bd1e995;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function collectGarbage(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function memory(gc: () => void): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function nsPer(calls: number, run: () => void): number {
  const start = process.hrtime.bigint();
  run();
  return Number(process.hrtime.bigint() - start) / calls;
}

function tracker(maxTrackedSeries: number): SeriesTracker {
  return new SeriesTracker({ maxTrackedSeries, buckets: BUCKETS, windowMs: 60_000 });
}

function measureCardinality(): CardinalityMeasurement {
  const gc = collectGarbage();
  let sink = 0;

  const small = tracker(10_000);
  const smallKeys = new Uint32Array(10_000);
  for (let i = 0; i < 10_000; i++) {
    smallKeys[i] = key(i);
    small.admit(i % BUCKETS, smallKeys[i]!, T0, Infinity);
  }
  const knownSmallNs = nsPer(5 * MILLION, () => {
    for (let r = 0; r < 500; r++)
      for (let i = 0; i < 10_000; i++) sink += small.admit(i % BUCKETS, smallKeys[i]!, T0 + r, Infinity);
  });

  const before = memory(gc);
  const large = tracker(MILLION);
  const newAdmittedNs = nsPer(MILLION, () => {
    for (let i = 0; i < MILLION; i++) sink += large.admit(i % BUCKETS, key(i), T0, Infinity);
  });
  const memoryBeforeBomb = memory(gc);
  const bytesPerSeries = (memoryBeforeBomb - before) / MILLION;
  const knownLargeNs = nsPer(3 * MILLION, () => {
    for (let r = 0; r < 3; r++)
      for (let i = 0; i < MILLION; i++) sink += large.admit(i % BUCKETS, key(i), T0 + r * 1000, Infinity);
  });

  let full = 0;
  const newTableFullNs = nsPer(5 * MILLION, () => {
    for (let i = MILLION; i < 6 * MILLION; i++)
      if (large.admit(i % BUCKETS, key(i), T0 + 3000, Infinity) === ADMIT_TABLE_FULL) full++;
  });
  const memoryAfterBomb = memory(gc);

  // A million new series a minute into the 1-minute window: keys expire and are replaced.
  const churnStart = T0 + 61_000;
  for (let i = 0; i < 5 * MILLION; i++)
    sink += large.admit(i % BUCKETS, key(6 * MILLION + i), churnStart + i * 0.06, Infinity);
  const memoryAfterChurn = memory(gc);
  const trackedAfterChurn = large.size;

  const limited = tracker(MILLION);
  const newOverLimitNs = nsPer(MILLION, () => {
    for (let i = 0; i < MILLION; i++) sink += limited.admit(i % BUCKETS, key(i), T0, 100);
  });

  const labels = new TextEncoder().encode(
    '__name__\u0000http_requests_total\u0000cluster\u0000eu-west-1\u0000instance\u000010.0.3.7:9100\u0000job\u0000api\u0000pod\u0000api-7d9f8b6c4-x2k9',
  );
  const body = new Uint8Array(120);
  body.set(labels.subarray(0, 120));
  const hash120BytesNs = nsPer(5 * MILLION, () => {
    for (let i = 0; i < 5 * MILLION; i++) sink ^= hashBytes(body, 0, 120, i);
  });

  if (sink === -1 || full === -1) throw new Error('unreachable: keeps the loops from being optimised away');
  return {
    knownSmallNs,
    knownLargeNs,
    newAdmittedNs,
    newOverLimitNs,
    newTableFullNs,
    hash120BytesNs,
    bytesPerSeries,
    memoryBeforeBomb,
    memoryAfterBomb,
    memoryAfterChurn,
    trackedAfterChurn,
  };
}

function report(m: CardinalityMeasurement): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return [
    `admit, known series (10k tracked)        ${m.knownSmallNs.toFixed(1)} ns`,
    `admit, known series (1M tracked)         ${m.knownLargeNs.toFixed(1)} ns`,
    `admit, new series admitted (to 1M)       ${m.newAdmittedNs.toFixed(1)} ns`,
    `admit, new series over the limit         ${m.newOverLimitNs.toFixed(1)} ns`,
    `admit, new series, table full            ${m.newTableFullNs.toFixed(1)} ns`,
    `hashBytes, 120-byte label set            ${m.hash120BytesNs.toFixed(1)} ns`,
    `memory per tracked series (1M)           ${m.bytesPerSeries.toFixed(2)} B`,
    `heap+arrayBuffers, 1M tracked            ${mib(m.memoryBeforeBomb)}`,
    `  after 5M new series (table full)       ${mib(m.memoryAfterBomb)}`,
    `  after 5M more over 5 min, 1 min window ${mib(m.memoryAfterChurn)}, ${m.trackedAfterChurn} series held`,
  ].join('\n');
}

describe('cardinality tracking', () => {
  // The benchmark runner calls the function more than once; the measurement is made once.
  let measured = false;
  bench(
    'one measured run',
    () => {
      if (measured) return;
      measured = true;
      process.stdout.write(`\n${report(measureCardinality())}\n`);
    },
    { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 },
  );
});
