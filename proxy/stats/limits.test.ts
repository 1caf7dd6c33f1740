import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { encodeWriteRequestV1 } from '../codec/proto.js';
import { scanWriteRequestV1 } from '../codec/scan.js';
import type { TimeSeriesV1 } from '../codec/types.js';
import { type LimitStore, MemoryLimitStore } from '../limits/store.js';
import { compilePipeline } from '../pipeline/compile.js';
import { PolicyEngine } from '../pipeline/engine.js';
import { limitsReport } from './limits.js';

function engineFor(policies: { name: string; spec: MetricPolicySpecT }[], store?: LimitStore): PolicyEngine {
  const pipeline = compilePipeline(policies.map((p) => ({ ...p, namespace: 'apps' })));
  return new PolicyEngine(
    pipeline,
    { verdictCacheSize: 1000, maxTrackedSeries: 1000, maxTrackedLabelValues: 1000, maxMetricNames: 100 },
    { slot() {}, forwarded: () => false, newSeries() {} },
    store === undefined ? undefined : { store, replicas: 2 },
  );
}

async function send(engine: PolicyEngine, series: Record<string, string>[]): Promise<void> {
  const timeseries: TimeSeriesV1[] = series.map((labels) => ({
    labels: Object.entries(labels)
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    samples: [{ value: 1, timestamp: 1000 }],
    exemplars: [],
    histograms: [],
  }));
  const buf = Buffer.from(encodeWriteRequestV1({ timeseries, metadata: [] }));
  await engine.run(buf, scanWriteRequestV1(buf), undefined, Date.now());
}

const many = (metric: string, n: number, label = 'id', from = 0) =>
  Array.from({ length: n }, (_, i) => ({ __name__: metric, [label]: String(from + i) }));

describe('limitsReport', () => {
  it('names the fullest limit of each policy with limits, in % of what it allows', async () => {
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
    await send(engine, [
      ...many('http_requests_total', 5),
      ...many('rpc_calls_total', 3),
      ...many('other', 2, 'user'),
    ]);
    expect((await limitsReport(engine)).policies).toEqual([
      // 3 of 4 rpc series beat 5 of 10 http series and 2 of 100 user values.
      {
        policy: 'apps/capped',
        fillPercent: 75,
        limit: 'perMetric[1] rpc_calls_total',
        global: false,
        limits: [
          { limit: 'perMetric[1]', metric: 'rpc_calls_total', current: 3, max: 4 },
          { limit: 'perMetric[0]', metric: 'http_requests_total', current: 5, max: 10 },
          { limit: 'perLabel[0]', metric: 'other', label: 'user', current: 2, max: 100 },
        ],
      },
      // 10 series of one tenant against 8 allowed: the limit admitted 8 and is full.
      {
        policy: 'apps/tenants',
        fillPercent: 100,
        limit: 'perTenantMaxSeries',
        global: false,
        limits: [{ limit: 'perTenantMaxSeries', tenant: '', current: 8, max: 8 }],
      },
    ]);
  });

  it('reports 0 for a policy whose limits saw nothing yet', async () => {
    const engine = engineFor([
      { name: 'p', spec: { limits: { perMetric: [{ metric: 'x', maxSeries: 1 }] } } },
    ]);
    expect((await limitsReport(engine)).policies).toEqual([
      { policy: 'apps/p', fillPercent: 0, limit: '', global: false, limits: [] },
    ]);
  });

  it('counts over all replicas with a shared store: each replica reports the global count, not its own', async () => {
    const store = new MemoryLimitStore(2);
    const spec: MetricPolicySpecT = {
      limits: {
        perMetric: [{ metric: 'http_.*', maxSeries: 20 }],
        perLabel: [{ label: 'path', maxValues: 50 }],
      },
    };
    const [a, b] = [engineFor([{ name: 'p', spec }], store), engineFor([{ name: 'p', spec }], store)];
    // a sees series 0..7, b 4..11: 12 series in all, 8 on each replica.
    await send(a, many('http_requests_total', 8, 'path'));
    await send(b, many('http_requests_total', 8, 'path', 4));
    for (const engine of [a, b]) {
      expect((await limitsReport(engine)).policies).toEqual([
        {
          policy: 'apps/p',
          fillPercent: 60,
          limit: 'perMetric[0] http_requests_total',
          global: true,
          limits: [
            { limit: 'perMetric[0]', metric: 'http_requests_total', current: 12, max: 20 },
            { limit: 'perLabel[0]', metric: 'http_requests_total', label: 'path', current: 12, max: 50 },
          ],
        },
      ]);
    }
    // The store down: each replica's own counts, said to be so.
    store.down = true;
    const local = (await limitsReport(a)).policies[0]!;
    expect(local).toMatchObject({ global: false, fillPercent: 40 });
    expect(local.limits[0]).toMatchObject({ current: 8, max: 20 });
  });
});
