// The proxy's web pages in a real browser (Debian's chromium via playwright-core): the real proxy
// binary with policies, data written through it into a real Prometheus, then every page is opened,
// the sparklines are drawn under the Content-Security-Policy, and the playground is used through
// its form. Screenshots go to test-results/pages/ (CARDINAL_ARTIFACTS overrides).

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import { startBrowser } from '../framework/browser.js';
import { eventually, startPrometheusReceiver, startProxy, useCleanup } from '../framework/index.js';

const ARTIFACTS =
  process.env.CARDINAL_ARTIFACTS ?? fileURLToPath(new URL('../../test-results/pages/', import.meta.url));

const POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: governance
  namespace: platform
spec:
  drop:
    - debug_.*
  relabel:
    - action: labeldrop
      regex: request_id
  limits:
    perMetric:
      - name: http-cap
        metric: http_.*
        maxSeries: 20
`;

const INGEST = 'ingest-token-Hn3kP0qWz';
const ADMIN = 'admin-token-Vb7mT2xRc';
const CREDENTIALS = `- { tenant: team-a, bearerToken: ${INGEST} }
- { tenant: ops, bearerToken: ${ADMIN}, allowedPaths: [], roles: [admin] }
`;

async function write(url: string, series: Record<string, string>[]): Promise<void> {
  const now = Date.now();
  const body = encodeWriteRequestV1({
    timeseries: series.map((s) => ({
      labels: Object.entries(s)
        .map(([name, value]) => ({ name, value }))
        .sort((a, b) => (a.name < b.name ? -1 : 1)),
      samples: [{ value: 1, timestamp: now }],
      exemplars: [],
      histograms: [],
    })),
    metadata: [],
  });
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'snappy',
      authorization: `Bearer ${INGEST}`,
    },
    body: snappyEncode(body),
  });
  expect(res.status).toBe(204);
}

describe('web pages in chromium', () => {
  const track = useCleanup();

  it('every page renders, sparklines draw under the CSP, and the playground answers', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const rx = track(await startPrometheusReceiver({ version: 2 }));
    const config = mkdtempSync(join(tmpdir(), 'cardinal-pages-'));
    writeFileSync(join(config, 'policy.yaml'), POLICY);
    const secrets = mkdtempSync(join(tmpdir(), 'cardinal-pages-auth-'));
    writeFileSync(join(secrets, 'credentials.yaml'), CREDENTIALS);
    const proxy = track(
      await startProxy({
        upstream: rx.remoteWriteUrl,
        args: () => [
          '--config',
          config,
          '--auth.credentials-file',
          join(secrets, 'credentials.yaml'),
          '--stats.sample-interval',
          '1s',
          '--stats.window',
          '1m',
        ],
      }),
    );
    // The pages need the admin credential, as the admin API does.
    for (const path of ['/', '/policies', '/playground', '/static/pages.js']) {
      expect((await fetch(`${proxy.url}${path}`)).status).toBe(401);
      expect(
        (await fetch(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${INGEST}` } })).status,
      ).toBe(403);
    }
    const series = (n: number) => [
      ...Array.from({ length: n }, (_, i) => ({
        __name__: 'http_requests_total',
        job: 'api',
        path: `/p/${i}`,
        request_id: `r${i}`,
      })),
      { __name__: 'debug_cache_hits_total', job: 'api' },
      { __name__: 'up', job: 'api' },
    ];
    await write(proxy.writeUrl, series(10));

    // Wait for the history to hold a sample with the first 10 series, so that growth is known.
    await eventually(
      async () => {
        const body = await (
          await fetch(`${proxy.url}/offenders`, { headers: { authorization: `Bearer ${ADMIN}` } })
        ).text();
        const json = /<script type="application\/json" id="history">(.*?)<\/script>/s.exec(body)?.[1] ?? '{}';
        const history = JSON.parse(json) as { series?: Record<string, (number | null)[]> };
        expect(history.series?.http_requests_total).toContain(10);
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );

    const browser = track(await startBrowser());
    const page = await browser.context.newPage();
    await page.setExtraHTTPHeaders({ authorization: `Bearer ${ADMIN}` });
    const violations: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') violations.push(m.text());
    });
    page.on('pageerror', (e) => violations.push(e.message));

    for (const [path, heading, text] of [
      ['/', 'Overview', 'accepted'],
      ['/policies', 'Policies', 'http-cap'],
      ['/unused', 'Unused metrics', 'Read-path usage'],
    ] as const) {
      const res = await page.goto(`${proxy.url}${path}`);
      expect(res?.status()).toBe(200);
      expect(res?.headers()['content-security-policy']).toContain("default-src 'none'");
      expect(await page.locator('h1').textContent()).toBe(heading);
      expect(await page.locator('main').textContent()).toContain(text);
      await page.screenshot({
        path: join(ARTIFACTS, `${path === '/' ? 'overview' : path.slice(1)}.png`),
        fullPage: true,
      });
    }
    // The policies page counts what was dropped.
    expect(
      await page
        .goto(`${proxy.url}/policies`)
        .then(() => page.locator('tr', { hasText: 'drop[0]' }).textContent()),
    ).toContain('metric_dropped');

    // Sparklines need two samples with the metric in them; more data arrives meanwhile.
    await eventually(
      async () => {
        await write(proxy.writeUrl, series(15));
        await page.goto(`${proxy.url}/offenders`);
        expect(
          await page.locator('.spark[data-metric="http_requests_total"][data-drawn="true"] canvas').count(),
        ).toBe(1);
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    // 10 series at the first sample, 15 now.
    expect(await page.locator('tr', { hasText: 'http_requests_total' }).first().textContent()).toContain(
      '15+5',
    );
    await page.screenshot({ path: join(ARTIFACTS, 'offenders.png'), fullPage: true });

    // The playground through its form, with the loaded policies (an empty policy box).
    await page.goto(`${proxy.url}/playground`);
    await page.fill(
      'textarea[name=series]',
      'debug_cache_hits_total{job="api"}\nhttp_requests_total{job="api",request_id="r1"}\nup',
    );
    await page.fill('textarea[name=policies]', '');
    await Promise.all([page.waitForURL(`${proxy.url}/playground`), page.click('button[type=submit]')]);
    const rows = await page.locator('h2:has-text("Verdicts") + table tbody tr').allTextContents();
    expect(rows).toHaveLength(3);
    expect(rows[0]).toContain('dropped');
    expect(rows[0]).toContain('platform/governance drop[0] metric_dropped');
    expect(rows[1]).toContain('rewritten');
    expect(rows[1]).toContain('http_requests_total{job="api"}');
    expect(rows[2]).toContain('kept');
    await page.screenshot({ path: join(ARTIFACTS, 'playground.png'), fullPage: true });

    // A policy with a mistake is answered with its line and column.
    await page.fill('textarea[name=policies]', POLICY.replace('- debug_.*', '- "(debug"'));
    await Promise.all([page.waitForURL(`${proxy.url}/playground`), page.click('button[type=submit]')]);
    expect(await page.locator('#problems').textContent()).toContain(
      'policies:8:7: spec.drop[0]: invalid regex "(debug"',
    );

    expect(violations).toEqual([]);
  });
});
