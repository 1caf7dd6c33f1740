// The Helm chart charts/cardinal: its generated files are current, `helm lint` and `helm template`
// pass in every mode, a wrong value fails with the schema's message, and every rendered manifest
// is accepted by a real API server (`kubectl apply --dry-run=server`), with the chart's CRD and a
// ServiceMonitor CRD installed.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  CHART_CRD_FILE,
  CHART_DIR,
  CHART_README,
  renderValuesSchemaJson,
  renderValuesTable,
  renderValuesYaml,
  TABLE_END,
  TABLE_START,
  VALUES_FILE,
  VALUES_SCHEMA_FILE,
} from '../../charts/values.js';
import { CRD_FILE, renderCrdYaml } from '../../crds/crd.js';
import { type ControlPlane, startControlPlane, useCleanup } from '../framework/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHART = join(ROOT, CHART_DIR);
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const UPSTREAM = 'http://prometheus.monitoring:9090/api/v1/write';
const SIDECAR_EXAMPLE = join(CHART, 'examples/sidecar-prometheus-agent.yaml');

/** CARDINAL_HELM (hack/test.mjs exports what hack/kube-assets.sh prints), else the build cache. */
function helmPath(): string {
  const candidates = [
    process.env.CARDINAL_HELM,
    join(
      process.env.CARDINAL_CACHE_DIR ??
        join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cardinal'),
      'helm/3.19.5/helm',
    ),
  ];
  for (const c of candidates) {
    if (c === undefined || c === '') continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {}
  }
  throw new Error('helm not found: set CARDINAL_HELM or run `bash hack/kube-assets.sh`');
}

function helm(args: readonly string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(helmPath(), [...args], { encoding: 'utf8' });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
} & Record<string, unknown>;

interface Container {
  name: string;
  args?: string[];
  env?: { name: string; valueFrom?: unknown }[];
  securityContext?: Record<string, unknown>;
  readinessProbe?: { httpGet: { path: string; port: unknown } };
  livenessProbe?: { httpGet: { path: string; port: unknown } };
  volumeMounts?: { name: string; mountPath: string }[];
  resources?: Record<string, unknown>;
}

interface PodSpec {
  containers: Container[];
  securityContext?: Record<string, unknown>;
  serviceAccountName?: string;
  volumes?: { name: string; configMap?: { name: string; optional?: boolean } }[];
}

function template(namespace: string, set: readonly string[], extra: readonly string[] = []): Manifest[] {
  const r = helm([
    'template',
    'r',
    CHART,
    '--namespace',
    namespace,
    ...set.flatMap((s) => ['--set', s]),
    ...extra,
  ]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function find(manifests: Manifest[], kind: string, name: string): Manifest {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (m === undefined) throw new Error(`no ${kind} ${name} in ${manifests.map((x) => x.kind).join(', ')}`);
  return m;
}

function podSpec(deployment: Manifest): PodSpec {
  return (deployment.spec as { template: { spec: PodSpec } }).template.spec;
}

/** The objects this file checks; the Grafana dashboard's ConfigMap has its own test (dashboard.test.ts). */
const kinds = (manifests: Manifest[]) =>
  manifests
    .filter(
      (m) =>
        (m.metadata as { labels?: Record<string, string> }).labels?.['app.kubernetes.io/component'] !==
        'dashboard',
    )
    .map((m) => `${m.kind}/${m.metadata.name}`)
    .sort();

const RBAC = [
  'ClusterRole/r-cardinal-operator',
  'ClusterRoleBinding/r-cardinal-operator',
  'Role/r-cardinal-operator',
  'RoleBinding/r-cardinal-operator',
  'ServiceAccount/r-cardinal-operator',
];
const OPERATOR = ['Deployment/r-cardinal-operator', 'Service/r-cardinal-operator'];
const PROXY = [
  'Deployment/r-cardinal-proxy',
  'PodDisruptionBudget/r-cardinal-proxy',
  'Service/r-cardinal-proxy',
];
const MONITORS = ['ServiceMonitor/r-cardinal-operator', 'ServiceMonitor/r-cardinal-proxy'];

/** The render cases: name, --set values, extra helm flags, and the objects expected. */
const CASES: [string, string[], string[], string[]][] = [
  ['defaults (gateway)', [`upstream=${UPSTREAM}`], [], [...RBAC, ...OPERATOR, ...PROXY]],
  ['sidecar mode', ['mode=sidecar'], [], [...RBAC, ...OPERATOR]],
  [
    'gateway with the durable queue',
    [`upstream=${UPSTREAM}`, 'proxy.queue.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY],
  ],
  [
    'gateway with the HPA',
    [`upstream=${UPSTREAM}`, 'proxy.autoscaling.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY, 'HorizontalPodAutoscaler/r-cardinal-proxy'],
  ],
  [
    'ServiceMonitors forced on',
    [`upstream=${UPSTREAM}`, 'serviceMonitor.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY, ...MONITORS],
  ],
  [
    'ServiceMonitors on because the cluster serves the API',
    [`upstream=${UPSTREAM}`],
    ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor'],
    [...RBAC, ...OPERATOR, ...PROXY, ...MONITORS],
  ],
  [
    'ServiceMonitors forced off although the cluster serves the API',
    [`upstream=${UPSTREAM}`, 'serviceMonitor.enabled=false'],
    ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor'],
    [...RBAC, ...OPERATOR, ...PROXY],
  ],
  [
    'gateway with pushes and ingest credentials',
    [`upstream=${UPSTREAM}`, 'proxy.pushgateway.url=http://pushgateway:9091', 'proxy.auth.secretName=ingest'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY],
  ],
  [
    'gateway with HTTPS on the proxies and ServiceMonitors',
    [`upstream=${UPSTREAM}`, 'proxy.tls.secretName=proxy-tls', 'serviceMonitor.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY, ...MONITORS],
  ],
  [
    'gateway with credentials on ingest, the admin API and /metrics, and ServiceMonitors',
    [
      `upstream=${UPSTREAM}`,
      'proxy.auth.secretName=creds',
      'proxy.auth.metrics=true',
      'serviceMonitor.enabled=true',
    ],
    [],
    [...RBAC, ...OPERATOR, ...PROXY, ...MONITORS],
  ],
  [
    'sidecar mode with ServiceMonitors: the operator only',
    ['mode=sidecar', 'serviceMonitor.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, 'ServiceMonitor/r-cardinal-operator'],
  ],
];

describe('the chart\u2019s generated files', () => {
  it.each([
    [VALUES_SCHEMA_FILE, renderValuesSchemaJson],
    [VALUES_FILE, renderValuesYaml],
    [CHART_CRD_FILE, renderCrdYaml],
  ])('%s is what `npm run generate` writes now', (file, render) => {
    expect(read(file)).toBe(render());
  });

  it('the CRD in the chart is the generated crds/metricpolicies.yaml', () => {
    expect(read(CHART_CRD_FILE)).toBe(read(CRD_FILE));
  });

  it('the README lists every value, as `npm run generate` writes the table', () => {
    const readme = read(CHART_README);
    const table = readme.slice(readme.indexOf(TABLE_START), readme.indexOf(TABLE_END) + TABLE_END.length);
    expect(table).toBe(renderValuesTable());
    for (const path of [
      'mode',
      'upstream',
      'operator.replicas',
      'proxy.autoscaling.enabled',
      'serviceMonitor.enabled',
    ]) {
      expect(table).toContain(`| \`${path}\` |`);
    }
  });

  it('say that they are generated, and by which command', () => {
    expect(JSON.parse(read(VALUES_SCHEMA_FILE)).$comment).toMatch(/^Generated by `npm run generate`/);
    expect(Object.keys(JSON.parse(read(VALUES_SCHEMA_FILE)))[0]).toBe('$comment');
    expect(read(VALUES_FILE).split('\n')[0]).toMatch(/^# Generated by `npm run generate`/);
    expect(read(CHART_CRD_FILE).split('\n')[0]).toMatch(/^# Generated by `npm run generate`/);
  });
});

describe('helm lint and helm template', () => {
  it.each(CASES)('%s: lints clean and renders the expected objects', (_name, set, extra, expected) => {
    const lint = helm([
      'lint',
      '--strict',
      CHART,
      '--namespace',
      'cardinal-system',
      ...set.flatMap((s) => ['--set', s]),
    ]);
    expect(lint.stderr + lint.stdout).toContain('0 chart(s) failed');
    expect(kinds(template('cardinal-system', set, extra))).toEqual([...expected].sort());
  });

  it.each(CASES)(
    '%s: every pod and container runs with the restricted security context',
    (_n, set, extra) => {
      for (const d of template('cardinal-system', set, extra).filter((m) => m.kind === 'Deployment')) {
        const pod = podSpec(d);
        expect(pod.securityContext, d.metadata.name).toMatchObject({
          runAsNonRoot: true,
          runAsUser: 65532,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(pod.containers.length).toBeGreaterThan(0);
        for (const c of pod.containers) {
          expect(c.securityContext, `${d.metadata.name}/${c.name}`).toEqual({
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(c.resources).toMatchObject({ requests: expect.any(Object), limits: expect.any(Object) });
        }
      }
    },
  );

  it('wires the operator to the release namespace, the proxy Service and the proxies\u2019 mount', () => {
    const manifests = template('obs', [`upstream=${UPSTREAM}`, 'operator.replicas=3']);
    const operator = find(manifests, 'Deployment', 'r-cardinal-operator');
    expect(operator.spec?.replicas).toBe(3);
    const [c] = podSpec(operator).containers;
    expect(c?.args).toEqual(
      expect.arrayContaining([
        '--namespace=obs',
        '--leader-elect=true',
        '--proxy-service=r-cardinal-proxy',
        '--proxy-config-path=/etc/cardinal/policies',
        '--metrics-listen=:8081',
      ]),
    );
    expect(c?.env).toContainEqual({
      name: 'POD_NAME',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expect(c?.livenessProbe?.httpGet.path).toBe('/healthz');
    expect(c?.readinessProbe?.httpGet.path).toBe('/readyz');
    expect(podSpec(operator).serviceAccountName).toBe('r-cardinal-operator');

    const proxy = find(manifests, 'Deployment', 'r-cardinal-proxy');
    const [p] = podSpec(proxy).containers;
    expect(p?.args).toEqual(
      expect.arrayContaining([
        `--upstream=${UPSTREAM}`,
        '--config=/etc/cardinal/policies',
        '--listen=0.0.0.0:8080',
      ]),
    );
    expect(p?.readinessProbe?.httpGet.path).toBe('/-/ready');
    expect(p?.livenessProbe?.httpGet.path).toBe('/-/healthy');
    expect(p?.volumeMounts).toContainEqual(
      expect.objectContaining({ name: 'policies', mountPath: '/etc/cardinal/policies' }),
    );
    expect(podSpec(proxy).volumes).toContainEqual({
      name: 'policies',
      configMap: { name: 'cardinal-proxy-default-policies', optional: true },
    });
    const service = find(manifests, 'Service', 'r-cardinal-proxy');
    expect((service.spec as { ports: unknown[] }).ports).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
    ]);
  });

  it('with the durable queue on, gives each proxy the queue flags and an emptyDir for the queue', () => {
    const manifests = template('obs', [
      `upstream=${UPSTREAM}`,
      'proxy.queue.enabled=true',
      'proxy.queue.maxBytes=5368709120',
      'proxy.queue.sizeLimit=8Gi',
    ]);
    const proxy = find(manifests, 'Deployment', 'r-cardinal-proxy');
    const [p] = podSpec(proxy).containers;
    expect(p?.args).toEqual(
      expect.arrayContaining([
        '--queue.dir=/var/lib/cardinal-proxy/queue',
        '--queue.max-bytes=5368709120',
        '--queue.full-policy=reject',
      ]),
    );
    expect(p?.volumeMounts).toContainEqual({ name: 'queue', mountPath: '/var/lib/cardinal-proxy' });
    expect(podSpec(proxy).volumes).toContainEqual({ name: 'queue', emptyDir: { sizeLimit: '8Gi' } });
    const off = find(template('obs', [`upstream=${UPSTREAM}`]), 'Deployment', 'r-cardinal-proxy');
    expect(podSpec(off).containers[0]?.args?.some((a) => a.startsWith('--queue.'))).toBe(false);
  });

  it('with proxy.query serves the read path on a Service port of its own, with the counts on an emptyDir', () => {
    const manifests = template('obs', [
      `upstream=${UPSTREAM}`,
      'proxy.query.upstream=http://prometheus.monitoring:9090',
      'proxy.query.timeout=90s',
    ]);
    const proxy = find(manifests, 'Deployment', 'r-cardinal-proxy');
    const [p] = podSpec(proxy).containers;
    expect(p?.args).toEqual(
      expect.arrayContaining([
        '--query.upstream=http://prometheus.monitoring:9090',
        '--query.timeout=90s',
        '--query.usage.max-metrics=100000',
        '--query.usage.state-file=/var/lib/cardinal-usage/usage-state.json',
      ]),
    );
    expect(p?.volumeMounts).toContainEqual({ name: 'usage', mountPath: '/var/lib/cardinal-usage' });
    expect(podSpec(proxy).volumes).toContainEqual({ name: 'usage', emptyDir: { sizeLimit: '256Mi' } });
    const service = find(manifests, 'Service', 'r-cardinal-proxy');
    expect((service.spec as { ports: unknown[] }).ports).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
      { name: 'query', port: 9090, targetPort: 'http', protocol: 'TCP' },
    ]);
    const off = find(template('obs', [`upstream=${UPSTREAM}`]), 'Deployment', 'r-cardinal-proxy');
    expect(podSpec(off).containers[0]?.args?.some((a) => a.startsWith('--query.'))).toBe(false);
  });

  it('in sidecar mode runs the operator without proxy discovery', () => {
    const operator = find(template('obs', ['mode=sidecar']), 'Deployment', 'r-cardinal-operator');
    const args = podSpec(operator).containers[0]?.args ?? [];
    expect(args.filter((a) => a.startsWith('--proxy-service') || a.startsWith('--proxy-endpoints'))).toEqual(
      [],
    );
    expect(args).toContain('--proxy-config-path=/etc/cardinal/policies');
  });

  it('passes the Pushgateway and mounts the credentials Secret when asked, and not otherwise', () => {
    const on = podSpec(
      find(
        template('obs', [
          `upstream=${UPSTREAM}`,
          'proxy.pushgateway.url=http://pushgateway:9091',
          'proxy.pushgateway.lint=warn',
          'proxy.auth.secretName=ingest',
        ]),
        'Deployment',
        'r-cardinal-proxy',
      ),
    );
    expect(on.containers[0]?.args).toEqual(
      expect.arrayContaining([
        '--pushgateway=http://pushgateway:9091',
        '--push.lint=warn',
        '--auth.credentials-file=/etc/cardinal/auth',
      ]),
    );
    expect(on.containers[0]?.volumeMounts).toContainEqual({
      name: 'credentials',
      mountPath: '/etc/cardinal/auth',
      readOnly: true,
    });
    expect(on.volumes).toContainEqual({ name: 'credentials', secret: { secretName: 'ingest' } });

    const off = podSpec(find(template('obs', [`upstream=${UPSTREAM}`]), 'Deployment', 'r-cardinal-proxy'));
    const args = off.containers[0]?.args ?? [];
    expect(args.filter((a) => a.startsWith('--pushgateway') || a.startsWith('--auth.'))).toEqual([]);
    expect(off.volumes?.map((v) => (v as { name: string }).name)).toEqual(['policies']);
  });

  it('with proxy.tls serves HTTPS, probes and scrapes it, and has the operator poll it trusting the CA', () => {
    const manifests = template('obs', [
      `upstream=${UPSTREAM}`,
      'proxy.tls.secretName=proxy-tls',
      'serviceMonitor.enabled=true',
    ]);
    const proxy = podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy'));
    const [p] = proxy.containers;
    expect(p?.args).toEqual(
      expect.arrayContaining([
        '--tls.cert-file=/etc/cardinal/tls/tls.crt',
        '--tls.key-file=/etc/cardinal/tls/tls.key',
      ]),
    );
    expect(p?.readinessProbe?.httpGet).toMatchObject({ scheme: 'HTTPS' });
    expect(p?.livenessProbe?.httpGet).toMatchObject({ scheme: 'HTTPS' });
    expect(proxy.volumes).toContainEqual({
      name: 'tls',
      secret: {
        secretName: 'proxy-tls',
        items: [
          { key: 'tls.crt', path: 'tls.crt' },
          { key: 'tls.key', path: 'tls.key' },
        ],
      },
    });
    const operator = podSpec(find(manifests, 'Deployment', 'r-cardinal-operator'));
    expect(operator.containers[0]?.args).toContain('--proxy-tls-ca-file=/etc/cardinal/proxy-tls/ca.crt');
    expect(operator.volumes).toEqual([
      { name: 'proxy-tls', secret: { secretName: 'proxy-tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
    ]);
    const monitor = find(manifests, 'ServiceMonitor', 'r-cardinal-proxy');
    expect((monitor.spec as { endpoints: unknown[] }).endpoints[0]).toMatchObject({
      scheme: 'https',
      tlsConfig: {
        serverName: 'r-cardinal-proxy.obs.svc',
        ca: { secret: { name: 'proxy-tls', key: 'ca.crt' } },
      },
    });
    // Without it, nothing of the above.
    const plain = template('obs', [`upstream=${UPSTREAM}`]);
    expect(podSpec(find(plain, 'Deployment', 'r-cardinal-operator')).volumes).toBeUndefined();
    expect(
      podSpec(find(plain, 'Deployment', 'r-cardinal-proxy')).containers[0]?.readinessProbe?.httpGet,
    ).not.toHaveProperty('scheme');
  });

  it('with proxy.auth, has the operator poll with its admin token and, with metrics, scrapes with a token', () => {
    const manifests = template('obs', [
      `upstream=${UPSTREAM}`,
      'proxy.auth.secretName=creds',
      'proxy.auth.metrics=true',
      'serviceMonitor.enabled=true',
    ]);
    const proxy = podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy'));
    expect(proxy.containers[0]?.args).toEqual(
      expect.arrayContaining(['--auth.credentials-file=/etc/cardinal/auth', '--metrics.auth']),
    );
    const operator = podSpec(find(manifests, 'Deployment', 'r-cardinal-operator'));
    expect(operator.containers[0]?.args).toContain(
      '--proxy-bearer-token-file=/etc/cardinal/proxy-token/token',
    );
    expect(operator.containers[0]?.volumeMounts).toEqual([
      { name: 'proxy-token', mountPath: '/etc/cardinal/proxy-token', readOnly: true },
    ]);
    // Only the operator's key of the Secret, never the whole credentials file.
    expect(operator.volumes).toEqual([
      {
        name: 'proxy-token',
        secret: { secretName: 'creds', items: [{ key: 'operator.token', path: 'token' }] },
      },
    ]);
    const monitor = find(manifests, 'ServiceMonitor', 'r-cardinal-proxy');
    expect((monitor.spec as { endpoints: unknown[] }).endpoints[0]).toMatchObject({
      authorization: { type: 'Bearer', credentials: { name: 'creds', key: 'scrape.token' } },
    });
    // Without metrics, /metrics stays open and is scraped without a token.
    const open = template('obs', [
      `upstream=${UPSTREAM}`,
      'proxy.auth.secretName=creds',
      'serviceMonitor.enabled=true',
    ]);
    expect(podSpec(find(open, 'Deployment', 'r-cardinal-proxy')).containers[0]?.args).not.toContain(
      '--metrics.auth',
    );
    expect(
      (find(open, 'ServiceMonitor', 'r-cardinal-proxy').spec as { endpoints: unknown[] }).endpoints[0],
    ).not.toHaveProperty('authorization');
  });

  it('with the HPA on leaves the replica count to it', () => {
    const manifests = template('obs', [`upstream=${UPSTREAM}`, 'proxy.autoscaling.enabled=true']);
    expect(find(manifests, 'Deployment', 'r-cardinal-proxy').spec?.replicas).toBeUndefined();
    expect(find(manifests, 'HorizontalPodAutoscaler', 'r-cardinal-proxy')).toMatchObject({
      apiVersion: 'autoscaling/v2',
      spec: {
        scaleTargetRef: { kind: 'Deployment', name: 'r-cardinal-proxy' },
        minReplicas: 2,
        maxReplicas: 10,
      },
    });
  });

  it.each([
    ['no upstream in gateway mode', [], "at '': missing property 'upstream'"],
    [
      'an upstream that is not a URL',
      ['upstream=prometheus:9090'],
      "at '/upstream': 'prometheus:9090' does not match pattern",
    ],
    [
      'an unknown mode',
      [`upstream=${UPSTREAM}`, 'mode=daemonset'],
      "at '/mode': value must be one of 'gateway', 'sidecar'",
    ],
    [
      'zero operator replicas',
      [`upstream=${UPSTREAM}`, 'operator.replicas=0'],
      "at '/operator/replicas': minimum: got 0, want 1",
    ],
    [
      'a misspelt value',
      [`upstream=${UPSTREAM}`, 'proxy.replica=3'],
      "at '/proxy': additional properties 'replica' not allowed",
    ],
    [
      'a log level the programs do not know',
      [`upstream=${UPSTREAM}`, 'proxy.logLevel=verbose'],
      "at '/proxy/logLevel': value must be one of",
    ],
  ])('refuses %s with the schema\u2019s message', (_name, set, message) => {
    const r = helm(['template', 'r', CHART, ...set.flatMap((s) => ['--set', s])]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(message);
  });
});

/** A minimal structural monitoring.coreos.com/v1 ServiceMonitor CRD: enough to accept the kind. */
const SERVICE_MONITOR_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'servicemonitors.monitoring.coreos.com' },
  spec: {
    group: 'monitoring.coreos.com',
    names: {
      kind: 'ServiceMonitor',
      listKind: 'ServiceMonitorList',
      plural: 'servicemonitors',
      singular: 'servicemonitor',
    },
    scope: 'Namespaced',
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        },
      },
    ],
  },
};

describe('the rendered chart on a real API server', () => {
  const track = useCleanup();
  const namespace = `cardinal-${randomBytes(4).toString('hex')}`;
  let plane: ControlPlane;

  beforeAll(async () => {
    plane = track(await startControlPlane());
    await plane.apply(read(CHART_CRD_FILE));
    await plane.apply(JSON.stringify(SERVICE_MONITOR_CRD));
    const wait = await plane.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/metricpolicies.cardinal.dev',
      'crd/servicemonitors.monitoring.coreos.com',
    ]);
    expect(wait.code, wait.stderr).toBe(0);
    await plane.apply(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"${namespace}"}}`);
    await plane.apply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"cardinal-system"}}');
  });

  it.each(CASES)('%s: every manifest passes kubectl apply --dry-run=server', async (_n, set, extra) => {
    const manifests = template(namespace, set, extra);
    const r = await plane.kubectl(['apply', '--dry-run=server', '-f', '-'], {
      input: manifests.map((m) => JSON.stringify(m)).join('\n'),
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // kubectl prints one line per object: `kind.group/name created (server dry run)`.
    expect(r.stdout.trim().split('\n')).toHaveLength(manifests.length);
    expect(r.stdout).not.toMatch(/Warning/);
  });

  it('the sidecar example passes kubectl apply --dry-run=server and mounts the policies', async () => {
    const text = readFileSync(SIDECAR_EXAMPLE, 'utf8');
    const r = await plane.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: text });
    expect(r.code, r.stderr).toBe(0);
    const pod = parseAllDocuments(text)
      .map((d) => d.toJS() as Manifest)
      .find((m) => m.kind === 'Pod');
    const spec = pod?.spec as unknown as PodSpec;
    const proxy = spec.containers.find((c) => c.name === 'cardinal-proxy');
    expect(proxy?.args).toContain('--config=/etc/cardinal/policies');
    expect(spec.volumes).toContainEqual({
      name: 'policies',
      configMap: { name: 'cardinal-proxy-default-policies', optional: true },
    });
    expect(text).toContain('url: http://localhost:8080/api/v1/write');
  });
});
