// Usage-aware governance end to end: PrometheusRules and a Grafana dashboard ConfigMap applied to
// a real API server, the operator (with the chart's RBAC) reading what they query into the proxy's
// ConfigMap, a kubelet-like sync projecting it into the proxy's --config, and a real sender
// (vmagent) writing read and unread metrics through the proxy into a real Prometheus. In report
// mode everything arrives and the policy's status names the unread metrics with their series; in
// drop mode only what is read (and kept) arrives; a new dashboard that reads a dropped metric
// brings it back.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  type PrometheusReceiver,
  type ProxyProgram,
  startPolicyPlane,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';
import { DEFAULT_CONFIG_MAP, startGovernedStack } from '../framework/stack.js';

const CONFIG_MAP = DEFAULT_CONFIG_MAP;
const FIXTURES = fileURLToPath(new URL('../fixtures/usage/', import.meta.url));
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

interface UnusedStatus {
  labels?: { metric: string; label: string; distinctValues: number }[];
  action: string;
  usedMetrics: number;
  usageKnown: boolean;
  unusedMetrics?: number;
  series?: number;
  samplesPerSecond?: number;
  top?: { metric: string; series: number; samplesPerSecond: number }[];
  usedBy?: { metric: string; sources: string[] }[];
  sourceProblems?: string[];
}

describe('usage-aware governance: rules and dashboards -> operator -> proxy -> Prometheus', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let receiver: PrometheusReceiver;
  let proxy: ProxyProgram;
  let kubectl: ReturnType<typeof kubectlOrThrow>;

  const apply = (obj: unknown) => kubectl(['apply', '-f', '-'], JSON.stringify(obj));
  const dashboard = (name: string, files: Record<string, string>) =>
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: apps, labels: { grafana_dashboard: '1' } },
      data: files,
    });
  const unusedStatus = async (name: string): Promise<UnusedStatus | undefined> => {
    const p = JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', name, '-o', 'json'])) as {
      status?: { unused?: UnusedStatus };
    };
    return p.status?.unused;
  };
  /** Samples of `metric` the receiver got in the last `seconds`. */
  const recent = async (metric: string, seconds = 3) => {
    const [r] = await receiver.query(`sum(count_over_time(${metric}[${seconds}s]))`);
    return r?.value ?? 0;
  };
  const usageYaml = async () => {
    const cm = JSON.parse(await kubectl(['-n', system, 'get', 'configmap', CONFIG_MAP, '-o', 'json'])) as {
      data: Record<string, string>;
    };
    return cm.data['usage.yaml'] ?? '';
  };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    await plane.apply(fixture('prometheusrule-crd.yaml'));
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);

    // The rules and the dashboards the cluster already has.
    const rules = parse(fixture('rules-shop.yaml')) as { metadata: { namespace: string } };
    rules.metadata.namespace = apps;
    await apply(rules);
    await dashboard('shop-dashboards', {
      'shop.json': fixture('dashboard-shop.json'),
      'legacy.json': fixture('dashboard-legacy.json'),
    });

    ({ receiver, proxy } = await startGovernedStack({ plane, namespace: system, track }));

    const target = track(await startTarget());
    target.setSeries([
      // Read by the rules and the dashboards.
      { name: 'shop_requests_total', labels: { code: '200', job: 'shop' }, value: 10 },
      { name: 'shop_queue_depth', labels: { job: 'shop' }, value: 3 },
      // Read only `by (cart)`: pod is a label nothing depends on.
      { name: 'shop_cart_items', labels: { cart: 'c1', pod: 'p1' }, value: 2 },
      { name: 'shop_cart_items', labels: { cart: 'c1', pod: 'p2' }, value: 3 },
      // Read by no one: three series of one metric, one of another.
      { name: 'shop_debug_cache_entries', labels: { shard: 'a' }, value: 1 },
      { name: 'shop_debug_cache_entries', labels: { shard: 'b' }, value: 1 },
      { name: 'shop_debug_cache_entries', labels: { shard: 'c' }, value: 1 },
      { name: 'shop_internal_retries', value: 5 },
      // Read by no one, but kept by the policy.
      { name: 'shop_keep_build_version', labels: { version: '1.2.3' }, value: 1 },
    ]);
    track(await startVmagent({ remoteWriteUrl: proxy.writeUrl, scrapeTargets: [target.address] }));
    await eventually(async () => expect(await recent('shop_requests_total')).toBeGreaterThan(0), {
      timeoutMs: 20_000,
    });
  });

  it('reports, then drops, what no rule or dashboard reads; a new dashboard brings a metric back', async () => {
    await applyPolicy(plane, apps, 'unused', { unused: { action: 'report', keep: ['shop_keep_.*', 'up'] } });

    // The operator rendered what the rules and dashboards read.
    await eventually(
      async () => {
        const text = await usageYaml();
        for (const m of [
          'shop_requests_total',
          'shop_queue_depth',
          'shop_cart_items',
          'job:shop_requests:rate5m',
        ])
          expect(text).toContain(`"name":"${m}"`);
        expect(text).not.toContain('shop_debug_cache_entries');
      },
      { timeoutMs: 15_000 },
    );

    // Report mode: everything still arrives, and the status names the unread metrics.
    await eventually(
      async () => {
        const u = await unusedStatus('unused');
        expect(u).toMatchObject({ action: 'report', usageKnown: true });
        expect(u?.top).toContainEqual(
          expect.objectContaining({ metric: 'shop_debug_cache_entries', series: 3 }),
        );
        expect(u?.top).toContainEqual(
          expect.objectContaining({ metric: 'shop_internal_retries', series: 1 }),
        );
        expect(u?.top?.map((t) => t.metric)).not.toContain('shop_requests_total');
        expect(u?.top?.map((t) => t.metric)).not.toContain('shop_keep_build_version');
        expect(u?.series).toBeGreaterThanOrEqual(4);
        expect(u?.usedBy).toContainEqual({
          metric: 'job:shop_request_latency:p99',
          sources: [`PrometheusRule ${apps}/shop-rules`],
        });
        // The dashboard's broken panel is named; the rest of the dashboard counts.
        expect(u?.sourceProblems).toEqual([
          `Dashboard ${apps}/shop-dashboards/shop.json: panel "Broken panel" target A: unexpected end of expression at column 42`,
        ]);
      },
      { timeoutMs: 20_000 },
    );
    expect(await recent('shop_debug_cache_entries')).toBeGreaterThan(0);
    expect(await recent('shop_internal_retries')).toBeGreaterThan(0);

    // The proxy's own report says the same.
    const report = (await (await fetch(`${proxy.url}/api/v1/stats/unused?limit=50`)).json()) as {
      usageDocuments: number;
      policies: { policy: string; action: string; metrics: { metric: string; activeSeries: number }[] }[];
    };
    expect(report.usageDocuments).toBe(1);
    expect(report.policies[0]).toMatchObject({ policy: `${apps}/unused`, action: 'report' });
    expect(report.policies[0]?.metrics).toContainEqual(
      expect.objectContaining({ metric: 'shop_debug_cache_entries', activeSeries: 3 }),
    );

    // `kubectl get mp -o wide` shows the series dropping them would save.
    await eventually(async () => {
      const [header, row] = (await kubectl(['-n', apps, 'get', 'mp', '-o', 'wide'])).trim().split('\n');
      expect(header).toMatch(/\sUNUSED SERIES\s/);
      const col = header!.indexOf('UNUSED SERIES');
      expect(Number(row!.slice(col).split(/\s+/)[0])).toBeGreaterThanOrEqual(4);
    });

    // Drop mode: only what is read, and what is kept, arrives.
    await applyPolicy(plane, apps, 'unused', { unused: { action: 'drop', keep: ['shop_keep_.*', 'up'] } });
    await eventually(
      async () => {
        expect(await recent('shop_debug_cache_entries', 2)).toBe(0);
        expect(await recent('shop_internal_retries', 2)).toBe(0);
      },
      { timeoutMs: 20_000 },
    );
    expect(await recent('shop_requests_total', 2)).toBeGreaterThan(0);
    expect(await recent('shop_queue_depth', 2)).toBeGreaterThan(0);
    expect(await recent('shop_cart_items', 2)).toBeGreaterThan(0);
    expect(await recent('shop_keep_build_version', 2)).toBeGreaterThan(0);
    expect(
      await proxy.metric('cardinal_proxy_policy_samples_total', {
        policy: `${apps}/unused`,
        reason: 'metric_unused',
        action: 'dropped',
      }),
    ).toBeGreaterThan(0);
    // The saving is still reported while the series are dropped.
    await eventually(async () => expect((await unusedStatus('unused'))?.action).toBe('drop'), {
      timeoutMs: 15_000,
    });
    expect((await unusedStatus('unused'))?.top).toContainEqual(
      expect.objectContaining({ metric: 'shop_debug_cache_entries', series: 3 }),
    );

    // A new dashboard reads the debug metric: it is used again, and arrives again.
    await dashboard('cache-dashboard', {
      'cache.json': JSON.stringify({
        title: 'Cache',
        panels: [
          { title: 'Entries', targets: [{ refId: 'A', expr: 'sum by (shard) (shop_debug_cache_entries)' }] },
        ],
      }),
    });
    await eventually(async () => expect(await recent('shop_debug_cache_entries', 2)).toBeGreaterThan(0), {
      timeoutMs: 20_000,
    });
    expect(await recent('shop_internal_retries', 2)).toBe(0);
    await eventually(
      async () => {
        const u = await unusedStatus('unused');
        expect(u?.top?.map((t) => t.metric)).not.toContain('shop_debug_cache_entries');
        expect(u?.top?.map((t) => t.metric)).toContain('shop_internal_retries');
      },
      { timeoutMs: 15_000 },
    );

    // Labels: shop_cart_items is read only by cart, so pod (and the scrape's job and instance)
    // is aggregated away; the two pods' series arrive as one, their values summed.
    await applyPolicy(plane, apps, 'unused', {
      unused: { action: 'drop', keep: ['shop_keep_.*', 'up'], labels: 'aggregate' },
    });
    await eventually(
      async () => {
        const rows = await receiver.query(
          'last_over_time(shop_cart_items{pod="__cardinal_aggregated__"}[2s])',
        );
        expect(rows).toHaveLength(1);
        expect(rows[0]?.labels).toMatchObject({ cart: 'c1', pod: '__cardinal_aggregated__' });
        expect(rows[0]?.value).toBe(5);
      },
      { timeoutMs: 20_000 },
    );
    await eventually(async () => expect(await recent('shop_cart_items{pod="p1"}', 2)).toBe(0), {
      timeoutMs: 15_000,
    });
    // A metric read raw (a panel without aggregation) keeps every label.
    const depth = await receiver.query('last_over_time(shop_queue_depth[2s])');
    expect(depth).toHaveLength(1);
    expect(depth[0]?.labels.instance).not.toBe('__cardinal_aggregated__');
    await eventually(
      async () => {
        const u = await unusedStatus('unused');
        expect(u?.labels).toContainEqual({ metric: 'shop_cart_items', label: 'pod', distinctValues: 2 });
      },
      { timeoutMs: 15_000 },
    );
  });
});
