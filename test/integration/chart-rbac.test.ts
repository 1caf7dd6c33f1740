// The chart's RBAC is enough and no more: the real operator runs with a token of the chart's
// ServiceAccount, bound as the chart binds it, through its core scenario (a policy rendered into
// the ConfigMap and Accepted, the Lease acquired, an Event recorded, the proxy Service's
// EndpointSlices listed) without a single refusal; and what it must not do is refused.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { CHART_CRD_FILE } from '../../charts/values.js';
import {
  type ControlPlane,
  eventually,
  freePort,
  installChartRbac,
  type Program,
  RBAC_KINDS,
  renderChartRbac,
  startControlPlane,
  startProgram,
  useCleanup,
} from '../framework/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OPERATOR_MAIN = join(ROOT, 'dist/operator/main.js');
const SA = 'r-cardinal-operator';

describe('the chart\u2019s RBAC with the real operator', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-${suffix}`;
  const apps = `apps-${suffix}`;
  const identity = `cardinal-operator-${suffix}`;
  let plane: ControlPlane;
  let operator: Program;
  let saKubeconfig: string;

  const admin = async (args: string[], input?: string): Promise<string> => {
    const r = await plane.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  /** kubectl as the ServiceAccount: the later --kubeconfig wins over the admin one. */
  const asOperator = (args: string[], input?: string) =>
    plane.kubectl(['--kubeconfig', saKubeconfig, ...args], input === undefined ? {} : { input });

  beforeAll(async () => {
    plane = track(await startControlPlane());
    await plane.apply(readFileSync(join(ROOT, CHART_CRD_FILE), 'utf8'));
    await plane.apply(readFileSync(join(ROOT, 'test/fixtures/usage/prometheusrule-crd.yaml'), 'utf8'));
    await admin(['wait', '--for=condition=Established', '--timeout=60s', 'crd/metricpolicies.cardinal.dev']);
    await admin([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
    await admin(['create', 'namespace', system]);
    await admin(['create', 'namespace', apps]);
    // The rendered RBAC holds exactly the kinds a least-privilege install needs.
    const kinds = renderChartRbac('r', system).map((d) => d.kind);
    expect(kinds.sort()).toEqual([...RBAC_KINDS].sort());
    const installed = await installChartRbac(plane, 'r', system);
    expect(installed.serviceAccount).toBe(SA);
    saKubeconfig = installed.kubeconfig;
    expect((await asOperator(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).stdout).toBe(
      `system:serviceaccount:${system}:${SA}`,
    );

    const port = await freePort();
    operator = track(
      await startProgram({
        name: 'cardinal-operator',
        command: process.execPath,
        args: () => [
          OPERATOR_MAIN,
          '--kubeconfig',
          saKubeconfig,
          '--namespace',
          system,
          '--metrics-listen',
          `127.0.0.1:${port}`,
          '--proxy-service',
          'r-cardinal-proxy',
          '--proxy-config-path',
          '/etc/cardinal/policies',
          '--status-interval',
          '1s',
          '--log-level',
          'debug',
        ],
        env: { POD_NAME: identity },
        readyUrl: `http://127.0.0.1:${port}/readyz`,
      }),
    );
  });

  it('renders and accepts a policy, holds the Lease and records an Event, refused nothing', async () => {
    await admin(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        metadata: { name: 'drop-debug', namespace: apps },
        spec: { drop: ['debug_.*'] },
      }),
    );
    await eventually(async () => {
      const cm = JSON.parse(
        await admin(['-n', system, 'get', 'configmap', 'cardinal-proxy-default-policies', '-o', 'json']),
      ) as { data: Record<string, string> };
      expect(cm.data['policies.yaml']).toContain('debug_.*');
    });
    await eventually(async () => {
      const policy = JSON.parse(
        await admin(['-n', apps, 'get', 'metricpolicy', 'drop-debug', '-o', 'json']),
      ) as {
        metadata: { generation: number };
        status?: { conditions?: { type: string; status: string; observedGeneration: number }[] };
      };
      expect(policy.status?.conditions).toContainEqual(
        expect.objectContaining({
          type: 'Accepted',
          status: 'True',
          observedGeneration: policy.metadata.generation,
        }),
      );
    });
    const lease = JSON.parse(
      await admin(['-n', system, 'get', 'lease', 'cardinal-operator', '-o', 'json']),
    ) as {
      spec: { holderIdentity: string };
    };
    expect(lease.spec.holderIdentity.startsWith(`${identity}_`)).toBe(true);
    // A first acceptance records no Event; a rejection does.
    await admin(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        metadata: { name: 'bad-regex', namespace: apps },
        spec: { drop: ['(?=x)'] },
      }),
    );
    await eventually(async () => {
      const events = JSON.parse(
        await admin([
          '-n',
          apps,
          'get',
          'events',
          '--field-selector',
          'involvedObject.name=bad-regex',
          '-o',
          'json',
        ]),
      ) as { items: { reason: string; source?: { component?: string } }[] };
      expect(events.items.map((e) => e.reason)).toContain('Rejected');
    });
    // spec.unused: the rules and dashboards of another namespace are read into usage.yaml.
    await admin(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'PrometheusRule',
        metadata: { name: 'api', namespace: apps },
        spec: { groups: [{ name: 'api', rules: [{ alert: 'ApiDown', expr: 'up{job="api"} == 0' }] }] },
      }),
    );
    await admin(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'api-dashboard', namespace: apps, labels: { grafana_dashboard: '1' } },
        data: {
          'api.json': JSON.stringify({
            panels: [{ title: 'rps', targets: [{ expr: 'sum(rate(api_requests_total[5m]))' }] }],
          }),
        },
      }),
    );
    await admin(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        metadata: { name: 'unused-report', namespace: apps },
        spec: { unused: { action: 'report' } },
      }),
    );
    await eventually(async () => {
      const cm = JSON.parse(
        await admin(['-n', system, 'get', 'configmap', 'cardinal-proxy-default-policies', '-o', 'json']),
      ) as { data: Record<string, string> };
      expect(cm.data['usage.yaml']).toContain('"name":"up"');
      expect(cm.data['usage.yaml']).toContain('"name":"api_requests_total"');
    });
    // A few status rounds, each listing the proxy Service's EndpointSlices (there are none).
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const log = readFileSync(operator.logPath, 'utf8');
    expect(log).toMatch(/"msg":"acquired the lease/);
    expect(log).not.toMatch(/forbidden|HTTP 403|"statusCode":403|"code":403/i);
  });

  it.each([
    ['list', 'metricpolicies', '', 'yes'],
    ['watch', 'metricpolicies', '', 'yes'],
    ['patch', 'metricpolicies', '--subresource=status', 'yes'],
    ['create', 'events', '', 'yes'],
    ['patch', 'events', '', 'yes'],
    ['patch', 'configmaps', '', 'yes'],
    ['create', 'configmaps', '', 'yes'],
    ['get', 'leases/cardinal-operator', '', 'yes'],
    ['update', 'leases/cardinal-operator', '', 'yes'],
    ['list', 'endpointslices.discovery.k8s.io', '', 'yes'],
    ['update', 'metricpolicies', '', 'no'],
    ['patch', 'metricpolicies', '', 'no'],
    ['delete', 'metricpolicies', '', 'no'],
    ['create', 'metricpolicies', '', 'no'],
    ['get', 'secrets', '', 'no'],
    ['delete', 'secrets', '', 'no'],
    ['create', 'pods', '', 'no'],
    ['delete', 'configmaps', '', 'no'],
    ['update', 'leases/someone-else', '', 'no'],
    ['delete', 'leases', '', 'no'],
    ['create', 'clusterrolebindings', '', 'no'],
  ])('kubectl auth can-i %s %s %s: %s', async (verb, resource, extra, answer) => {
    const ns = ['metricpolicies', 'events'].includes(resource) ? apps : system;
    const args = ['auth', 'can-i', verb, resource, '-n', ns, ...(extra === '' ? [] : [extra])];
    const r = await asOperator(args);
    expect(r.stdout.trim(), r.stderr).toBe(answer);
  });

  it('spec.unused reads rules and dashboard ConfigMaps in every namespace, and only reads them', async () => {
    for (const [verb, resource, answer] of [
      ['list', 'prometheusrules.monitoring.coreos.com', 'yes'],
      ['watch', 'prometheusrules.monitoring.coreos.com', 'yes'],
      ['list', 'configmaps', 'yes'],
      ['watch', 'configmaps', 'yes'],
      ['get', 'configmaps', 'no'],
      ['get', 'prometheusrules.monitoring.coreos.com', 'no'],
      ['update', 'prometheusrules.monitoring.coreos.com', 'no'],
      ['delete', 'configmaps', 'no'],
    ] as const) {
      const r = await asOperator(['auth', 'can-i', verb, resource, '-n', apps]);
      expect(r.stdout.trim(), `${verb} ${resource}: ${r.stderr}`).toBe(answer);
    }
  });

  it('configmaps, leases and endpointslices only in the release namespace', async () => {
    for (const [verb, resource] of [
      ['patch', 'configmaps'],
      ['get', 'leases/cardinal-operator'],
      ['list', 'endpointslices.discovery.k8s.io'],
    ] as const) {
      expect((await asOperator(['auth', 'can-i', verb, resource, '-n', apps])).stdout.trim()).toBe('no');
    }
  });

  it('is refused when it tries what it may not', async () => {
    const refusals = [
      await asOperator(['-n', system, 'delete', 'secret', 'anything']),
      await asOperator(['-n', system, 'get', 'secrets']),
      await asOperator(
        ['-n', system, 'create', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'escape' },
          spec: { containers: [{ name: 'c', image: 'busybox' }] },
        }),
      ),
      await asOperator([
        '-n',
        apps,
        'patch',
        'metricpolicy',
        'drop-debug',
        '--type=merge',
        '-p',
        '{"spec":{"mode":"dryRun"}}',
      ]),
      await asOperator(['-n', apps, 'delete', 'metricpolicy', 'drop-debug']),
    ];
    for (const r of refusals) {
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Forbidden|forbidden/);
    }
    // The spec is as the admin wrote it.
    expect(
      await admin(['-n', apps, 'get', 'metricpolicy', 'drop-debug', '-o', 'jsonpath={.spec.mode}']),
    ).toBe('enforce');
  });
});
