import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { encodeWriteRequestV1 } from '../codec/proto.js';
import { scanWriteRequestV1 } from '../codec/scan.js';
import type { TimeSeriesV1 } from '../codec/types.js';
import { compilePipeline } from '../pipeline/compile.js';
import { PolicyEngine } from '../pipeline/engine.js';
import { limitsReport } from './limits.js';

function engineFor(policies: { name: string; spec: MetricPolicySpecT }[]): PolicyEngine {
  const pipeline = compilePipeline(policies.map((p) => ({ ...p, namespace: 'apps' })));
  return new PolicyEngine(
    pipeline,
    { verdictCacheSize: 1000, maxTrackedSeries: 1000, maxTrackedLabelValues: 1000, maxMetricNames: 100 },
    { slot() {}, forwarded: () => false, newSeries() {} },
  );
}

function send(engine: PolicyEngine, series: Record<string, string>[]): void {
  const timeseries: TimeSeriesV1[] = series.map((labels) => ({
    labels: Object.entries(labels)
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    samples: [{ value: 1, timestamp: 1000 }],
    exemplars: [],
    histograms: [],
  }));
  const buf = Buffer.from(encodeWriteRequestV1({ timeseries, metadata: [] }));
  engine.process(buf, scanWriteRequestV1(buf), undefined, Date.now());
}

describe('limitsReport', () => {
  it('names the fullest limit of each policy with limits, in % of what it allows', () => {
    const engine = engineFor([
      {
        name: 'capped',
        spec: {
          limits: {
            perMetric: [
              { metric: 'http_.*', maxSeries: 10 },
              { metric: 'rpc_.*', maxSeries: 4 },
            ],
            perLabel: [{ label: 'user', maxValues: 100 }],
          },
        },
      },
      { name: 'tenants', spec: { limits: { perTenantMaxSeries: 8 } } },
      { name: 'plain', spec: { drop: ['debug_.*'] } },
    ]);
    const many = (metric: string, n: number, label = 'id') =>
      Array.from({ length: n }, (_, i) => ({ __name__: metric, [label]: String(i) }));
    send(engine, [
      ...many('http_requests_total', 5),
      ...many('rpc_calls_total', 3),
      ...many('other', 2, 'user'),
    ]);
    expect(limitsReport(engine).policies).toEqual([
      // 3 of 4 rpc series beat 5 of 10 http series and 2 of 100 user values.
      { policy: 'apps/capped', fillPercent: 75, limit: 'perMetric[1] rpc_calls_total' },
      // 10 series of one tenant against 8 allowed: the limit admitted 8 and is full.
      { policy: 'apps/tenants', fillPercent: 100, limit: 'perTenantMaxSeries' },
    ]);
  });

  it('reports 0 for a policy whose limits saw nothing yet', () => {
    const engine = engineFor([
      { name: 'p', spec: { limits: { perMetric: [{ metric: 'x', maxSeries: 1 }] } } },
    ]);
    expect(limitsReport(engine).policies).toEqual([{ policy: 'apps/p', fillPercent: 0, limit: '' }]);
  });
});
