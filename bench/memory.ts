// Memory rows of `npm run bench`, run by bench/run.ts as `node --expose-gc dist/bench/memory.js`
// so that every reading follows a full collection. Prints one JSON object (MemoryReport) on stdout.
//
//   bytes per tracked series   heap + array buffers grown by 1,000,000 distinct series, divided by
//                              1,000,000: for a SeriesTracker alone, and for the whole policy path
//                              of the proxy (limit tracker, top-offender trackers, verdict cache),
//                              once with the default verdict cache and once with it nearly off
//   heap under a bomb          the policy path with a per-metric limit fed 5,000,000 ever-new series
//                              in requests of 2,000: heap + array buffers before, after 1M, after 5M
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWriteRequestV1 } from '../proxy/codec/proto.js';
import { snappyEncode } from '../proxy/codec/snappy.js';
import type { TimeSeriesV1 } from '../proxy/codec/types.js';
import { hashString, SeriesTracker } from '../proxy/pipeline/cardinality.js';
import { UsageRecorder } from '../proxy/query/recorder.js';
import { policyPath } from './pipeline.js';
import { limitOnlySpecs, writePolicyDir } from './policies.js';

export interface MemoryReport {
  readonly trackerBytesPerSeries: number;
  readonly pathBytesPerSeries: number;
  /** The same with --cache.max-label-sets 1000: the difference is the verdict cache. */
  readonly pathSmallCacheBytesPerSeries: number;
  /** Series the path forwarded while filling (all 1,000,000 unless a limit refused some). */
  readonly pathAdmitted: number;
  readonly bombMaxSeriesPerMetric: number;
  readonly bombBefore: number;
  readonly bombAfter1M: number;
  readonly bombAfter5M: number;
  /** Series of the bomb the path forwarded; the rest the limit dropped. */
  readonly bombForwarded: number;
  /** The usage recorder (--query.upstream): heap + array buffers per metric name read. */
  readonly usageBytesPerMetric: number;
}

const MILLION = 1_000_000;
const PER_REQUEST = 2000;
const METRICS = 50;
const T0 = Date.UTC(2026, 0, 1);

const gc = (globalThis as { gc?: () => void }).gc;

function memory(): number {
  if (gc === undefined) throw new Error('run with node --expose-gc');
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** A snappy remote-write 1.0 body of series first..first+count-1, each new (a distinct pod). */
function request(first: number, count: number, nowMs: number): Buffer {
  const timeseries: TimeSeriesV1[] = [];
  for (let i = first; i < first + count; i++) {
    timeseries.push({
      labels: [
        { name: '__name__', value: `bomb_metric_${i % METRICS}_total` },
        { name: 'container', value: 'app' },
        { name: 'instance', value: `10.0.${(i >> 8) & 255}.${i & 255}:8080` },
        { name: 'job', value: 'kubernetes-pods' },
        { name: 'namespace', value: 'shop' },
        { name: 'pod', value: `checkout-${i.toString(36)}` },
      ],
      samples: [{ value: i, timestamp: nowMs }],
      exemplars: [],
      histograms: [],
    });
  }
  return snappyEncode(encodeWriteRequestV1({ timeseries, metadata: [] }));
}

/** Growth per metric of a usage recorder that read 100,000 metric names, each by 5 readers. */
function usageBytesPerMetric(): number {
  const n = 100_000;
  const before = memory();
  const recorder = new UsageRecorder({ maxMetrics: n, maxReaders: 1000, readersPerMetric: 5 }, T0);
  const names = Array.from({ length: n }, (_, i) => `app_subsystem_metric_${i}_seconds_total`);
  for (let r = 0; r < 5; r++) {
    for (const name of names) recorder.record([name], [], `dashboard:d${r} panel:1 org:1`, T0 + r);
  }
  names.length = 0;
  const after = memory();
  if (recorder.trackedMetrics !== n)
    throw new Error(`recorder tracks ${recorder.trackedMetrics} metrics, expected ${n}`);
  return (after - before) / n;
}

function trackerBytesPerSeries(): number {
  const before = memory();
  const tracker = new SeriesTracker({ maxTrackedSeries: MILLION, buckets: 65536, windowMs: 3_600_000 });
  for (let i = 0; i < MILLION; i++)
    tracker.admit(i % METRICS, hashString(`series-${i}`, 0x9747b28c), T0, Infinity);
  const after = memory();
  if (tracker.size !== MILLION) throw new Error(`tracker holds ${tracker.size} series, expected ${MILLION}`);
  return (after - before) / MILLION;
}

/** Feeds `total` new series from `first` through `run`; returns the samples forwarded. */
function feed(run: (body: Buffer, nowMs: number) => number, first: number, total: number): number {
  let forwarded = 0;
  for (let n = first; n < first + total; n += PER_REQUEST) {
    // One request every 10 ms of simulated time: all of it stays within the 1h window.
    const nowMs = T0 + (n / PER_REQUEST) * 10;
    forwarded += run(request(n, Math.min(PER_REQUEST, first + total - n), nowMs), nowMs);
  }
  return forwarded;
}

function main(): void {
  const tmp = mkdtempSync(join(tmpdir(), 'cardinal-bench-memory-'));
  try {
    const trackerPerSeries = trackerBytesPerSeries();

    // Every series admitted: the limit is above what each metric gets (1M / 50).
    const fillDir = writePolicyDir(join(tmp, 'fill'), limitOnlySpecs(MILLION));
    const fill = (flags: readonly string[]) => {
      const before = memory();
      const path = policyPath(fillDir, flags);
      const admitted = feed((b, t) => path.run(b, t), 0, MILLION);
      const after = memory();
      // Keeps the path alive until after the reading.
      if (path.engine.pipeline.empty) throw new Error('unreachable: the fill policy is not empty');
      return { perSeries: (after - before) / MILLION, admitted };
    };
    const small = fill(['--cache.max-label-sets', '1000']);
    const full = fill([]);

    const bombMax = 10_000;
    const bombDir = writePolicyDir(join(tmp, 'bomb'), limitOnlySpecs(bombMax));
    const path = policyPath(bombDir);
    const bombBefore = memory();
    let bombForwarded = feed((b, t) => path.run(b, t), 0, MILLION);
    const bombAfter1M = memory();
    bombForwarded += feed((b, t) => path.run(b, t), MILLION, 4 * MILLION);
    const bombAfter5M = memory();

    const usagePerMetric = usageBytesPerMetric();
    const report: MemoryReport = {
      usageBytesPerMetric: usagePerMetric,
      trackerBytesPerSeries: trackerPerSeries,
      pathBytesPerSeries: full.perSeries,
      pathSmallCacheBytesPerSeries: small.perSeries,
      pathAdmitted: full.admitted,
      bombMaxSeriesPerMetric: bombMax,
      bombBefore,
      bombAfter1M,
      bombAfter5M,
      bombForwarded,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main();
