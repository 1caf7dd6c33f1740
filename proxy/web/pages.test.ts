import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfigFile } from '../../policy/load.js';
import { validatePolicies } from '../../policy/validate.js';
import { summarizePolicies } from '../config/summary.js';
import { compilePipeline } from '../pipeline/compile.js';
import { PolicyEngine } from '../pipeline/engine.js';
import { createProxyMetrics } from '../stats/metrics.js';
import { Offenders } from '../stats/offenders.js';
import { PolicyStats } from '../stats/policy-stats.js';
import { History } from './history.js';
import { escapeHtml, html } from './html.js';
import { CONTENT_SECURITY_POLICY, registerPages } from './pages.js';

const POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: drops
  namespace: team
spec:
  drop: ["debug_.*"]
  limits:
    perMetric:
      - name: http-cap
        metric: http_.*
        maxSeries: 10
`;

describe('the web pages', () => {
  let app: FastifyInstance;
  const routes: { url: string; access: unknown }[] = [];

  beforeAll(async () => {
    const policies = validatePolicies(readConfigFile('p.yaml', POLICY).policies);
    const pipeline = compilePipeline(policies);
    const metrics = createProxyMetrics('1.2.3');
    const policyStats = new PolicyStats(metrics.registry);
    policyStats.setPipeline(pipeline);
    const engine = new PolicyEngine(
      pipeline,
      { verdictCacheSize: 100, maxTrackedSeries: 100, maxTrackedLabelValues: 100, maxMetricNames: 100 },
      policyStats,
    );
    const offenders = new Offenders(engine, { windowMs: 60_000, maxTrackedSeries: 1000, exposeTop: 5 });
    const history = new History({ intervalMs: 1000, windowMs: 60_000, topMetrics: 5 });
    history.record(0, new Map(), offenders.report(5));
    app = Fastify();
    app.addHook('onRoute', (r) => {
      routes.push({ url: r.url, access: (r.config as { access?: unknown } | undefined)?.access });
    });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    registerPages(app, {
      version: '1.2.3',
      upstreamUrl: 'http://upstream:9090/api/v1/write',
      configStatus: () => ({
        hash: 'abcdef0123456789',
        loadedAt: new Date(0),
        files: ['p.yaml'],
        policyDetails: summarizePolicies(policies),
        lastError: { message: 'p.yaml:3:5: spec.mode: <b>bad</b>', at: new Date(0) },
      }),
      engine,
      policyStats,
      metrics,
      history,
      topOffenders: (n) => offenders.report(n),
      ready: () => true,
    });
    await app.ready();
  });
  afterAll(() => app.close());

  it.each(['/', '/policies', '/offenders', '/unused', '/playground'])(
    '%s renders with a restrictive CSP',
    async (url) => {
      const res = await app.inject({ url });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
      expect(res.body).toMatch(/^<!doctype html>/);
      expect(res.body).not.toMatch(/<script>|style="/);
    },
  );

  it('every route asks for the admin credential', () => {
    expect(routes.length).toBeGreaterThan(5);
    for (const r of routes) expect(r).toMatchObject({ access: 'admin' });
  });

  it('the overview shows the rejected reload escaped, and the policies page the named rule', async () => {
    const overview = (await app.inject({ url: '/' })).body;
    expect(overview).toContain('p.yaml:3:5: spec.mode: &lt;b&gt;bad&lt;/b&gt;');
    expect(overview).not.toContain('<b>bad</b>');
    const policies = (await app.inject({ url: '/policies' })).body;
    expect(policies).toContain('team/drops');
    expect(policies).toContain('<td>http-cap</td>');
    expect(policies).toContain('<td>http-cap: http_.*</td>');
    expect(policies).not.toContain('tenant_series_limit');
  });

  it('the playground answers a form post with verdicts, escaping what was sent', async () => {
    const form = new URLSearchParams({
      series: 'debug_x{job="a"}\nhttp_total{job="<script>alert(1)</script>"}\n',
      policies: '',
      tenant: '',
    });
    const res = await app.inject({
      method: 'POST',
      url: '/playground',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: form.toString(),
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('team/drops drop[0] metric_dropped (dropped)');
    expect(res.body).toContain('<span class="verdict">dropped</span>');
    expect(res.body).toContain('<span class="verdict">kept</span>');
    expect(res.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(res.body).not.toContain('<script>alert(1)');
  });

  it('the playground shows a policy problem at its line and column', async () => {
    const form = new URLSearchParams({
      series: 'up',
      policies: POLICY.replace('drop: ["debug_.*"]', 'drop: ["(debug"]'),
    });
    const res = await app.inject({
      method: 'POST',
      url: '/playground',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: form.toString(),
    });
    expect(res.body).toContain(
      'policies:7:10: spec.drop[0]: invalid regex &quot;(debug&quot;: missing ): (debug',
    );
  });

  it('serves uPlot from the installed package', async () => {
    const res = await app.inject({ url: '/static/uplot.iife.min.js' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('uPlot');
  });
});

describe('html', () => {
  it('escapes every interpolation but nested fragments', () => {
    expect(html`<p title="${'"x"'}">${'<a>'}${html`<b>${'&'}</b>`}${[1, null, false, 'c']}</p>`.text).toBe(
      '<p title="&quot;x&quot;">&lt;a&gt;<b>&amp;</b>1c</p>',
    );
    expect(escapeHtml(`'<>&"`)).toBe('&#39;&lt;&gt;&amp;&quot;');
  });
});

describe('the web pages with --workers N', () => {
  it('show the whole proxy’s reports, and say when a worker did not answer', async () => {
    const pipeline = compilePipeline(validatePolicies(readConfigFile('p.yaml', POLICY).policies));
    const metrics = createProxyMetrics('1.2.3');
    const policyStats = new PolicyStats(metrics.registry);
    policyStats.setPipeline(pipeline);
    const engine = new PolicyEngine(
      pipeline,
      { verdictCacheSize: 100, maxTrackedSeries: 100, maxTrackedLabelValues: 100, maxMetricNames: 100 },
      policyStats,
    );
    let answered = 2;
    const app = Fastify();
    registerPages(app, {
      version: '1.2.3',
      upstreamUrl: 'http://upstream:9090/api/v1/write',
      configStatus: () => ({
        hash: 'h',
        loadedAt: new Date(0),
        files: [],
        policyDetails: [],
        lastError: undefined,
      }),
      engine,
      policyStats,
      metrics,
      history: new History({ intervalMs: 1000, windowMs: 60_000, topMetrics: 5 }),
      // As the primary answers a worker (proxy/workers/stats.ts).
      topOffenders: async () => ({
        metrics: [{ metric: 'merged_bomb', activeSeries: 4321 }],
        labels: [],
        drops: [],
        workers: { answered, of: 2 },
      }),
      unused: async () => ({
        usageDocuments: 0,
        policies: [],
        used: [],
        usedTotal: 0,
        workers: { answered, of: 2 },
      }),
      ready: () => true,
    });
    try {
      const page = (await app.inject({ url: '/offenders' })).body;
      expect(page).toContain('<td>merged_bomb</td>');
      expect(page).toContain('4321');
      expect(page).toContain('Counts of all 2 workers together.');
      answered = 1;
      expect((await app.inject({ url: '/offenders' })).body).toContain(
        'Counts of 1 of 2 workers: the others did not answer in time.',
      );
      expect((await app.inject({ url: '/unused' })).body).toContain('Counts of 1 of 2 workers');
    } finally {
      await app.close();
    }
  });

  it('show the counters and queues they are given (the whole proxy’s), not this process’s own', async () => {
    const policies = validatePolicies(readConfigFile('p.yaml', POLICY).policies);
    const pipeline = compilePipeline(policies);
    const metrics = createProxyMetrics('1.2.3');
    const policyStats = new PolicyStats(metrics.registry);
    policyStats.setPipeline(pipeline);
    const engine = new PolicyEngine(
      pipeline,
      { verdictCacheSize: 100, maxTrackedSeries: 100, maxTrackedLabelValues: 100, maxMetricNames: 100 },
      policyStats,
    );
    const slot = pipeline.slots.find((x) => x.reason === 'metric_dropped')!;
    const asked: string[][] = [];
    const app = Fastify();
    registerPages(app, {
      version: '1.2.3',
      upstreamUrl: 'http://upstream:9090/api/v1/write',
      configStatus: () => ({
        hash: 'h',
        loadedAt: new Date(0),
        files: [],
        policyDetails: summarizePolicies(policies),
        lastError: undefined,
      }),
      engine,
      policyStats,
      metrics,
      history: new History({ intervalMs: 1000, windowMs: 60_000, topMetrics: 5 }),
      topOffenders: () => ({ metrics: [], labels: [], drops: [] }),
      // As the primary merges them (proxy/workers/primary.ts).
      counters: async (names) => {
        asked.push([...names]);
        return [
          {
            name: 'cardinal_proxy_policy_samples_total',
            values: [
              {
                labels: {
                  policy: slot.policy,
                  rule: slot.rule,
                  reason: slot.reason,
                  action: slot.action,
                  mode: slot.mode,
                },
                value: 98765,
              },
            ],
          },
          {
            name: 'cardinal_proxy_forward_attempts_total',
            values: [{ labels: { outcome: 'ok' }, value: 4242 }],
          },
        ];
      },
      queues: async () => ({
        remote_write: {
          bytes: 777,
          maxBytes: 2000,
          segments: 3,
          oldestAgeSeconds: 9,
          full: false,
          diskFull: false,
        },
      }),
      ready: () => true,
    });
    try {
      const policiesPage = (await app.inject({ url: '/policies' })).body;
      expect(policiesPage).toContain('98765');
      const overview = (await app.inject({ url: '/' })).body;
      expect(overview).toContain('<td>outcome=ok</td>');
      expect(overview).toContain('4242');
      expect(overview).toContain('<td>remote_write</td>');
      expect(overview).toContain('777');
      expect(asked).toEqual([
        ['cardinal_proxy_policy_samples_total'],
        ['cardinal_proxy_forward_attempts_total'],
      ]);
    } finally {
      await app.close();
    }
  });
});
