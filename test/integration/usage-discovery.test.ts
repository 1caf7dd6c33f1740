// The operator's usage sources on a real API server: without prometheus-operator's CRDs the
// operator runs and reads dashboards alone; once the PrometheusRule CRD is installed, API discovery
// finds it (asked again every --status-interval) and the rules are read too, without a restart.
// A dashboard outside --dashboard-namespaces, or without the selected label, is not read.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  startOperator,
  startPolicyPlane,
  useCleanup,
} from '../framework/index.js';

const CRD = fileURLToPath(new URL('../fixtures/usage/prometheusrule-crd.yaml', import.meta.url));

describe('usage sources on a real API server', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  const other = `other-${suffix}`;
  let plane: ControlPlane;
  let kubectl: ReturnType<typeof kubectlOrThrow>;

  const apply = (obj: unknown) => kubectl(['apply', '-f', '-'], JSON.stringify(obj));
  const dashboard = (namespace: string, name: string, expr: string, labels = { team_dashboard: 'yes' }) =>
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace, labels },
      data: { 'd.json': JSON.stringify({ panels: [{ title: 'p', targets: [{ expr }] }] }) },
    });
  const usageYaml = async () => {
    const cm = JSON.parse(
      await kubectl(['-n', system, 'get', 'configmap', 'cardinal-proxy-default-policies', '-o', 'json']),
    ) as { data: Record<string, string> };
    return cm.data['usage.yaml'] ?? '';
  };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps, other]));
    const operator = await startOperator({
      plane,
      namespace: system,
      args: [
        '--status-interval',
        '1s',
        '--dashboard-selector',
        'team_dashboard=yes',
        '--dashboard-namespaces',
        apps,
      ],
    });
    track(operator.program);
  });

  it('reads dashboards without the rules API, and the rules once it is served', async () => {
    await dashboard(apps, 'read', 'sum by (job) (dashboard_metric_total)');
    await dashboard(other, 'elsewhere', 'other_namespace_metric');
    await dashboard(apps, 'unlabelled', 'unlabelled_metric', { team_dashboard: 'no' });
    await applyPolicy(plane, apps, 'unused', { unused: {} });
    await eventually(async () => expect(await usageYaml()).toContain('"name":"dashboard_metric_total"'), {
      timeoutMs: 15_000,
    });
    const text = await usageYaml();
    expect(text).not.toContain('other_namespace_metric');
    expect(text).not.toContain('unlabelled_metric');

    await plane.apply(readFileSync(CRD, 'utf8'));
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
    await apply({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'late', namespace: other },
      spec: {
        groups: [
          {
            name: 'g',
            rules: [{ record: 'job:rule_metric:rate5m', expr: 'sum by (job) (rate(rule_metric_total[5m]))' }],
          },
        ],
      },
    });
    await eventually(
      async () => {
        const t = await usageYaml();
        expect(t).toContain('"name":"rule_metric_total"');
        expect(t).toContain('"name":"job:rule_metric:rate5m"');
        expect(t).toContain('"name":"dashboard_metric_total"');
      },
      { timeoutMs: 30_000 },
    );

    // Deleting the dashboard un-reads its metric.
    await kubectl(['-n', apps, 'delete', 'configmap', 'read']);
    await eventually(async () => expect(await usageYaml()).not.toContain('dashboard_metric_total'), {
      timeoutMs: 15_000,
    });
  });
});
