import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { encodeWriteRequestV1 } from '../codec/proto.js';
import { scanWriteRequestV1 } from '../codec/scan.js';
import type { TimeSeriesV1 } from '../codec/types.js';
import { SeriesTracker } from '../pipeline/cardinality.js';
import { compilePipeline } from '../pipeline/compile.js';
import { PolicyEngine } from '../pipeline/engine.js';
import { emptyReads } from '../query/extract.js';
import { recorderGauges, registerUsageGauges, type UsageGaugeSource } from '../query/metrics.js';
import { buildUsageReport, UsageService } from '../query/usage.js';
import { usageGaugesOf } from '../workers/stats.js';
import {
  hashSets,
  limitOffenders,
  mergeLimits,
  mergeOffenders,
  mergeUnused,
  mergeUsage,
  unionCounts,
} from './merge.js';
import { Offenders } from './offenders.js';
import { PolicyStats } from './policy-stats.js';
import { UnusedStats } from './unused.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);

describe('unionCounts', () => {
  it('counts a hash held by several parts once, per name, and keeps names without hashes', () => {
    const part = (names: string[], sets: number[][]) =>
      hashSets(names, {
        offsets: Uint32Array.from([0, ...sets.map((_, i) => sets.slice(0, i + 1).flat().length)]),
        hashes: Uint32Array.from(sets.flat()),
      });
    const counts = unionCounts([
      part(['a', 'b', 'c'], [[1, 2, 3], [7], []]),
      part(
        ['b', 'a'],
        [
          [7, 8],
          [3, 4],
        ],
      ),
    ]);
    expect(Object.fromEntries(counts)).toEqual({ a: 4, b: 2, c: 0 });
  });

  it('rejects offsets that do not fit the names', () => {
    expect(() => hashSets(['a'], { offsets: new Uint32Array(1), hashes: new Uint32Array(0) })).toThrow(
      '1 names need 2 offsets, got 1',
    );
  });

  it('of trackers each given a share of the keys equals the count of one tracker given them all', () => {
    // Each key (bucket, hash) reaches a non-empty subset of the parts, as a series reaches workers.
    const key = fc.record({ bucket: fc.integer({ min: 0, max: 7 }), hash: fc.integer({ min: 1, max: 500 }) });
    fc.assert(
      fc.property(fc.array(fc.tuple(key, fc.integer({ min: 1, max: 7 })), { maxLength: 300 }), (keys) => {
        const tracker = () => new SeriesTracker({ maxTrackedSeries: 10_000, buckets: 8, windowMs: 60_000 });
        const whole = tracker();
        const parts = [tracker(), tracker(), tracker()];
        for (const [{ bucket, hash }, mask] of keys) {
          whole.admit(bucket, hash, T0, Number.POSITIVE_INFINITY);
          parts.forEach((p, i) => {
            if (mask & (1 << i)) p.admit(bucket, hash, T0, Number.POSITIVE_INFINITY);
          });
        }
        const names = Array.from({ length: 8 }, (_, i) => `m${i}`);
        const merged = unionCounts(parts.map((p) => hashSets(names, p.activeHashes(T0 + 1000, 8))));
        for (let b = 0; b < 8; b++) expect(merged.get(`m${b}`)).toBe(whole.count(b));
      }),
    );
  });

  it('leaves out keys that were not seen within the window', () => {
    const t = new SeriesTracker({ maxTrackedSeries: 100, buckets: 4, windowMs: 10_000 });
    t.admit(1, 11, T0, Number.POSITIVE_INFINITY);
    t.admit(1, 12, T0 + 8000, Number.POSITIVE_INFINITY);
    const { offsets, hashes } = t.activeHashes(T0 + 15_000, 4);
    expect([...offsets]).toEqual([0, 0, 1, 1, 1]);
    expect([...hashes]).toEqual([12]);
  });
});

// One process and N workers given the same requests, each request to one worker.

const POLICIES: { name: string; spec: MetricPolicySpecT }[] = [
  { name: 'hygiene', spec: { drop: ['debug_.*'] } },
  {
    name: 'usage',
    spec: { unused: { action: 'report', labels: 'report' } },
  },
];
const USAGE = { documents: 1, metrics: [{ name: 'read_total', sources: ['dashboard'], labels: ['job'] }] };

function proxyState() {
  const pipeline = compilePipeline(
    POLICIES.map((p) => ({ ...p, namespace: 'ns' })),
    USAGE,
  );
  const policyStats = new PolicyStats(new Registry());
  policyStats.setPipeline(pipeline);
  const engine = new PolicyEngine(
    pipeline,
    { verdictCacheSize: 1000, maxTrackedSeries: 10_000, maxTrackedLabelValues: 10_000, maxMetricNames: 100 },
    policyStats,
  );
  const offenders = new Offenders(engine, { windowMs: 600_000, maxTrackedSeries: 10_000, exposeTop: 5 });
  const unused = new UnusedStats(
    engine.interner,
    pipeline,
    { windowMs: 600_000, maxTrackedSeries: 10_000 },
    T0,
  );
  policyStats.observe({
    slot: offenders.hooks.slot,
    forwarded: offenders.hooks.forwarded,
    newSeries: (m, l, t) => offenders.newSeries(m, l, t),
    ...unused.hooks,
  });
  const send = (series: TimeSeriesV1[], nowMs: number) => {
    const buf = Buffer.from(encodeWriteRequestV1({ timeseries: series, metadata: [] }));
    engine.process(buf, scanWriteRequestV1(buf), undefined, nowMs);
  };
  return { offenders, unused, send };
}

const METRICS = ['read_total', 'unread_total', 'debug_noise', 'other_bytes'];
const seriesArb = fc.record({
  metric: fc.constantFrom(...METRICS),
  id: fc.integer({ min: 0, max: 40 }),
  job: fc.constantFrom('a', 'b'),
  samples: fc.integer({ min: 1, max: 3 }),
});
const requestsArb = fc.array(
  fc.record({ series: fc.array(seriesArb, { minLength: 1, maxLength: 12 }), worker: fc.nat(2) }),
  { maxLength: 25 },
);

function toSeries(s: { metric: string; id: number; job: string; samples: number }): TimeSeriesV1 {
  return {
    labels: [
      { name: '__name__', value: s.metric },
      { name: 'id', value: String(s.id) },
      { name: 'job', value: s.job },
    ],
    samples: Array.from({ length: s.samples }, (_, k) => ({ value: k, timestamp: T0 + k })),
    exemplars: [],
    histograms: [],
  };
}

/** Rates summed per worker are equal to the whole's up to rounding. */
function rounded<T>(v: T): T {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'number' ? Number(x.toPrecision(9)) : x)));
}

describe('merging the workers of one proxy', () => {
  it('gives the top offenders one process gives for the same requests', () => {
    fc.assert(
      fc.property(requestsArb, fc.integer({ min: 1, max: 3 }), (requests, workers) => {
        const whole = proxyState();
        const parts = Array.from({ length: workers }, () => proxyState());
        requests.forEach((r, i) => {
          const series = r.series.map(toSeries);
          whole.send(series, T0 + i * 1000);
          parts[r.worker % workers]!.send(series, T0 + i * 1000);
        });
        const at = T0 + requests.length * 1000;
        const merged = mergeOffenders(parts.map((p) => p.offenders.part(at)));
        expect(limitOffenders(merged.report, 1000)).toEqual(whole.offenders.report(1000));
        expect(merged.activeSeries).toBe(
          whole.offenders.report(1000).metrics.reduce((n, m) => n + m.activeSeries, 0),
        );
        expect(limitOffenders(merged.report, 2)).toEqual(whole.offenders.report(2));
      }),
      { numRuns: 60 },
    );
  });

  it('gives the unused report one process gives for the same requests', () => {
    fc.assert(
      fc.property(
        requestsArb,
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        (requests, workers, limit) => {
          const whole = proxyState();
          const parts = Array.from({ length: workers }, () => proxyState());
          requests.forEach((r, i) => {
            const series = r.series.map(toSeries);
            whole.send(series, T0 + i * 1000);
            parts[r.worker % workers]!.send(series, T0 + i * 1000);
          });
          const at = T0 + 60_000;
          const merged = mergeUnused(
            parts.map((p) => p.unused.part(limit, at)),
            limit,
          );
          expect(rounded(merged)).toEqual(rounded(whole.unused.report(limit, at)));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('sums drops per (metric, policy, reason) across the workers', () => {
    const a = proxyState();
    const b = proxyState();
    a.send([toSeries({ metric: 'debug_noise', id: 1, job: 'a', samples: 2 })], T0);
    b.send([toSeries({ metric: 'debug_noise', id: 1, job: 'a', samples: 3 })], T0);
    expect(mergeOffenders([a.offenders.part(T0), b.offenders.part(T0)]).report.drops).toEqual([
      { metric: 'debug_noise', policy: 'ns/hygiene', reason: 'metric_dropped', samples: 5 },
    ]);
  });
});

describe('mergeUsage', () => {
  const logger = pino({ level: 'silent' });
  const service = (now: { t: number }, known: string[]) =>
    new UsageService({
      recorder: { maxMetrics: 100, maxReaders: 10, readersPerMetric: 3 },
      stateFile: undefined,
      saveIntervalMs: 60_000,
      known: { generation: () => known.length, names: () => known },
      upstreamNamesKnown: () => true,
      logger,
      now: () => now.t,
    });
  const read = (s: UsageService, names: string[], reader: string, t: number) => {
    const r = emptyReads();
    for (const n of names) r.names.add(n);
    s.record(r, reader, t);
  };

  it('sums reads per metric and reader and joins the union of ingest', () => {
    const now = { t: T0 };
    const whole = service(now, ['read_total']);
    const parts = [service(now, ['read_total']), service(now, ['read_total'])];
    const reads: [string[], string, number][] = [
      [['read_total'], 'dashboard:a', 0],
      [['read_total', 'typo'], 'dashboard:b', 1],
      [['read_total'], 'dashboard:a', 0],
      [['unread_total'], 'alert:x', 1],
    ];
    reads.forEach(([names, reader, w], i) => {
      read(whole, names, reader, T0 + i);
      read(parts[w]!, names, reader, T0 + i);
    });
    const ingest = [proxyState(), proxyState()];
    const all = proxyState();
    const traffic = [
      toSeries({ metric: 'read_total', id: 1, job: 'a', samples: 1 }),
      toSeries({ metric: 'read_total', id: 2, job: 'a', samples: 1 }),
    ];
    ingest[0]!.send(traffic, T0);
    ingest[1]!.send(traffic.slice(1), T0);
    all.send(traffic, T0);
    all.send(traffic.slice(1), T0);
    const merged = mergeUsage(
      parts.map((s, i) => ({ ...s.part(true), ingest: ingest[i]!.offenders.ingestPart(T0 + 10) })),
      T0 + 10,
    );
    now.t = T0 + 10;
    const q = { limit: 10, readers: 5, sort: 'reads' } as const;
    const want = whole.report(
      q,
      { lookup: all.offenders.ingest(T0 + 10), largest: (n) => all.offenders.largest(n) },
      true,
    );
    expect(rounded(buildUsageReport(merged, q))).toEqual(rounded(want));
    expect(want.metrics.find((m) => m.metric === 'read_total')).toMatchObject({
      reads: { '30d': 3 },
      ingest: { activeSeries: 2 },
      readers: [
        { reader: 'dashboard:a', reads: 2 },
        { reader: 'dashboard:b', reads: 1 },
      ],
    });
    expect(want.missing.map((m) => m.metric)).toEqual(['typo', 'unread_total']);
  });

  it('gives the usage gauges of one process, not the sum of the workers', async () => {
    const now = { t: T0 };
    const whole = service(now, []);
    const parts = [service(now, []), service(now, [])];
    const reads: [string, string, number][] = [
      ['up', 'dashboard:a', 0],
      ['up', 'dashboard:b', 1],
      ['node_load1', 'dashboard:a', 1],
      ['only_one', 'alert:x', 0],
      ['up', 'dashboard:a', 1],
    ];
    reads.forEach(([name, reader, w], i) => {
      read(whole, [name], reader, T0 + i);
      read(parts[w]!, [name], reader, T0 + i);
    });
    const merged = mergeUsage(
      parts.map((s) => ({ ...s.part(true), ingest: proxyState().offenders.ingestPart(T0 + 10) })),
      T0 + 10,
    );
    now.t = T0 + 10;
    const gauges = async (source: UsageGaugeSource) => {
      const registry = new Registry();
      registerUsageGauges(registry, 2, source);
      return (await registry.getMetricsAsJSON()).map((m) => [
        m.name,
        m.values.map((v) => [v.labels, v.value]),
      ]);
    };
    const want = await gauges(
      recorderGauges(
        () => whole.recorder,
        () => now.t,
      ),
    );
    expect(await gauges((n) => usageGaugesOf(merged, n))).toEqual(want);
    expect(want).toEqual([
      ['cardinal_proxy_usage_tracked_metrics', [[{}, 3]]],
      ['cardinal_proxy_usage_tracked_readers', [[{}, 3]]],
      ['cardinal_proxy_usage_untracked_reads', [[{}, 0]]],
      [
        'cardinal_proxy_usage_top_metric_reads_24h',
        [
          [{ metric: 'up' }, 3],
          [{ metric: 'node_load1' }, 1],
        ],
      ],
    ]);
  });
});

describe('mergeLimits', () => {
  const use = (metric: string, current: number, max = 100) => ({
    limit: 'perMetric[0]',
    metric,
    current,
    max,
  });
  it('lists the limits in use every worker saw, each count the largest, the fullest first', () => {
    const merged = mergeLimits(
      [
        {
          policies: [
            {
              policy: 'ns/p',
              fillPercent: 90,
              limit: 'perMetric[0] a',
              global: true,
              limits: [use('a', 90), use('b', 10)],
            },
            { policy: 'ns/q', fillPercent: 0, limit: '', global: false, limits: [] },
          ],
        },
        {
          policies: [
            {
              policy: 'ns/p',
              fillPercent: 100,
              limit: 'perMetric[0] c',
              global: true,
              limits: [use('c', 100), use('a', 90)],
            },
            { policy: 'ns/q', fillPercent: 0, limit: '', global: false, limits: [] },
          ],
        },
      ],
      2,
    );
    expect(merged).toEqual({
      policies: [
        {
          policy: 'ns/p',
          fillPercent: 100,
          limit: 'perMetric[0] c',
          global: true,
          limits: [use('c', 100), use('a', 90)],
        },
        { policy: 'ns/q', fillPercent: 0, limit: '', global: false, limits: [] },
      ],
    });
  });

  it('is global only when every worker counted in the store', () => {
    const part = (global: boolean, current: number) => ({
      policies: [
        {
          policy: 'ns/p',
          fillPercent: current,
          limit: 'perMetric[0] a',
          global,
          limits: [use('a', current)],
        },
      ],
    });
    expect(mergeLimits([part(true, 50), part(false, 20)], 10).policies[0]).toMatchObject({
      global: false,
      fillPercent: 50,
    });
  });
});
