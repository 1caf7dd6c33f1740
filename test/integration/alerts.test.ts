// The alerting rules Cardinal ships (charts/cardinal/rules/cardinal.rules.yaml, generated from
// charts/alerts.ts): promtool checks them and runs a unit test for every alert; then a real
// Prometheus scrapes a real proxy and the alerts fire on real failures: a policy file that does not
// load, a limit that is hit, the upstream stopped, the proxy stopped.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ALERTS,
  RULES_FILE,
  RUNBOOKS_FILE,
  renderPromtoolTests,
  renderRulesYaml,
} from '../../charts/alerts.js';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  binaryPath,
  eventually,
  type PrometheusReceiver,
  type ProxyProgram,
  projectConfigMap,
  startPrometheusReceiver,
  startProxy,
  startSink,
  useCleanup,
} from '../framework/index.js';

const execFileAsync = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const shipped = () => readFileSync(join(root, RULES_FILE), 'utf8');

async function promtool(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(binaryPath('promtool'), args, { cwd });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, output: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

/** A directory with `rules` as cardinal.rules.yaml and the promtool tests over it. */
function testDir(rules: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cardinal-promtool-'));
  writeFileSync(join(dir, 'cardinal.rules.yaml'), rules);
  writeFileSync(join(dir, 'tests.yaml'), renderPromtoolTests('cardinal.rules.yaml'));
  return dir;
}

describe('alerting rules under promtool', () => {
  it('are what charts/alerts.ts renders (`npm run generate`)', () => {
    expect(shipped()).toBe(renderRulesYaml());
  });

  it('pass `promtool check rules`', async () => {
    const r = await promtool(['check', 'rules', join(root, RULES_FILE)], root);
    expect(r.output).toContain(`SUCCESS: ${ALERTS.length} rules found`);
    expect(r.code).toBe(0);
  });

  it('pass a `promtool test rules` unit test for every alert, quiet before and firing after', async () => {
    const r = await promtool(['test', 'rules', 'tests.yaml'], testDir(shipped()));
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.code).toBe(0);
  });

  it('would fail each unit test were its alert to wait an hour', async () => {
    const r = await promtool(['test', 'rules', 'tests.yaml'], testDir(renderRulesYaml({ for: '1h' })));
    expect(r.code).not.toBe(0);
    for (const a of ALERTS) expect(r.output, a.alert).toContain(`alertname: ${a.alert}`);
  });

  it('link a runbook section for every alert', () => {
    const runbooks = readFileSync(join(root, RUNBOOKS_FILE), 'utf8');
    const headings = new Set([...runbooks.matchAll(/^## (\w+)$/gm)].map((m) => m[1]));
    for (const a of ALERTS) expect(headings, a.alert).toContain(a.alert);
  });
});

const POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: cap
  namespace: team-a
spec:
  limits:
    perMetric:
      - metric: alerts_test_requests
        maxSeries: 1
`;

function writeRequest(series: number): Uint8Array {
  const now = Date.now();
  return snappyEncode(
    encodeWriteRequestV1({
      timeseries: Array.from({ length: series }, (_, i) => ({
        labels: [
          { name: '__name__', value: 'alerts_test_requests' },
          { name: 'path', value: `/p${i}` },
        ],
        samples: [{ value: i, timestamp: now }],
        exemplars: [],
        histograms: [],
      })),
      metadata: [],
    }),
  );
}

describe('alerting rules on a real Prometheus scraping a real proxy', () => {
  const track = useCleanup();
  let prometheus: PrometheusReceiver;
  let proxy: ProxyProgram;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let configDir: string;

  const firing = async () =>
    new Set((await prometheus.query('ALERTS{alertstate="firing"}')).map((s) => s.labels.alertname as string));
  const waitFiring = (alert: string) =>
    eventually(async () => expect(await firing()).toContain(alert), { timeoutMs: 60_000, intervalMs: 500 });
  const send = async (series: number) => {
    const res = await fetch(proxy.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: writeRequest(series),
    });
    await res.body?.cancel();
    return res.status;
  };

  beforeAll(async () => {
    configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-alerts-')), 'config');
    await projectConfigMap(configDir, { 'policies.yaml': POLICY });
    sink = await startSink();
    proxy = track(
      await startProxy({
        upstream: sink.url,
        args: () => ['--config', configDir, '--forward.retry-budget', '1s', '--forward.max-backoff', '200ms'],
      }),
    );
    // The shipped rules, with every `for` shortened so that an alert fires within seconds.
    prometheus = track(
      await startPrometheusReceiver({
        version: 2,
        interval: '1s',
        ruleFiles: { 'cardinal.rules.yaml': renderRulesYaml({ for: '0s' }) },
        scrapeConfigs: [
          { job_name: 'cardinal-proxy', static_configs: [{ targets: [new URL(proxy.url).host] }] },
        ],
      }),
    );
    await eventually(
      async () => {
        const [scrapes] = await prometheus.query('count_over_time(up{job="cardinal-proxy"}[1m])');
        expect(scrapes?.value).toBeGreaterThanOrEqual(3);
      },
      { timeoutMs: 60_000 },
    );
  });

  it('are quiet while the proxy is healthy', async () => {
    expect((await prometheus.query('up{job="cardinal-proxy"}'))[0]?.value).toBe(1);
    expect(await send(1)).toBe(204);
    expect([...(await firing())]).toEqual([]);
  });

  it('fire CardinalProxyLimitHit when a policy drops series at its limit', async () => {
    const sending = setInterval(() => void send(3).catch(() => {}), 250);
    try {
      await waitFiring('CardinalProxyLimitHit');
    } finally {
      clearInterval(sending);
    }
    const [alert] = await prometheus.query('ALERTS{alertname="CardinalProxyLimitHit"}');
    expect(alert?.labels).toMatchObject({
      policy: 'team-a/cap',
      reason: 'series_limit',
      severity: 'warning',
    });
  });

  it('fire CardinalProxyConfigReloadFailed when a policy file does not load', async () => {
    expect(await firing()).not.toContain('CardinalProxyConfigReloadFailed');
    await projectConfigMap(configDir, {
      'policies.yaml': POLICY.replace('maxSeries: 1', "maxSeries: 'one'"),
    });
    await waitFiring('CardinalProxyConfigReloadFailed');
  });

  it('fire CardinalProxyRetriesExhausted and CardinalProxyUpstreamErrors when the upstream stops', async () => {
    const before = await firing();
    expect(before).not.toContain('CardinalProxyRetriesExhausted');
    expect(before).not.toContain('CardinalProxyUpstreamErrors');
    await sink.close();
    const sending = setInterval(() => void send(1).catch(() => {}), 250);
    try {
      await waitFiring('CardinalProxyRetriesExhausted');
      await waitFiring('CardinalProxyUpstreamErrors');
    } finally {
      clearInterval(sending);
    }
    expect(await send(1)).toBe(503);
  });

  it('fire CardinalProxyDown when the proxy stops', async () => {
    expect(await firing()).not.toContain('CardinalProxyDown');
    await proxy.stop();
    await waitFiring('CardinalProxyDown');
  });
});
