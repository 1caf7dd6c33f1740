import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashString, MetricInterner, SeriesTracker } from '../pipeline/cardinality.js';
import { TopOffenders } from './top-offenders.js';

const T0 = 1_700_000_000_000;
const POLICIES = ['team-a/limits', 'team-b/standards'];
const REASONS = ['seriesLimit', 'labelLimit', 'standards'];

function setup(maxDropKeys?: number) {
  const interner = new MetricInterner({ capacity: 64 });
  const tracker = () => new SeriesTracker({ maxTrackedSeries: 10_000, buckets: 64, windowMs: 3_600_000 });
  const series = tracker();
  const pods = tracker();
  const paths = tracker();
  const top = new TopOffenders({
    metrics: interner,
    series: [series],
    labels: [
      { label: 'pod', values: pods },
      { label: 'path', values: paths },
    ],
    policies: POLICIES,
    reasons: REASONS,
    ...(maxDropKeys === undefined ? {} : { maxDropKeys }),
  });
  /** Admits `n` series of `metric`, each with its own `label` value. */
  const load = (metric: string, n: number, values: SeriesTracker = pods) => {
    const m = interner.internString(metric);
    for (let i = 0; i < n; i++) {
      series.admit(m, hashString(`${metric}{i="${i}"}`, 1), T0, Infinity);
      values.admit(m, hashString(`v${i}`, 2), T0, Infinity);
    }
    return m;
  };
  return { interner, series, pods, paths, top, load };
}

describe('TopOffenders', () => {
  it('ranks metrics by active series and labels by distinct values, largest first', () => {
    const { top, load, paths } = setup();
    load('http_requests_total', 30);
    load('up', 2);
    load('rpc_duration_seconds_bucket', 120);
    load('rpc_duration_seconds_bucket', 7, paths);
    const report = top.topOffenders(2);
    expect(report.metrics).toEqual([
      { metric: 'rpc_duration_seconds_bucket', activeSeries: 120 },
      { metric: 'http_requests_total', activeSeries: 30 },
    ]);
    expect(report.labels).toEqual([
      { metric: 'rpc_duration_seconds_bucket', label: 'pod', distinctValues: 120 },
      { metric: 'http_requests_total', label: 'pod', distinctValues: 30 },
    ]);
    expect(top.topOffenders(10).labels).toContainEqual({
      metric: 'rpc_duration_seconds_bucket',
      label: 'path',
      distinctValues: 7,
    });
    expect(top.topMetricNames(1)).toEqual(['rpc_duration_seconds_bucket']);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('sums drops by metric, policy and reason', () => {
    const { top, interner } = setup();
    const a = interner.internString('a_total');
    const b = interner.internString('b_total');
    top.recordDrop(a, 0, 0, 10);
    top.recordDrop(a, 0, 0, 5);
    top.recordDrop(a, 1, 2, 1);
    top.recordDrop(b, 0, 1, 100);
    expect(top.topOffenders(10).drops).toEqual([
      { metric: 'b_total', policy: 'team-a/limits', reason: 'labelLimit', samples: 100 },
      { metric: 'a_total', policy: 'team-a/limits', reason: 'seriesLimit', samples: 15 },
      { metric: 'a_total', policy: 'team-b/standards', reason: 'standards', samples: 1 },
    ]);
    expect(top.topOffenders(1).drops).toHaveLength(1);
    expect(top.droppedSamples).toBe(116);
  });

  it('keeps drop counters bounded: keys beyond maxDropKeys count under the overflow name', () => {
    const { top, interner } = setup(2);
    const m = [1, 2, 3].map((i) => interner.internString(`m${i}`));
    top.recordDrop(m[0]!, 0, 0, 1);
    top.recordDrop(m[1]!, 0, 0, 2);
    top.recordDrop(m[2]!, 0, 0, 3);
    top.recordDrop(m[2]!, 1, 1, 4);
    top.recordDrop(m[0]!, 0, 0, 1);
    expect(top.topOffenders(10).drops).toEqual([
      { metric: '__cardinal_other__', policy: 'team-b/standards', reason: 'labelLimit', samples: 4 },
      { metric: '__cardinal_other__', policy: 'team-a/limits', reason: 'seriesLimit', samples: 3 },
      { metric: 'm1', policy: 'team-a/limits', reason: 'seriesLimit', samples: 2 },
      { metric: 'm2', policy: 'team-a/limits', reason: 'seriesLimit', samples: 2 },
    ]);
  });

  it('reports nothing for a limit of 0 and leaves out metrics without active series', () => {
    const { top, load, interner } = setup();
    load('a', 3);
    interner.internString('idle');
    expect(top.topOffenders(0)).toEqual({ metrics: [], labels: [], drops: [] });
    expect(top.topOffenders(10).metrics.map((m) => m.metric)).toEqual(['a']);
  });

  it('agrees with a Map model of drops for any sequence of recordDrop calls', () => {
    const drop = fc.record({
      metric: fc.integer({ min: 0, max: 63 }),
      policy: fc.integer({ min: 0, max: 1 }),
      reason: fc.integer({ min: 0, max: 2 }),
      samples: fc.integer({ min: 1, max: 1000 }),
    });
    fc.assert(
      fc.property(fc.array(drop, { maxLength: 300 }), (drops) => {
        const { top, interner } = setup();
        for (let i = 1; i < 64; i++) interner.internString(`m${i}`);
        const model = new Map<string, number>();
        for (const d of drops) {
          top.recordDrop(d.metric, d.policy, d.reason, d.samples);
          const key = `${interner.name(d.metric)}|${POLICIES[d.policy]}|${REASONS[d.reason]}`;
          model.set(key, (model.get(key) ?? 0) + d.samples);
        }
        const got = new Map(
          top.topOffenders(1000).drops.map((d) => [`${d.metric}|${d.policy}|${d.reason}`, d.samples]),
        );
        expect(got).toEqual(model);
      }),
      { numRuns: 200 },
    );
  });
});
