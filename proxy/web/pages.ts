// The proxy's web pages: what it is doing, for a person with a browser. Server-rendered HTML,
// read-only (the playground computes, it changes nothing), behind the same credentials as the
// admin API, every value escaped (html.ts), and a Content-Security-Policy that allows only the
// proxy's own stylesheet and scripts.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { readConfigFile } from '../../policy/load.js';
import { checkPolicies, checkUsage } from '../../policy/validate.js';
import type { Label } from '../codec/types.js';
import type { PolicySummary } from '../config/summary.js';
import { compilePipeline, compileProblems, type Pipeline } from '../pipeline/compile.js';
import type { PolicyEngine } from '../pipeline/engine.js';
import { PluginGuard } from '../pipeline/plugins/guard.js';
import type { StagePlugins } from '../pipeline/plugins/load.js';
import { formatSeries, parseSeriesFile } from '../pipeline/series.js';
import { type SeriesResult, simulate } from '../pipeline/simulate.js';
import type { QueueGauges } from '../queue/metrics.js';
import {
  type LimitsReport,
  type LimitUse,
  limitsReport,
  MAX_COUNTED,
  type PolicyLimitFill,
} from '../stats/limits.js';
import type { ProxyMetrics } from '../stats/metrics.js';
import { type PolicyStats, slotKey } from '../stats/policy-stats.js';
import type { TopOffendersReport } from '../stats/top-offenders.js';
import type { UnusedReport } from '../stats/unused.js';
import { CSS, SCRIPT, uplotAssets } from './assets.js';
import type { History } from './history.js';
import { type Fragment, html, jsonBlock, page, table } from './html.js';

/** Read-path usage (queries the proxy sees), when a source provides it; see the unused page. */
export interface ReadUsage {
  readonly rows: readonly {
    readonly metric: string;
    readonly readers: readonly string[];
    readonly lastReadAt?: string;
  }[];
}

export interface WebDeps {
  readonly version: string;
  readonly upstreamUrl: string;
  readonly configStatus: () => {
    hash: string;
    loadedAt: Date;
    files: readonly string[];
    policyDetails: readonly PolicySummary[];
    lastError: { message: string; at: Date } | undefined;
  };
  readonly engine: PolicyEngine;
  readonly policyStats: PolicyStats;
  readonly metrics: ProxyMetrics;
  readonly history: History;
  /** With --workers N the whole proxy's (proxy/workers/stats.ts). */
  readonly topOffenders: (limit: number) => TopOffendersReport | Promise<TopOffendersReport>;
  readonly unused?: ((limit: number) => UnusedReport | Promise<UnusedReport>) | undefined;
  /** With --workers N the totals over every worker's queues (proxy/workers/queues.ts). */
  readonly queues?: (() => Record<string, QueueGauges> | Promise<Record<string, QueueGauges>>) | undefined;
  /**
   * Counters by name, as /metrics counts them: with --workers N the whole proxy's, from the
   * primary's merge (proxy/workers/primary.ts); without, this process's registry.
   */
  readonly counters?: ((names: readonly string[]) => Promise<CounterJson[]>) | undefined;
  /** GET /api/v1/stats/limits with each policy's `perPolicy` fullest: with --workers N every worker's. */
  readonly limits?: ((perPolicy: number) => Promise<LimitsReport>) | undefined;
  /** Hook for read-path usage; absent, the unused page says it is not collected. */
  readonly readUsage?: (() => ReadUsage) | undefined;
  readonly ready: () => boolean;
  /** The stage plugins the proxy loaded (--stage.plugin): the playground's policies may name them. */
  readonly plugins?: StagePlugins | undefined;
}

/** Every page and asset answers with this; inline scripts and styles are not allowed. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const PLAYGROUND_MAX_BYTES = 256 * 1024;
/** Limits in use listed per policy for /policies: as many as the store counts in one report. */
const PAGE_LIMITS = MAX_COUNTED;
const PLAYGROUND_MAX_SERIES = 1000;

export function registerPages(app: FastifyInstance, deps: WebDeps): void {
  const uplot = uplotAssets();
  const admin = { config: { access: 'admin' as const } };
  const send = (reply: FastifyReply, body: string, type = 'text/html; charset=utf-8') =>
    reply
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .type(type)
      .send(body);
  const asset = (path: string, type: string, body: string) =>
    app.get(path, admin, async (_req, reply) =>
      send(reply, body, type).header('cache-control', 'max-age=3600'),
    );
  asset('/static/cardinal.css', 'text/css; charset=utf-8', CSS);
  asset('/static/pages.js', 'text/javascript; charset=utf-8', SCRIPT);
  asset('/static/uplot.iife.min.js', 'text/javascript; charset=utf-8', uplot.js);
  asset('/static/uplot.min.css', 'text/css; charset=utf-8', uplot.css);

  // The playground runs the proxy's plugins under a guard of its own, so what it tries is neither
  // counted nor logged as the traffic's plugin failures.
  const playgroundPlugins: StagePlugins | undefined =
    deps.plugins === undefined
      ? undefined
      : { byName: deps.plugins.byName, guard: new PluginGuard({ timeoutMs: deps.plugins.guard.timeoutMs }) };
  const render = (path: string, title: string, body: Fragment, charts = false) =>
    page({ title, path, version: deps.version, body, charts });

  app.get('/', admin, async (_req, reply) => send(reply, render('/', 'Overview', await overview(deps))));
  app.get('/policies', admin, async (_req, reply) =>
    send(reply, render('/policies', 'Policies', await policies(deps))),
  );
  app.get('/offenders', admin, async (_req, reply) =>
    send(reply, render('/offenders', 'Top offenders', await offenders(deps), true)),
  );
  app.get('/unused', admin, async (_req, reply) =>
    send(reply, render('/unused', 'Unused metrics', await unused(deps))),
  );
  app.get('/playground', admin, async (_req, reply) =>
    send(reply, render('/playground', 'Playground', playground(deps, undefined, playgroundPlugins))),
  );
  app.post('/playground', { ...admin, bodyLimit: PLAYGROUND_MAX_BYTES }, async (req, reply) => {
    const form = new URLSearchParams(Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '');
    const input = {
      series: form.get('series') ?? '',
      policies: form.get('policies') ?? '',
      tenant: form.get('tenant') ?? '',
    };
    return send(reply, render('/playground', 'Playground', playground(deps, input, playgroundPlugins)));
  });
}

// ---------------------------------------------------------------------------------------------

async function overview(deps: WebDeps): Promise<Fragment> {
  const s = deps.configStatus();
  const attempts = await counterValues(deps, 'cardinal_proxy_forward_attempts_total');
  const queues = (await deps.queues?.()) ?? {};
  return html`
<dl>
<dt>Version</dt><dd>${deps.version}</dd>
<dt>Ready</dt><dd>${deps.ready() ? html`<span class="ok">yes</span>` : html`<span class="bad">no</span>`}</dd>
<dt>Upstream</dt><dd><code>${deps.upstreamUrl}</code></dd>
<dt>Configuration</dt><dd><code>${s.hash.slice(0, 12)}</code>, loaded ${s.loadedAt.toISOString()} from ${s.files.length} file(s), ${s.policyDetails.length} polic${s.policyDetails.length === 1 ? 'y' : 'ies'}</dd>
<dt>Last reload</dt><dd>${
    s.lastError === undefined
      ? html`<span class="ok">accepted</span>`
      : html`<span class="bad">rejected at ${s.lastError.at.toISOString()}</span>; the configuration above stays in force:<pre class="problems">${s.lastError.message}</pre>`
  }</dd>
</dl>
<h2>Upstream attempts</h2>
${table(
  ['labels', 'attempts'],
  attempts.map((a) => [labelText(a.labels), a.value]),
  'No request was forwarded yet.',
  [1],
)}
<h2>Queues</h2>
${table(
  ['queue', 'bytes', 'of', 'segments', 'oldest (s)', 'full'],
  Object.entries(queues).map(([name, q]) => [
    name,
    q.bytes,
    q.maxBytes,
    q.segments,
    Math.round(q.oldestAgeSeconds),
    q.full ? 'yes' : 'no',
  ]),
  'No durable queue (--queue.dir): requests are answered once the upstream accepted them.',
  [1, 2, 3, 4],
)}
<h2>APIs</h2>
<ul>
${[
  ['/api/v1/status/config', 'configuration status (JSON)'],
  ['/api/v1/stats/top-offenders', 'top offenders (JSON)'],
  ['/api/v1/stats/unused', 'unused metrics (JSON)'],
  ['/metrics', "the proxy's own metrics"],
  ['/-/healthy', 'liveness'],
  ['/-/ready', 'readiness'],
].map(([href, what]) => html`<li><a href="${href}">${href}</a>: ${what}</li>`)}
</ul>`;
}

async function policies(deps: WebDeps): Promise<Fragment> {
  const s = deps.configStatus();
  const totals = await policyTotals(deps);
  const nowMs = Date.now();
  const recent = deps.history.increase(totals, nowMs, 5 * 60_000);
  const pipeline = deps.engine.pipeline;
  if (s.policyDetails.length === 0)
    return html`<p class="empty">No policies are loaded: every series is forwarded as it came.</p>`;
  // Every limit in use, each count the shared store's when there is one (all workers, all replicas).
  const report = await (deps.limits?.(PAGE_LIMITS) ?? limitsReport(deps.engine, nowMs, PAGE_LIMITS));
  const fill = new Map(report.policies.map((f) => [f.policy, f]));
  return html`<p class="note">Policies in the order they apply. Samples per rule since the proxy started (as <code>cardinal_proxy_policy_samples_total</code> counts them), and over the last ${Math.round(recent.span / 1000)} s (up to 5 minutes).</p>
${s.policyDetails.map((p) => {
  const compiled = pipeline.policies.find((c) => c.id === p.id);
  // The tenant limit's counter exists for every policy with limits; show it only when configured.
  const slots = pipeline.slots.filter(
    (x) =>
      x.policy === p.id &&
      (x.reason !== 'tenant_series_limit' || compiled?.limits?.perTenantMaxSeries !== undefined),
  );
  const seen = new Set<string>();
  const rows = slots
    .filter((x) => {
      const k = slotKey(x);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    })
    .map((x) => {
      const k = slotKey(x);
      return [x.rule, x.reason, x.action, totals.get(k) ?? 0, recent.by.get(k) ?? 0] as const;
    });
  return html`<h2 id="${p.id}">${p.id} <span class="note">${p.mode}, priority ${p.priority}</span></h2>
<p class="note">${p.source}${p.selector === null ? '' : html` · selector <code>${p.selector}</code>`}${p.tenants === null ? '' : html` · tenants ${p.tenants.join(', ')}`} · rules: ${p.rules.relabel} relabel, ${p.rules.drop} drop, ${p.rules.standards} standards, ${p.rules.limits} limits, ${p.rules.unused} unused</p>
${table(['rule', 'reason', 'action', 'samples', 'last 5 min'], rows, 'No rules.', [3, 4])}
${compiled?.limits === undefined ? '' : limitFullness(deps.engine, compiled.index, fill.get(p.id))}`;
})}`;
}

/**
 * How full each limit is: per rule, its fullest metric (active series or label values against the
 * limit) and how many metrics are at it, from the limits report (GET /api/v1/stats/limits).
 */
function limitFullness(
  engine: PolicyEngine,
  policyIndex: number,
  fill: PolicyLimitFill | undefined,
): Fragment {
  const policy = engine.pipeline.policies[policyIndex]!;
  const limits = policy.limits!;
  if (fill === undefined) return html``;
  const rows: (string | number)[][] = [];
  const rule = (id: string, max: number, name: string) => {
    let best: LimitUse | undefined;
    let atLimit = 0;
    for (const u of fill.limits) {
      if (u.limit !== id) continue;
      if (u.current >= max) atLimit++;
      if (best === undefined || u.current > best.current) best = u;
    }
    const n = best?.current ?? 0;
    rows.push([name, best?.metric ?? '-', n, max, `${Math.round((100 * n) / max)}%`, atLimit]);
  };
  limits.perMetric.forEach((m, i) => {
    const id = `perMetric[${i}]`;
    rule(id, m.maxSeries, `${engine.pipeline.slots[m.slot]?.rule ?? `limits.${id}`}: ${m.metric.source}`);
  });
  limits.perLabel.forEach((l, i) => {
    const id = `perLabel[${i}]`;
    rule(id, l.maxValues, `${engine.pipeline.slots[l.slot]?.rule ?? `limits.${id}`}: label ${l.label}`);
  });
  const scope = fill.global
    ? html`<p class="note">Counts over every worker and replica (the shared limit store's).</p>`
    : '';
  return html`<h3>Limits (window ${Math.round(limits.windowMs / 1000)} s)</h3>
${scope}${table(['limit', 'fullest metric', 'active', 'limit', 'full', 'metrics at the limit'], rows, 'No limits.', [2, 3, 4, 5])}`;
}

/**
 * With --workers N a report says how many workers' counts it merged (proxy/workers/stats.ts); a
 * page says so when some did not answer.
 */
function workersNote(report: object | undefined): Fragment {
  const w = (report as { workers?: { answered: number; of: number } } | undefined)?.workers;
  if (w === undefined) return html``;
  return w.answered < w.of
    ? html`<p class="bad">Counts of ${w.answered} of ${w.of} workers: the others did not answer in time.</p>`
    : html`<p class="note">Counts of all ${w.of} workers together.</p>`;
}

async function offenders(deps: WebDeps): Promise<Fragment> {
  const report = await deps.topOffenders(20);
  const metrics = report.metrics.map((m) => m.metric);
  const history = deps.history.seriesHistory(metrics);
  return html`${workersNote(report)}<p class="note">Active series are those seen within the statistics window (${Math.round(deps.history.options.windowMs / 1000)} s); the sparklines sample them every ${Math.round(deps.history.options.intervalMs / 1000)} s.</p>
<h2>Metrics by active series</h2>
${table(
  ['metric', 'active series', 'growth', 'over the window'],
  report.metrics.map((m) => [
    m.metric,
    m.activeSeries,
    growth(history.series[m.metric] ?? [], m.activeSeries),
    html`<span class="spark" data-metric="${m.metric}"></span>`,
  ]),
  'No series are tracked yet (limits track them: a policy with limits is needed).',
  [1, 2],
)}
<h2>Labels by distinct values</h2>
${table(
  ['metric', 'label', 'distinct values'],
  report.labels.map((l) => [l.metric, l.label, l.distinctValues]),
  'No per-label limits.',
  [2],
)}
<h2>Dropped samples</h2>
${table(
  ['metric', 'policy', 'reason', 'samples'],
  report.drops.map((d) => [d.metric, d.policy, d.reason, d.samples]),
  'Nothing was dropped.',
  [3],
)}
${jsonBlock('history', history)}`;
}

/** Active series now against the oldest sample of the window: `+12`, `-3` or `0`. */
function growth(samples: readonly (number | null)[], now: number): string {
  const first = samples.find((v) => v !== null);
  if (first === undefined || first === null) return '';
  const d = now - first;
  return d > 0 ? `+${d}` : String(d);
}

async function unused(deps: WebDeps): Promise<Fragment> {
  const report = await deps.unused?.(50);
  const read = deps.readUsage?.();
  return html`${workersNote(report)}${
    report === undefined
      ? html`<p class="empty">The unused statistics are off.</p>`
      : html`<p class="note">${report.usageDocuments} MetricUsage document(s) loaded: what rules and dashboards read, as the operator renders it.</p>
${report.policies.map(
  (p) => html`<h2>${p.policy} <span class="note">${p.action}, ${p.mode}</span></h2>
${
  p.usageKnown
    ? html`<p>${p.unusedMetrics} unused metric(s) with ${p.activeSeries} active series, ${p.samplesPerSecond.toFixed(1)} samples/s; ${p.usedMetrics} read.</p>
${table(
  ['metric', 'active series', 'samples/s'],
  p.metrics.map((m) => [m.metric, m.activeSeries, m.samplesPerSecond.toFixed(2)]),
  'Every metric is read.',
  [1, 2],
)}
${
  p.labels.length === 0
    ? ''
    : table(
        ['metric', 'unread label', 'distinct values'],
        p.labels.map((l) => [l.metric, l.label, l.distinctValues]),
        '',
        [2],
      )
}`
    : html`<p class="empty">No usage is known (no MetricUsage document and no listed metrics): this policy judges nothing.</p>`
}`,
)}
<h2>Read metrics</h2>
${table(
  ['metric', 'read by', 'sources'],
  report.used.map((u) => [u.metric, u.sources.join(', '), u.sourceCount]),
  'No metric is known to be read.',
  [2],
)}`
  }
<h2>Read-path usage</h2>
${
  read === undefined
    ? html`<p class="note">Queries that pass through this proxy are not collected by this version; usage comes from MetricUsage documents only.</p>`
    : table(
        ['metric', 'read by', 'last read'],
        read.rows.map((r) => [r.metric, r.readers.join(', '), r.lastReadAt ?? '']),
        'No reads seen.',
      )
}`;
}

// ---------------------------------------------------------------------------------------------
// Playground: the series and policies given, through the same loader, validator, compiler and
// engine as the proxy's own configuration and traffic.

interface PlaygroundInput {
  readonly series: string;
  readonly policies: string;
  readonly tenant: string;
}

const EXAMPLE_SERIES = `http_requests_total{job="api",path="/users/42",code="200"} 1
debug_cache_hits_total{job="api"} 3
up{job="api"} 1`;

const EXAMPLE_POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: example
  namespace: platform
spec:
  drop:
    - debug_.*
  relabel:
    - action: labeldrop
      regex: path`;

function playground(
  deps: WebDeps,
  input: PlaygroundInput | undefined,
  plugins: StagePlugins | undefined,
): Fragment {
  const form = html`<form method="post" action="/playground">
<div class="cols">
<label>Series, one a line (exposition text or <code>metric{label="value"}</code>)<br><textarea name="series" spellcheck="false">${input?.series ?? EXAMPLE_SERIES}</textarea></label>
<label>MetricPolicy YAML (empty: the policies this proxy runs)<br><textarea name="policies" spellcheck="false">${input?.policies ?? EXAMPLE_POLICY}</textarea></label>
</div>
<p><label>Tenant <input name="tenant" value="${input?.tenant ?? ''}"></label> <button type="submit">Evaluate</button></p>
</form>`;
  if (input === undefined) return form;
  const { pipeline, problems } = playgroundPipeline(deps, input.policies, plugins);
  const parsed = parseSeriesFile(input.series);
  const all = [...problems, ...parsed.problems.map((p) => `series: ${p}`)];
  if (parsed.series.length > PLAYGROUND_MAX_SERIES)
    all.push(`series: at most ${PLAYGROUND_MAX_SERIES} at a time`);
  if (all.length > 0 || pipeline === undefined) {
    return html`${form}<h2>Problems</h2><pre class="problems" id="problems">${all.join('\n')}</pre>`;
  }
  const results = simulate(pipeline, parsed.series, {
    tenant: input.tenant === '' ? undefined : input.tenant,
  });
  return html`${form}<h2>Verdicts</h2>
${table(
  ['series', 'verdict', 'forwarded as', 'rules'],
  results.map((r) => [
    formatSeries(r.input as Label[]),
    html`<span class="verdict">${r.outcome}</span>`,
    r.output === null ? '-' : formatSeries(r.output as Label[]),
    r.hits
      .map((h) => `${h.policy} ${h.rule} ${h.reason} (${h.action}${h.mode === 'dryRun' ? ', dry run' : ''})`)
      .join('; ') || '-',
  ]),
)}
<h2>Step by step</h2>
${results.map((r) => steps(r))}`;
}

function steps(r: SeriesResult): Fragment {
  return html`<h3><code>${formatSeries(r.input as Label[])}</code></h3>
${table(
  ['policy', 'matched', 'labels after its match, relabel, drop, unused and standards stages'],
  r.steps.map((s) => [
    s.policy + (s.dryRun ? ' (dry run)' : ''),
    s.matched ? 'yes' : 'no',
    s.labels === null ? 'dropped' : formatSeries(s.labels as Label[]),
  ]),
  'No policies.',
)}
<p class="note">After the limits: ${r.output === null ? 'dropped' : formatSeries(r.output as Label[])}</p>`;
}

function playgroundPipeline(
  deps: WebDeps,
  text: string,
  plugins: StagePlugins | undefined,
): { pipeline: Pipeline | undefined; problems: string[] } {
  if (text.trim() === '') return { pipeline: deps.engine.pipeline, problems: [] };
  const read = readConfigFile('policies', text);
  const p = checkPolicies(read.policies);
  const u = checkUsage(read.usage);
  const problems = [
    ...read.problems,
    ...p.problems,
    ...u.problems,
    // What compiling with the proxy's plugins finds: a plugin's config, a plugin not loaded.
    ...compileProblems(p.policies, u.usage, plugins),
  ].map((x) => `${x.where}: ${x.message}`);
  if (problems.length > 0) return { pipeline: undefined, problems };
  return { pipeline: compilePipeline(p.policies, u.usage, plugins), problems: [] };
}

// ---------------------------------------------------------------------------------------------

/** A counter as prom-client's getMetricsAsJSON gives it. */
export interface CounterJson {
  readonly name: string;
  readonly values: readonly {
    readonly labels: Partial<Record<string, string | number>>;
    readonly value: number;
  }[];
}

async function counterValues(
  deps: Pick<WebDeps, 'counters' | 'metrics'>,
  name: string,
): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const json =
    deps.counters === undefined
      ? [await deps.metrics.registry.getSingleMetric(name)?.get()]
      : await deps.counters([name]);
  const m = json.find((c) => c?.name === name);
  return (m?.values ?? []).map((v) => ({
    labels: v.labels as Record<string, string | number>,
    value: v.value,
  }));
}

/** Samples per rule since start, by slotKey, from cardinal_proxy_policy_samples_total. */
export async function policyTotals(
  deps: Pick<WebDeps, 'counters' | 'metrics'>,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const v of await counterValues(deps, 'cardinal_proxy_policy_samples_total')) {
    const l = v.labels;
    const k = slotKey({
      policy: String(l.policy),
      rule: String(l.rule),
      reason: String(l.reason),
      action: String(l.action),
      mode: String(l.mode),
    });
    out.set(k, (out.get(k) ?? 0) + v.value);
  }
  return out;
}

function labelText(labels: Record<string, string | number>): string {
  return (
    Object.entries(labels)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(', ') || '(none)'
  );
}
