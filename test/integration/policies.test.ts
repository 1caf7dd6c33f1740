// MetricPolicies enforced end to end: a real Prometheus agent scrapes a target and remote-writes
// through cardinal-proxy (the built binary, its --config a kubelet-style projected ConfigMap) into
// a real Prometheus. PromQL on the receiver shows what the policies did; the proxy's counters and
// top-offenders API say the same.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  metricSum,
  projectConfigMap,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  type TargetSeries,
  useCleanup,
} from '../framework/index.js';

const policy = (name: string, spec: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: ${name}\n  namespace: platform\nspec:\n${spec}`;

const POLICIES = [
  policy('drop-debug', '  drop:\n    - cardinal_test_debug_.*\n'),
  policy(
    'cap-requests',
    '  limits:\n    perMetric:\n      - metric: cardinal_test_requests_total\n        maxSeries: 3\n',
  ),
  policy(
    'overflow-sessions',
    '  limits:\n    perMetric:\n      - metric: cardinal_test_sessions\n        maxSeries: 2\n        onExceed: overflow\n        overflowLabel: user\n',
  ),
  policy('standards', '  standards:\n    forbiddenLabels: [user_id]\n    onViolation: drop\n'),
  policy('dry-temperature', '  mode: dryRun\n  drop:\n    - cardinal_test_temperature_celsius\n'),
].join('---\n');

const SERIES: TargetSeries[] = [
  { name: 'cardinal_test_debug_queue_depth', labels: { queue: 'a' }, value: 1 },
  { name: 'cardinal_test_debug_queue_depth', labels: { queue: 'b' }, value: 2 },
  ...Array.from({ length: 6 }, (_, k) => ({
    name: 'cardinal_test_requests_total',
    labels: { user: `u${k}` },
    value: k,
  })),
  ...Array.from({ length: 5 }, (_, k) => ({
    name: 'cardinal_test_sessions',
    labels: { user: `s${k}` },
    value: 10,
  })),
  { name: 'cardinal_test_logins_total', labels: { user_id: '42' }, value: 1 },
  { name: 'cardinal_test_temperature_celsius', labels: { room: 'lab' }, value: 21.5 },
];

describe('MetricPolicy enforcement through the proxy', () => {
  const track = useCleanup();

  it('drops, caps, overflows and enforces standards; dry-run only counts; a reload under load loses nothing', async () => {
    const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-policies-')), 'config');
    await projectConfigMap(configDir, { 'policies.yaml': POLICIES });
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({ upstream: receiver.remoteWriteUrl, args: () => ['--config', configDir] }),
    );
    const target = track(await startTarget({ sequence: { labels: { suite: 'policies' } } }));
    target.setSeries(SERIES);
    const agent = track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
      }),
    );

    const values = async (promql: string): Promise<Array<Record<string, string | number>>> =>
      (await receiver.query(promql)).map((s) => ({ ...s.labels, value: s.value }));
    await eventually(
      async () => {
        // Limits admit series in arrival order, so which three users pass is not fixed; how many is.
        expect(await values('count(cardinal_test_requests_total)')).toEqual([{ value: 3 }]);
        const sessions = await values('cardinal_test_sessions');
        expect(sessions.filter((s) => s.user !== '__cardinality_overflow__')).toHaveLength(2);
        // The three sessions over the limit collapse onto one series whose value is their sum.
        expect(sessions.filter((s) => s.user === '__cardinality_overflow__').map((s) => s.value)).toEqual([
          30,
        ]);
        expect(await values('cardinal_test_temperature_celsius')).toHaveLength(1);
      },
      { timeoutMs: 30_000 },
    );
    expect(await values('{__name__=~"cardinal_test_debug_.*"}')).toEqual([]);
    expect(await values('cardinal_test_logins_total')).toEqual([]);

    const counter = (labels: Record<string, string>) =>
      proxy.metric('cardinal_proxy_policy_samples_total', labels);
    expect(
      await counter({ policy: 'platform/drop-debug', reason: 'metric_dropped', mode: 'enforce' }),
    ).toBeGreaterThan(0);
    expect(
      await counter({ policy: 'platform/cap-requests', reason: 'series_limit', action: 'dropped' }),
    ).toBeGreaterThan(0);
    expect(
      await counter({ policy: 'platform/standards', reason: 'forbidden_label', action: 'dropped' }),
    ).toBeGreaterThan(0);
    expect(
      await counter({
        policy: 'platform/dry-temperature',
        reason: 'metric_dropped',
        action: 'dropped',
        mode: 'dryRun',
      }),
    ).toBeGreaterThan(0);

    const top = (await (await fetch(`${proxy.url}/api/v1/stats/top-offenders?limit=50`)).json()) as {
      metrics: { metric: string; activeSeries: number }[];
      drops: { metric: string; policy: string; reason: string; samples: number }[];
    };
    expect(top.metrics).toContainEqual({ metric: 'cardinal_test_requests_total', activeSeries: 3 });
    expect(top.drops.map((d) => `${d.metric} ${d.policy} ${d.reason}`)).toEqual(
      expect.arrayContaining([
        'cardinal_test_requests_total platform/cap-requests series_limit',
        'cardinal_test_debug_queue_depth platform/drop-debug metric_dropped',
        'cardinal_test_temperature_celsius platform/dry-temperature dryRun:metric_dropped',
      ]),
    );

    // Raise the cap the way the kubelet updates a ConfigMap, while the agent keeps writing.
    const failedBefore = await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total');
    await projectConfigMap(configDir, {
      'policies.yaml': POLICIES.replace('maxSeries: 3', 'maxSeries: 6'),
    });
    await eventually(
      async () => expect(await values('count(cardinal_test_requests_total)')).toEqual([{ value: 6 }]),
      {
        timeoutMs: 20_000,
      },
    );
    await target.waitForServed(target.served().length + 3);
    const served = target.pauseSequence();
    // Every scraped sample of the sequence arrived: the reload cost no request.
    await eventually(
      async () => {
        const [seq] = await receiver.rawSamples(
          target.sequenceSelector,
          600,
          served.at(-1)!.timestampMs + 1000,
        );
        expect(seq?.samples).toEqual(served.map((s) => [s.timestampMs, s.value]));
      },
      { timeoutMs: 20_000 },
    );
    expect(await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(
      failedBefore,
    );
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '400' })).toBe(0);
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '503' })).toBe(0);
    expect(
      await proxy.metric('cardinal_proxy_config_reloads_total', { result: 'success' }),
    ).toBeGreaterThanOrEqual(2);
  });
});
