// The Grafana dashboard the chart ships (charts/cardinal/dashboards/cardinal.json) against the
// metrics the programs really export. Grafana shows "No data" for a misspelled metric instead of
// an error, so every query is checked here: the metric names each PromQL expression refers to must
// appear on the real proxy's /metrics (after one remote-write request that a policy partly drops)
// or in the operator's registry.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOperatorMetrics } from '../../operator/controller/metrics.js';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import { projectConfigMap, startProxy, startSink, useCleanup } from '../framework/index.js';

// Grafana's reference to the data source template variable, literally.
const DATASOURCE = { type: 'prometheus', uid: '$' + '{datasource}' };

const DASHBOARD_PATH = fileURLToPath(
  new URL('../../charts/cardinal/dashboards/cardinal.json', import.meta.url),
);

const POLICIES = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: drop-debug
  namespace: platform
spec:
  drop:
    - cardinal_dashboard_debug_.*
`;

interface DataSourceRef {
  type?: string;
  uid?: string;
}

interface Target {
  refId?: string;
  expr?: string;
  datasource?: DataSourceRef;
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: DataSourceRef;
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}

interface Variable {
  type: string;
  name: string;
  query?: string | { query?: string };
  datasource?: DataSourceRef;
}

interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

/** Every panel, rows and the panels of collapsed rows included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** What a query variable asks; for `label_values(selector, label)` the selector. */
function variableSelector(v: Variable): string | undefined {
  const query = typeof v.query === 'string' ? v.query : v.query?.query;
  if (query === undefined) return undefined;
  const labelValues = /^\s*label_values\((.*),\s*\w+\)\s*$/.exec(query);
  return labelValues?.[1] ?? query;
}

/** Every PromQL expression of the dashboard, with where it is, for messages. */
function expressions(dashboard: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of allPanels(dashboard.panels)) {
    for (const t of p.targets ?? []) {
      if (t.expr !== undefined) out.push({ where: `panel "${p.title}" query ${t.refId}`, expr: t.expr });
    }
  }
  for (const v of dashboard.templating.list) {
    const selector = v.type === 'query' ? variableSelector(v) : undefined;
    if (selector !== undefined) out.push({ where: `variable ${v.name}`, expr: selector });
  }
  return out;
}

// PromQL words that look like identifiers but name no metric (the operators and modifiers of
// https://prometheus.io/docs/prometheus/latest/querying/operators/).
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'atan2',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: identifiers that are neither a function or
 * aggregation (followed by a parenthesis), a keyword, a label (inside braces or a grouping clause),
 * a string, a duration nor a Grafana variable; and `__name__` matchers.
 */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  for (const m of expr.matchAll(/__name__\s*=\s*"([^"]+)"/g)) names.add(m[1]!);
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  for (const m of bare.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const name = m[1]!;
    if (m[2] === undefined && !KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}

/**
 * The series names an exposition declares: each `# TYPE`'s name, for a histogram its `_bucket`,
 * `_sum` and `_count` instead, for a summary those two as well; and each sample's name. A
 * declared counter with no samples yet (no retry happened) still counts: it is exported.
 */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type !== null) {
      const [, name, kind] = type as unknown as [string, string, string];
      // A classic histogram has no series of its bare name.
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      else names.add(name);
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(/^[^{\s]+/.exec(line)![0]);
    }
  }
  return names;
}

/** Names the dashboard's expressions refer to that `exported` lacks, as "where: name". */
function unexported(dashboard: Dashboard, exported: ReadonlySet<string>): string[] {
  return expressions(dashboard).flatMap(({ where, expr }) =>
    metricNames(expr)
      .filter((n) => !exported.has(n))
      .map((n) => `${where}: ${n}`),
  );
}

const loadDashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;

describe('Grafana dashboard', () => {
  const track = useCleanup();
  let exported: Set<string>;

  beforeAll(async () => {
    const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-dashboard-')), 'config');
    await projectConfigMap(configDir, { 'policies.yaml': POLICIES });
    const sink = track(await startSink());
    // With a queue and the push routes on, so that their metrics are exported too (the Pushgateway
    // address is never contacted: nothing is pushed).
    const proxy = track(
      await startProxy({
        upstream: sink.url,
        args: (dir) => [
          '--config',
          configDir,
          '--queue.dir',
          join(dir, 'queue'),
          '--pushgateway',
          'http://127.0.0.1:9',
          // And the read path, never queried: its metrics are exported all the same.
          '--query.upstream',
          'http://127.0.0.1:9',
        ],
      }),
    );
    const now = Date.now();
    const series = (name: string) => ({
      labels: [
        { name: '__name__', value: name },
        { name: 'pod', value: 'a' },
      ],
      samples: [{ value: 1, timestamp: now }],
      exemplars: [],
      histograms: [],
    });
    const res = await fetch(proxy.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: snappyEncode(
        encodeWriteRequestV1({
          timeseries: [series('cardinal_dashboard_debug_depth'), series('cardinal_dashboard_kept')],
          metadata: [],
        }),
      ),
    });
    expect(res.status).toBe(204);
    // The request went through policy, statistics and forwarder: the counters the panels chart exist.
    expect(await proxy.metric('cardinal_proxy_policy_samples_total', { action: 'dropped' })).toBe(1);
    expect(await proxy.metric('cardinal_proxy_forwarded_total', { kind: 'samples' })).toBe(1);

    const proxyExposition = await (await fetch(proxy.metricsUrl)).text();
    const operatorExposition = await createOperatorMetrics('test', () => 0).registry.metrics();
    exported = exportedNames(`${proxyExposition}\n${operatorExposition}`);
    expect(exported).toContain('cardinal_proxy_forward_duration_seconds_bucket');
    expect(exported).toContain('cardinal_operator_queue_depth');
  });

  it('is a schemaVersion 39 dashboard with a Prometheus data source variable', () => {
    const dashboard = loadDashboard();
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    const datasource = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      expect(v.datasource, `variable ${v.name}`).toEqual(DATASOURCE);
    }
  });

  it('queries every panel through the data source variable', () => {
    const panels = allPanels(loadDashboard().panels).filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(20);
    for (const p of panels) {
      expect(p.datasource, `panel "${p.title}"`).toEqual(DATASOURCE);
      expect(p.targets?.length, `panel "${p.title}" has queries`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.datasource, `panel "${p.title}" query ${t.refId}`).toEqual(p.datasource);
        expect(t.expr, `panel "${p.title}" query ${t.refId}`).toMatch(/\S/);
      }
    }
  });

  it('lays panels out on the grid without overlaps, with unique ids', () => {
    const panels = allPanels(loadDashboard().panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const overlaps: string[] = [];
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const g = a.gridPos!;
        const h = b.gridPos!;
        if (g.x < h.x + h.w && h.x < g.x + g.w && g.y < h.y + h.h && h.y < g.y + g.h) {
          overlaps.push(`"${a.title}" and "${b.title}"`);
        }
        expect(g.x + g.w, `panel "${a.title}"`).toBeLessThanOrEqual(24);
      }
    }
    expect(overlaps).toEqual([]);
  });

  it('refers only to metrics the proxy and the operator export', () => {
    const dashboard = loadDashboard();
    const referred = new Set(expressions(dashboard).flatMap(({ expr }) => metricNames(expr)));
    // The panels the dashboard promises, so that the check below cannot pass by checking nothing.
    for (const name of [
      'cardinal_proxy_received_total',
      'cardinal_proxy_forwarded_total',
      'cardinal_proxy_policy_samples_total',
      'cardinal_proxy_top_metric_active_series',
      'cardinal_proxy_top_label_distinct_values',
      'cardinal_proxy_top_dropped_samples',
      'cardinal_proxy_forward_duration_seconds_bucket',
      'cardinal_proxy_forward_retries_total',
      'cardinal_proxy_requests_total',
      'cardinal_proxy_config_last_reload_successful',
      'cardinal_proxy_config_reloads_total',
      'cardinal_operator_reconciles_total',
      'cardinal_operator_queue_depth',
      'cardinal_operator_leader',
      'cardinal_proxy_queue_bytes',
      'cardinal_proxy_queue_oldest_age_seconds',
      'cardinal_proxy_queue_fsync_duration_seconds_bucket',
      'cardinal_proxy_push_problems_total',
      'controller_runtime_reconcile_time_seconds_bucket',
      'controller_runtime_reconcile_total',
      'workqueue_adds_total',
      'workqueue_retries_total',
      'workqueue_queue_duration_seconds_bucket',
      'workqueue_depth',
      'cardinal_operator_policy_condition',
    ]) {
      expect(referred).toContain(name);
    }
    expect(unexported(dashboard, exported)).toEqual([]);
  });

  it('has cluster and pod variables, and every selector of a panel honours the cluster', () => {
    const dashboard = loadDashboard();
    const names = dashboard.templating.list.map((v) => v.name);
    expect(names).toEqual(['datasource', 'cluster', 'namespace', 'job', 'pod', 'operator_job']);
    const missing = expressions(dashboard).flatMap(({ where, expr }) =>
      [...expr.matchAll(/\{([^}]*)\}/g)]
        .filter((m) => !m[1]!.includes('cluster=~"$cluster"'))
        .map(() => `${where}: ${expr}`),
    );
    // The cluster variable itself is the one query that cannot filter by cluster.
    expect(missing).toEqual([]);
    const proxySelectors = expressions(dashboard).flatMap(({ where, expr }) =>
      [...expr.matchAll(/\{([^}]*job=~"\$job[^}]*)\}/g)]
        .filter((m) => where.startsWith('panel') && !m[1]!.includes('pod=~"$pod"'))
        .map(() => `${where}: ${expr}`),
    );
    expect(proxySelectors).toEqual([]);
  });

  it('gives every rate panel a per-second unit and every latency panel seconds', () => {
    const perSecond = new Set(['cps', 'ops', 'reqps', 'rps', 'wps', 'Bps', 'binBps']);
    const wrong: string[] = [];
    for (const p of allPanels(loadDashboard().panels)) {
      const exprs = (p.targets ?? []).map((t) => t.expr ?? '');
      if (exprs.length === 0) continue;
      const unit = (p as { fieldConfig?: { defaults?: { unit?: string } } }).fieldConfig?.defaults?.unit;
      if (exprs.some((e) => e.includes('histogram_quantile'))) {
        if (unit !== 's') wrong.push(`"${p.title}": ${unit} for a latency`);
      } else if (exprs.every((e) => /\brate\(/.test(e))) {
        // The CPU used is seconds per second: a fraction of one core.
        const want = exprs.every((e) => e.includes('process_cpu_seconds_total')) ? 'percentunit' : undefined;
        if (want !== undefined ? unit !== want : !perSecond.has(unit ?? ''))
          wrong.push(`"${p.title}": ${unit} for a rate`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('would report a misspelled metric, a misspelled suffix and a name in a __name__ matcher', () => {
    const dashboard = loadDashboard();
    const panel = allPanels(dashboard.panels).find((p) => p.targets?.[0]?.expr?.includes('cardinal_proxy_'))!;
    const target = panel.targets![0]!;
    target.expr = target.expr!.replace('cardinal_proxy_', 'cardinal_prxy_');
    const problems = unexported(dashboard, exported);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith(`panel "${panel.title}" query A: cardinal_prxy_`), problems[0]).toBe(true);
    target.expr = 'histogram_quantile(0.99, sum by (le) (rate(cardinal_proxy_forward_duration_seconds[5m])))';
    expect(unexported(dashboard, exported)).toHaveLength(1);
    target.expr = 'sum(rate({__name__="cardinal_proxy_recieved_total", job=~"$job"}[$__rate_interval]))';
    expect(unexported(dashboard, exported)).toHaveLength(1);
  });

  it.each([
    [
      'sum by (le) (rate(a_bucket{job=~"$job", le!="+Inf"}[$__rate_interval])) / on (job) group_left (x) b',
      ['a_bucket', 'b'],
    ],
    ['topk(20, max by (metric) (c{x="y"})) > 0 or vector(0)', ['c']],
    ['time() - max(d_seconds offset 5m) * 1e3', ['d_seconds']],
    ['count(count by (hash) (e))', ['e']],
    ['sum without (instance) (rate(f[5m:1m]))', ['f']],
  ])('finds the metric names of %s', (expr, names) => {
    expect(metricNames(expr).sort()).toEqual(names);
  });
});
