// Stage plugins in the built proxy, on real traffic: a Prometheus agent scrapes a target and
// remote-writes through cardinal-proxy (--stage.plugin: the example hash-bucket plugin as built in
// dist/, a plugin that throws, one that never returns) into a real Prometheus. The receiver shows
// what the plugins did; a bad plugin config is a rejected configuration; a throwing or hanging
// plugin costs the sender nothing.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bucketOf } from '../../examples/stages/hash-bucket.js';
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

const HASH_BUCKET = fileURLToPath(new URL('../../dist/examples/stages/hash-bucket.js', import.meta.url));
const THROWING = fileURLToPath(new URL('../fixtures/stages/throwing.mjs', import.meta.url));
const HANGING = fileURLToPath(new URL('../fixtures/stages/hanging.mjs', import.meta.url));

const policy = (stages: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: plugins\n  namespace: platform\nspec:\n  stages:\n${stages}`;
const BUCKETS = (buckets: string) =>
  `    - name: hash-bucket\n      config: { label: user, buckets: ${buckets}, metrics: [cardinal_test_requests_total] }\n`;
const THROWER = '    - name: thrower\n';
const HANGER = '    - name: hanger\n';

const USERS = Array.from({ length: 8 }, (_, k) => `u${k}`);
const SERIES: TargetSeries[] = [
  ...USERS.map((user, k) => ({ name: 'cardinal_test_requests_total', labels: { user }, value: k })),
  { name: 'cardinal_test_plain', labels: { room: 'lab' }, value: 1 },
  { name: 'cardinal_test_boom', labels: { room: 'lab' }, value: 2 },
  { name: 'cardinal_test_hang', labels: { room: 'lab' }, value: 3 },
];

interface StatusJson {
  hash: string;
  lastError: { message: string } | null;
}

describe('stage plugins in the proxy', () => {
  const track = useCleanup();

  it('act on real traffic; a throwing, a hanging plugin and a bad config behave as documented', async () => {
    const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-stages-')), 'config');
    await projectConfigMap(configDir, { 'policies.yaml': policy(BUCKETS('2') + THROWER) });
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: () => [
          '--config',
          configDir,
          '--reload.min-interval',
          '0s',
          ...['--stage.plugin', HASH_BUCKET, '--stage.plugin', THROWING, '--stage.plugin', HANGING],
          '--stage.plugin.timeout',
          '200ms',
        ],
      }),
    );
    const target = track(await startTarget({}));
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
    const status = async () =>
      (await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as StatusJson;

    // hash-bucket: eight users become the buckets their names hash to, their values summed.
    const buckets = new Map<string, number>();
    for (const [k, u] of USERS.entries()) buckets.set(bucketOf(u, 2), (buckets.get(bucketOf(u, 2)) ?? 0) + k);
    await eventually(
      async () => {
        const got = await values('sum by (user) (cardinal_test_requests_total)');
        expect(new Map(got.map((s) => [s.user, s.value]))).toEqual(buckets);
      },
      { timeoutMs: 30_000 },
    );
    expect(
      await proxy.metric('cardinal_proxy_policy_samples_total', {
        reason: 'label_bucketed',
        action: 'rewritten',
      }),
    ).toBeGreaterThan(0);

    // The throwing plugin: the series it throws on arrives as the stages before it left it; the
    // others carry its mark; the failures are counted.
    await eventually(
      async () => {
        expect(await values('cardinal_test_plain')).toEqual([
          expect.objectContaining({ __name__: 'cardinal_test_plain', checked: 'yes', room: 'lab' }),
        ]);
        const boom = await values('cardinal_test_boom');
        expect(boom).toHaveLength(1);
        expect(boom[0]).not.toHaveProperty('checked');
        expect(
          await proxy.metric('cardinal_proxy_stage_plugin_failures_total', {
            stage: 'thrower',
            kind: 'error',
          }),
        ).toBeGreaterThan(0);
      },
      { timeoutMs: 30_000 },
    );

    // A config the plugin's schema refuses is a rejected configuration, with the plugin's message;
    // the running one stays in force.
    const good = await status();
    await projectConfigMap(configDir, { 'policies.yaml': policy(BUCKETS('"many"') + THROWER) });
    const rejected = await eventually(
      async () => {
        const s = await status();
        expect(s.lastError).not.toBeNull();
        return s;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    expect(rejected.hash).toBe(good.hash);
    expect(rejected.lastError?.message).toContain(
      'policy platform/plugins: stages[0].config.buckets: Expected integer (plugin hash-bucket)',
    );
    expect(await proxy.metric('cardinal_proxy_config_last_reload_successful')).toBe(0);

    // The hanging plugin: every request that holds its series runs out of the time budget, and is
    // forwarded without plugins for the series not yet evaluated: nothing is refused or lost.
    const failedBefore = await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total');
    await projectConfigMap(configDir, { 'policies.yaml': policy(BUCKETS('2') + HANGER) });
    await eventually(async () => expect((await status()).lastError).toBeNull(), { timeoutMs: 15_000 });
    await eventually(
      async () => {
        expect(
          await proxy.metric('cardinal_proxy_stage_plugin_failures_total', {
            stage: 'hanger',
            kind: 'timeout',
          }),
        ).toBeGreaterThan(1);
        // Written after the reload: without thrower's mark, and without hanger's.
        const hang = await values('cardinal_test_hang{checked="",hung=""}');
        expect(hang.length).toBeGreaterThan(0);
      },
      { timeoutMs: 30_000 },
    );
    expect((await fetch(`${proxy.url}/-/ready`)).status).toBe(200);
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '503' })).toBe(0);
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '500' })).toBe(0);
    expect(await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(
      failedBefore,
    );
  });
});
