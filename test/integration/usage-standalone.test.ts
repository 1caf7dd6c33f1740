// spec.unused without Kubernetes: cardinal-proxy --config DIR with a hand-written MetricUsage
// document beside the policy, a real Prometheus agent scraping a target through the proxy into a
// real Prometheus. What the document and the policy's own expressions read arrives; the rest is
// dropped; editing the document (a hot reload) brings a metric back.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  projectConfigMap,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  useCleanup,
} from '../framework/index.js';

const POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: unused
  namespace: platform
spec:
  unused:
    action: drop
    keep: [up, "scrape_.*"]
    expressions:
      - sum by (job) (rate(standalone_jobs_total[5m]))
`;

const usage = (names: string[]) => `apiVersion: cardinal.dev/v1alpha1
kind: MetricUsage
metadata:
  name: hand-written
spec:
  metrics:
${names.map((n) => `    - name: ${n}\n      sources: [grafana.example.com]\n`).join('')}`;

describe('spec.unused with a hand-written MetricUsage document', () => {
  const track = useCleanup();

  it('drops what nothing reads, and a reload of the document brings a metric back', async () => {
    const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-usage-')), 'config');
    await projectConfigMap(configDir, {
      'policies.yaml': POLICY,
      'usage.yaml': usage(['standalone_requests_total']),
    });
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({ upstream: receiver.remoteWriteUrl, args: () => ['--config', configDir] }),
    );
    const target = track(await startTarget());
    target.setSeries([
      { name: 'standalone_requests_total', labels: { code: '200' }, value: 1 },
      { name: 'standalone_jobs_total', labels: { job: 'a' }, value: 2 },
      { name: 'standalone_debug_bytes', value: 3 },
    ]);
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
      }),
    );
    const recent = async (metric: string) => {
      const [r] = await receiver.query(`sum(count_over_time(${metric}[3s]))`);
      return r?.value ?? 0;
    };

    await eventually(
      async () => {
        expect(await recent('standalone_requests_total')).toBeGreaterThan(0);
        expect(await recent('standalone_jobs_total')).toBeGreaterThan(0);
        expect(await recent('up')).toBeGreaterThan(0);
      },
      { timeoutMs: 30_000 },
    );
    expect(await recent('standalone_debug_bytes')).toBe(0);
    const report = (await (await fetch(`${proxy.url}/api/v1/stats/unused`)).json()) as {
      policies: {
        policy: string;
        usageKnown: boolean;
        metrics: { metric: string; activeSeries: number }[];
      }[];
    };
    expect(report.policies).toEqual([
      expect.objectContaining({
        policy: 'platform/unused',
        usageKnown: true,
        metrics: [expect.objectContaining({ metric: 'standalone_debug_bytes', activeSeries: 1 })],
      }),
    ]);

    await projectConfigMap(configDir, {
      'policies.yaml': POLICY,
      'usage.yaml': usage(['standalone_requests_total', 'standalone_debug_bytes']),
    });
    await eventually(async () => expect(await recent('standalone_debug_bytes')).toBeGreaterThan(0), {
      timeoutMs: 30_000,
    });
  });
});
