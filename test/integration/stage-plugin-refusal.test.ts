// A stage plugin whose failure mode refuses, on the remote-write path with limits shared through a
// real Redis: a Prometheus agent scrapes a sequence counter and remote-writes it through the built
// proxy into a real Prometheus. While the plugin's backend is down every request holding the
// sequence is refused with 503 and Retry-After; the agent retries, and once the plugin works again
// the receiver holds exactly the samples the target served, all judged by the plugin (one series,
// marked checked="yes"): nothing was acknowledged and then lost, nothing passed unjudged.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  expectReceivedExactly,
  metricSum,
  projectConfigMap,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startRedis,
  startTarget,
  useCleanup,
} from '../framework/index.js';

const SWITCH = fileURLToPath(new URL('../fixtures/stages/switch.mjs', import.meta.url));
const SEQ = 'cardinal_test_seq_total';

describe('a refusing stage plugin with a shared limit store', () => {
  const track = useCleanup();

  it('refuses while it fails, and the receiver ends with exactly what was served', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-refusal-'));
    const off = join(dir, 'off');
    const configDir = join(dir, 'config');
    // A limit on the metric that gets a new series every scrape, so requests ask the store.
    const policy = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: refusal
  namespace: platform
spec:
  limits:
    perMetric:
      - metric: cardinal_test_new
        maxSeries: 100000
  stages:
    - name: switch
      config: { metric: ${SEQ}, off: ${JSON.stringify(off)} }
`;
    await projectConfigMap(configDir, { 'policies.yaml': policy });
    const redis = track(await startRedis());
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: () => [
          '--config',
          configDir,
          '--limits.store',
          redis.url,
          '--stage.plugin',
          SWITCH,
          // Verdicts are not kept from one request to the next: the plugin judges every request.
          '--cache.max-label-sets',
          '1',
        ],
      }),
    );
    const target = track(await startTarget({ sequence: {} }));
    let n = 0;
    const grow = setInterval(() => {
      n++;
      target.setSeries([{ name: 'cardinal_test_new', labels: { n: String(n) }, value: n }]);
    }, 250);
    try {
      const agent = track(
        await startPrometheusAgent({
          version: 2,
          remoteWriteUrl: proxy.writeUrl,
          scrapeTargets: [target.address],
          remoteWrite: { minBackoff: '100ms', maxBackoff: '1s' },
        }),
      );
      await target.waitForServed(3, 60_000);
      await eventually(async () => expect(await receiver.query(`${SEQ}{checked="yes"}`)).toHaveLength(1), {
        timeoutMs: 30_000,
      });

      // The backend goes down: requests holding the sequence are refused, as the plugin says.
      writeFileSync(off, '');
      await eventually(
        async () =>
          expect(await proxy.metric('cardinal_proxy_requests_total', { code: '503' })).toBeGreaterThan(2),
        { timeoutMs: 30_000 },
      );
      const refused = await proxy.metric('cardinal_proxy_stage_plugin_failures_total', {
        stage: 'switch',
        kind: 'error',
      });
      expect(refused).toBeGreaterThan(0);
      rmSync(off);

      // Back up: the agent's retries land; then the sequence stops and everything served arrives.
      await target.waitForServed(target.served().length + 3, 60_000);
      const served = target.pauseSequence();
      const got = await expectReceivedExactly(receiver, target, served, 60_000);
      expect(got.labels).toMatchObject({ checked: 'yes' });
      expect(await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(0);
      expect(
        await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_retried_total'),
      ).toBeGreaterThan(0);
      expect(await proxy.metric('cardinal_proxy_requests_total', { code: '500' })).toBe(0);
      // The requests did ask the shared store (the path whose refusals come after its answer).
      expect(await proxy.metric('cardinal_proxy_limits_store_round_trips_total')).toBeGreaterThan(0);
      // Every request refused is one the plugin refused: no other 5xx hid among them.
      expect(
        await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'STAGE_FAILED' }),
      ).toBe(await proxy.metric('cardinal_proxy_requests_total', { code: '503' }));
    } finally {
      clearInterval(grow);
    }
  });
});
