import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { MetricInterner } from '../pipeline/cardinality.js';
import { compilePipeline } from '../pipeline/compile.js';
import { UnusedStats } from './unused.js';

const T0 = Date.parse('2026-06-01T00:00:00Z');
const spec: MetricPolicySpecT = { unused: { action: 'drop' } };
const pipelineWith = (read: string[], s: MetricPolicySpecT = spec) =>
  compilePipeline([{ name: 'p', namespace: 'ns', spec: s }], {
    documents: 1,
    metrics: read.map((name) => ({ name, sources: [`Dashboard ns/${name}`] })),
  });

describe('UnusedStats', () => {
  it('reports the unused metrics with their active series and sample rate, largest first', () => {
    const names = new MetricInterner({ capacity: 64 });
    const stats = new UnusedStats(
      names,
      pipelineWith(['up']),
      { windowMs: 60_000, maxTrackedSeries: 100 },
      T0,
    );
    const a = names.internString('a_total');
    const b = names.internString('b_total');
    for (let i = 0; i < 3; i++) stats.record(0, a, 100 + i, 2, T0);
    stats.record(0, b, 7, 10, T0);
    stats.record(0, b, 7, 10, T0 + 1000);
    const report = stats.report(10, T0 + 10_000);
    expect(report.usageDocuments).toBe(1);
    expect(report.used).toEqual([{ metric: 'up', sources: ['Dashboard ns/up'], sourceCount: 1 }]);
    expect(report.policies).toEqual([
      {
        policy: 'ns/p',
        action: 'drop',
        mode: 'enforce',
        usageKnown: true,
        usedMetrics: 1,
        unusedMetrics: 2,
        activeSeries: 4,
        samplesPerSecond: 2.6,
        metrics: [
          { metric: 'a_total', activeSeries: 3, samples: 6, samplesPerSecond: 0.6 },
          { metric: 'b_total', activeSeries: 1, samples: 20, samplesPerSecond: 2 },
        ],
        labels: [],
      },
    ]);
    expect(stats.report(1, T0 + 10_000).policies[0]?.metrics).toHaveLength(1);
  });

  it('keeps counting across a reload and leaves out a metric that became read', () => {
    const names = new MetricInterner({ capacity: 64 });
    const stats = new UnusedStats(names, pipelineWith([]), { windowMs: 60_000, maxTrackedSeries: 100 }, T0);
    const a = names.internString('a_total');
    const b = names.internString('b_total');
    stats.record(0, a, 1, 1, T0);
    stats.record(0, b, 2, 1, T0);
    stats.setPipeline(pipelineWith(['a_total']), T0 + 1000);
    const [p] = stats.report(10, T0 + 2000).policies;
    expect(p?.metrics.map((m) => m.metric)).toEqual(['b_total']);
    expect(p?.activeSeries).toBe(1);
  });

  it('says when no usage is known', () => {
    const names = new MetricInterner({ capacity: 64 });
    const pipeline = compilePipeline([{ name: 'p', namespace: 'ns', spec }]);
    const stats = new UnusedStats(names, pipeline, { windowMs: 60_000, maxTrackedSeries: 100 });
    expect(stats.report(10).policies[0]).toMatchObject({ usageKnown: false, unusedMetrics: 0 });
  });
});

describe('UnusedStats: unread labels', () => {
  it('counts distinct values per unread label of a read metric, and forgets a label that became read', () => {
    const names = new MetricInterner({ capacity: 64 });
    const labelsSpec: MetricPolicySpecT = { unused: { labels: 'report' } };
    const read = (labels: string[]) =>
      compilePipeline([{ name: 'p', namespace: 'ns', spec: labelsSpec }], {
        documents: 1,
        metrics: [{ name: 'req_total', sources: ['d'], labels }],
      });
    const stats = new UnusedStats(names, read(['job']), { windowMs: 60_000, maxTrackedSeries: 100 }, T0);
    const m = names.internString('req_total');
    const pod = stats.hooks.labelPair(m, 'pod');
    const zone = stats.hooks.labelPair(m, 'zone');
    expect(stats.hooks.labelPair(m, 'pod')).toBe(pod);
    for (const v of [1, 2, 3]) stats.hooks.unreadLabels(Uint32Array.from([0, pod, v, 0, zone, 9]), T0);
    expect(stats.report(10, T0).policies[0]?.labels).toEqual([
      { metric: 'req_total', label: 'pod', distinctValues: 3 },
      { metric: 'req_total', label: 'zone', distinctValues: 1 },
    ]);
    stats.setPipeline(read(['job', 'pod']), T0);
    expect(stats.report(10, T0).policies[0]?.labels).toEqual([
      { metric: 'req_total', label: 'zone', distinctValues: 1 },
    ]);
  });
});
