// `npx vitest bench --run --project unit proxy/stats/merge.bench.ts`: what one whole-proxy
// statistics answer of --workers N costs (proxy/workers/stats.ts), for 1,000,000 tracked series
// over 1,000 metrics held by every worker (the worst case: every scrape reaches one worker and
// holds all its series, so each worker tracks them all). Per worker, its part (activeHashes);
// across the channel, the 'advanced' serialization of it (v8.serialize and deserialize); in the
// primary, the union per name. One measured run, printed as a table; it asserts nothing.
import v8 from 'node:v8';
import { bench, describe } from 'vitest';
import { SeriesTracker } from '../pipeline/cardinality.js';
import { hashSets, unionCounts } from './merge.js';

const MILLION = 1_000_000;
const METRICS = 1000;
const T0 = 1_700_000_000_000;

/** A bijection on 32-bit integers (MurmurHash3's finaliser), so distinct i give distinct keys. */
function key(i: number): number {
  let h = i ^ 0x5bd1e995;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0 || 1;
}

function ms(f: () => void, runs = 5): number {
  f();
  const start = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) f();
  return Number(process.hrtime.bigint() - start) / 1e6 / runs;
}

function measure(): string {
  const tracker = new SeriesTracker({ maxTrackedSeries: MILLION, buckets: METRICS + 1, windowMs: 600_000 });
  for (let i = 0; i < MILLION; i++) tracker.admit(1 + (i % METRICS), key(i), T0, Number.POSITIVE_INFINITY);
  const names = Array.from({ length: METRICS + 1 }, (_, i) => `metric_${i}_total`);
  let part = hashSets(names, tracker.activeHashes(T0, names.length));
  const partMs = ms(() => {
    part = hashSets(names, tracker.activeHashes(T0, names.length));
  });
  let bytes = 0;
  const ipcMs = ms(() => {
    const wire = v8.serialize(part);
    bytes = wire.length;
    v8.deserialize(wire);
  });
  const lines = [
    `part of one worker (1M series)            ${partMs.toFixed(1)} ms`,
    `serialize + deserialize it                ${ipcMs.toFixed(1)} ms, ${(bytes / 2 ** 20).toFixed(1)} MiB`,
  ];
  for (const workers of [1, 2, 4]) {
    const parts = Array.from({ length: workers }, () => part);
    let total = 0;
    const unionMs = ms(() => {
      total = 0;
      for (const n of unionCounts(parts).values()) total += n;
    });
    lines.push(`union of ${workers} part(s), each all 1M        ${unionMs.toFixed(1)} ms (${total} series)`);
  }
  return lines.join('\n');
}

describe('merging the statistics of the workers', () => {
  // The benchmark runner calls the function more than once; the measurement is made once.
  let measured = false;
  bench(
    'one measured run',
    () => {
      if (measured) return;
      measured = true;
      process.stdout.write(`\n${measure()}\n`);
    },
    { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 },
  );
});
