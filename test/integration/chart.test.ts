// The Helm chart charts/cardinal: its generated files are current, `helm lint` and `helm template`
// pass in every mode, a wrong value fails with the schema's message, and every rendered manifest
// is accepted by a real API server (`kubectl apply --dry-run=server`), with the chart's CRD and a
// ServiceMonitor CRD installed.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { RULES_FILE } from '../../charts/alerts.js';
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
  volumes?: {
    name: string;
    configMap?: { name: string; optional?: boolean };
    projected?: { sources: { configMap: { name: string; optional?: boolean } }[] };
  }[];
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
  return parseStrictly(r.stdout);
}

/**
 * Every document of a rendering, parsed strictly: a duplicate key (which most YAML parsers, and
 * kubectl, resolve silently to the last value) or any other YAML error or warning fails the test.
 */
function parseStrictly(text: string): Manifest[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true, strict: true, prettyErrors: true });
  const problems = (Array.isArray(docs) ? docs : [docs]).flatMap((d) =>
    [...d.errors, ...d.warnings].map((e) => `${e.message}\n${String(d).slice(0, 300)}`),
  );
  if (problems.length > 0) throw new Error(`the rendering does not parse strictly:\n${problems.join('\n')}`);
  return (Array.isArray(docs) ? docs : [docs])
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
const OPERATOR = [
  'CustomResourceDefinition/metricpolicies.cardinal.dev',
  'Deployment/r-cardinal-operator',
  'PodDisruptionBudget/r-cardinal-operator',
  'Service/r-cardinal-operator',
];
const PROXY = [
  'Deployment/r-cardinal-proxy',
  'PodDisruptionBudget/r-cardinal-proxy',
  'Service/r-cardinal-proxy',
  // The `helm test` hook.
  'Pod/r-cardinal-test-write',
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
    'gateway with the bundled Redis for shared limits',
    [`upstream=${UPSTREAM}`, 'redis.enabled=true', 'proxy.limits.store.passwordSecret.name=limits-store'],
    [],
    [
      ...RBAC,
      ...OPERATOR,
      ...PROXY,
      'Deployment/r-cardinal-proxy-redis',
      'PodDisruptionBudget/r-cardinal-proxy-redis',
      'Service/r-cardinal-proxy-redis',
    ],
  ],
  [
    'gateway with an existing limit store',
    [`upstream=${UPSTREAM}`, 'redis.enabled=true', 'proxy.limits.store.url=rediss://store.example:6380'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY],
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
  [
    'the PrometheusRule because the cluster serves the API',
    [`upstream=${UPSTREAM}`],
    ['--api-versions', 'monitoring.coreos.com/v1/PrometheusRule'],
    [...RBAC, ...OPERATOR, ...PROXY, 'PrometheusRule/r-cardinal'],
  ],
  [
    'the webhook with self-managed certificates',
    [`upstream=${UPSTREAM}`, 'operator.webhook.enabled=true'],
    [],
    [...RBAC, ...OPERATOR, ...PROXY, 'ValidatingWebhookConfiguration/r-cardinal-metricpolicies'],
  ],
  [
    'the webhook with certificates from cert-manager, because the cluster serves it',
    [`upstream=${UPSTREAM}`, 'operator.webhook.enabled=true'],
    ['--api-versions', 'cert-manager.io/v1/Certificate'],
    [
      ...RBAC,
      ...OPERATOR,
      ...PROXY,
      'ValidatingWebhookConfiguration/r-cardinal-metricpolicies',
      'Issuer/r-cardinal-webhook-selfsigned',
      'Issuer/r-cardinal-webhook-ca',
      'Certificate/r-cardinal-webhook-ca',
      'Certificate/r-cardinal-webhook',
    ],
  ],
  [
    'NetworkPolicies, a proxy ServiceAccount, no CRD and no PDBs',
    [
      `upstream=${UPSTREAM}`,
      'networkPolicy.enabled=true',
      'proxy.serviceAccount.create=true',
      'crds.install=false',
      'operator.podDisruptionBudget.enabled=false',
      'proxy.podDisruptionBudget.enabled=false',
      'prometheusRule.enabled=true',
    ],
    [],
    [
      ...RBAC,
      ...OPERATOR.filter((o) => !o.startsWith('CustomResourceDefinition') && !o.startsWith('PodDisruption')),
      ...PROXY.filter((o) => !o.startsWith('PodDisruption')),
      'NetworkPolicy/r-cardinal-operator',
      'NetworkPolicy/r-cardinal-proxy',
      'ServiceAccount/r-cardinal-proxy',
      'PrometheusRule/r-cardinal',
    ],
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
      'operator.replicaCount',
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
    const manifests = template('obs', [`upstream=${UPSTREAM}`, 'operator.replicaCount=3']);
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
    // The operator's shards, one projected volume, as many as it is told to write.
    expect(c?.args).toContain('--config-shards=4');
    expect(podSpec(proxy).volumes).toContainEqual({
      name: 'policies',
      projected: {
        sources: ['', '-1', '-2', '-3'].map((suffix) => ({
          configMap: { name: `cardinal-proxy-default-policies${suffix}`, optional: true },
        })),
      },
    });
    const service = find(manifests, 'Service', 'r-cardinal-proxy');
    expect((service.spec as { ports: unknown[] }).ports).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
    ]);
  });

  it('passes --workers: the value when set, nothing with a CPU limit to follow, 1 without one', () => {
    const workers = (set: string[]) =>
      (
        podSpec(find(template('obs', [`upstream=${UPSTREAM}`, ...set]), 'Deployment', 'r-cardinal-proxy'))
          .containers[0]?.args ?? []
      ).filter((a: string) => a.startsWith('--workers'));
    expect(workers([])).toEqual(['--workers=1']);
    expect(workers(['proxy.resources.limits.cpu=1500m'])).toEqual([]);
    expect(workers(['proxy.workers=3', 'proxy.resources.limits.cpu=1'])).toEqual(['--workers=3']);
  });

  it('passes the operator\u2019s status write flags when set, and none by default so its own defaults apply', () => {
    const status = (set: string[], extra: string[] = []) =>
      (
        podSpec(
          find(template('obs', [`upstream=${UPSTREAM}`, ...set], extra), 'Deployment', 'r-cardinal-operator'),
        ).containers[0]?.args ?? []
      ).filter((a: string) => /^--status-w/.test(a));
    expect(status([])).toEqual([]);
    expect(status(['operator.statusWorkers=16'])).toEqual(['--status-workers=16']);
    expect(
      status(['operator.statusWorkers=2', 'operator.statusWriteQps=0.5', 'operator.statusWriteBurst=60']),
    ).toEqual(['--status-workers=2', '--status-write-qps=0.5', '--status-write-burst=60']);
    // 0 is a value (no limit), not "unset".
    expect(status(['operator.statusWriteQps=0'])).toEqual(['--status-write-qps=0']);
    // From a values file numbers are floats, which Go would print as 1e-05 or 100000 as 1e+05.
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-chart-status-'));
    const file = join(dir, 'values.yaml');
    writeFileSync(
      file,
      JSON.stringify({ operator: { statusWorkers: 100, statusWriteQps: 0.00001, statusWriteBurst: 100000 } }),
    );
    expect(status([], ['-f', file])).toEqual([
      '--status-workers=100',
      '--status-write-qps=0.00001',
      '--status-write-burst=100000',
    ]);
    writeFileSync(file, JSON.stringify({ operator: { statusWriteQps: 25, statusWorkers: null } }));
    expect(status([], ['-f', file])).toEqual(['--status-write-qps=25']);
  });

  it('with the bundled Redis, points the proxies at it with the password file, the replica count and their pod name', () => {
    const manifests = template('obs', [
      `upstream=${UPSTREAM}`,
      'redis.enabled=true',
      'proxy.replicaCount=4',
      'proxy.limits.store.passwordSecret.name=limits-store',
    ]);
    const [p] = podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy')).containers;
    expect(p?.args).toEqual(
      expect.arrayContaining([
        '--limits.store=redis://r-cardinal-proxy-redis:6379',
        '--limits.store.prefix=cardinal:obs/r-cardinal-proxy',
        '--limits.replicas=4',
        '--limits.store.password-file=/etc/cardinal/limits-store/password',
      ]),
    );
    expect(p?.env).toContainEqual({
      name: 'POD_NAME',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expect(podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy')).volumes).toContainEqual({
      name: 'limits-store',
      secret: { secretName: 'limits-store', items: [{ key: 'password', path: 'password' }] },
    });
    const [r] = podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy-redis')).containers;
    expect(r?.args).toEqual(
      expect.arrayContaining(['--requirepass', '$(REDIS_PASSWORD)', '--maxmemory-policy', 'noeviction']),
    );
    expect(JSON.stringify(manifests)).not.toMatch(/"value":"[^"]*secret/i);
    // Under the autoscaler the share is that of the most replicas it may run.
    const hpa = template('obs', [
      `upstream=${UPSTREAM}`,
      'redis.enabled=true',
      'proxy.autoscaling.enabled=true',
    ]);
    expect(podSpec(find(hpa, 'Deployment', 'r-cardinal-proxy')).containers[0]?.args).toContain(
      '--limits.replicas=10',
    );
    // Without a store the proxies get no store flags.
    const none = template('obs', [`upstream=${UPSTREAM}`]);
    expect(
      podSpec(find(none, 'Deployment', 'r-cardinal-proxy')).containers[0]?.args?.join(' '),
    ).not.toContain('--limits.store');
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

  it('with proxy.stagePlugins mounts each source read-only and loads its files in order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-chart-stages-'));
    const values = (stagePlugins: unknown) => {
      const file = join(dir, `values-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(file, JSON.stringify({ upstream: UPSTREAM, proxy: { stagePlugins } }));
      return ['-f', file];
    };
    const manifests = template(
      'obs',
      [],
      values([
        { name: 'stages', configMap: 'cardinal-stages', files: ['hash-bucket.js', 'sample.js'] },
        { name: 'vendor', image: { reference: 'registry.example/stages:1.0' }, files: ['dist/redact.js'] },
      ]),
    );
    const proxy = podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy'));
    const args = proxy.containers[0]?.args ?? [];
    expect(args.filter((a) => a.startsWith('--stage.plugin'))).toEqual([
      '--stage.plugin=/etc/cardinal/stages/stages/hash-bucket.js',
      '--stage.plugin=/etc/cardinal/stages/stages/sample.js',
      '--stage.plugin=/etc/cardinal/stages/vendor/dist/redact.js',
    ]);
    expect(proxy.containers[0]?.volumeMounts).toEqual(
      expect.arrayContaining([
        { name: 'stage-stages', mountPath: '/etc/cardinal/stages/stages', readOnly: true },
        { name: 'stage-vendor', mountPath: '/etc/cardinal/stages/vendor', readOnly: true },
      ]),
    );
    expect(proxy.volumes).toEqual(
      expect.arrayContaining([
        { name: 'stage-stages', configMap: { name: 'cardinal-stages' } },
        {
          name: 'stage-vendor',
          image: { reference: 'registry.example/stages:1.0', pullPolicy: 'IfNotPresent' },
        },
      ]),
    );
    const off = podSpec(find(template('obs', [`upstream=${UPSTREAM}`]), 'Deployment', 'r-cardinal-proxy'));
    expect(off.containers[0]?.args?.some((a) => a.startsWith('--stage.plugin'))).toBe(false);
    // The schema refuses an entry with no source or two, no files, or a path out of its volume.
    for (const bad of [
      [{ name: 'x', files: ['a.js'] }],
      [{ name: 'x', configMap: 'c', image: { reference: 'i' }, files: ['a.js'] }],
      [{ name: 'x', configMap: 'c', files: [] }],
      [{ name: 'x', configMap: 'c', files: ['../etc/passwd'] }],
    ]) {
      const r = helm(['template', 'r', CHART, ...values(bad)]);
      expect(r.code, JSON.stringify(bad)).not.toBe(0);
      expect(r.stderr).toContain('stagePlugins');
    }
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
      [`upstream=${UPSTREAM}`, 'operator.replicaCount=0'],
      "at '/operator/replicaCount': minimum: got 0, want 1",
    ],
    [
      'no status workers',
      [`upstream=${UPSTREAM}`, 'operator.statusWorkers=0'],
      "at '/operator/statusWorkers': minimum: got 0, want 1",
    ],
    [
      'a status write rate the operator cannot parse',
      [`upstream=${UPSTREAM}`, 'operator.statusWriteQps=1e3'],
      "'1e3' does not match pattern",
    ],
    [
      'a misspelt value',
      [`upstream=${UPSTREAM}`, 'proxy.replicas=3'],
      "at '/proxy': additional properties 'replicas' not allowed",
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

describe('the chart\u2019s conventions', () => {
  const gw = [`upstream=${UPSTREAM}`];
  const deployment = (set: string[], name: string) => podSpec(find(template('obs', set), 'Deployment', name));

  it('lints clean on its defaults alone, and fails an install without an upstream with a hint', () => {
    const lint = helm(['lint', '--strict', CHART]);
    expect(lint.stdout + lint.stderr).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(lint.stdout + lint.stderr).not.toMatch(/\[(WARNING|INFO)\]/);
    const r = helm(['template', 'r', CHART]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('upstream is required in gateway mode');
    expect(r.stderr).toContain('--set upstream=http://');
    expect(helm(['template', 'r', CHART, '--set', 'mode=sidecar']).code).toBe(0);
  });

  it('has an icon, and the file it names is in the chart', () => {
    const chart = read(`${CHART_DIR}/Chart.yaml`);
    expect(chart).toMatch(/^icon: https:\/\/\S+\/charts\/cardinal\/icon\.svg$/m);
    expect(read(`${CHART_DIR}/icon.svg`)).toMatch(/^<svg /);
  });

  it('names images registry/repository:tag@digest', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const manifests = template('obs', [
      ...gw,
      'proxy.image.registry=registry.example.com',
      'proxy.image.tag=1.2.3',
      `proxy.image.digest=${digest}`,
      'operator.image.registry=',
    ]);
    expect(podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy')).containers[0]).toMatchObject({
      image: `registry.example.com/cardinal-dev/cardinal-proxy:1.2.3@${digest}`,
    });
    expect(podSpec(find(manifests, 'Deployment', 'r-cardinal-operator')).containers[0]).toMatchObject({
      image: 'cardinal-dev/cardinal-operator:0.1.0',
    });
    const r = helm([
      'template',
      'r',
      CHART,
      '--set',
      `upstream=${UPSTREAM}`,
      '--set',
      'proxy.image.digest=latest',
    ]);
    expect(r.stderr).toContain("at '/proxy/image/digest'");
  });

  it('adds commonLabels, extraEnv, extraVolumes and extraVolumeMounts, each key once', () => {
    const manifests = template('obs', [
      ...gw,
      'commonLabels.team=platform',
      'commonLabels.app\\.kubernetes\\.io/name=ignored',
      'proxy.podLabels.app\\.kubernetes\\.io/component=ignored',
      'proxy.podLabels.tier=ingest',
      'proxy.extraEnv[0].name=GOMEMLIMIT',
      'proxy.extraEnv[0].value=900MiB',
      'proxy.extraVolumes[0].name=scratch',
      'proxy.extraVolumes[0].emptyDir.medium=Memory',
      'proxy.extraVolumeMounts[0].name=scratch',
      'proxy.extraVolumeMounts[0].mountPath=/scratch',
      'operator.extraEnv[0].name=X',
      'operator.extraEnv[0].value=y',
    ]);
    for (const m of manifests) {
      const labels = (m.metadata as { labels?: Record<string, string> }).labels ?? {};
      expect(labels.team, `${m.kind}/${m.metadata.name}`).toBe('platform');
      expect(labels['app.kubernetes.io/name']).toBe('cardinal');
    }
    const proxy = find(manifests, 'Deployment', 'r-cardinal-proxy');
    const podLabels = (proxy.spec as { template: { metadata: { labels: Record<string, string> } } }).template
      .metadata.labels;
    expect(podLabels).toMatchObject({
      'app.kubernetes.io/component': 'proxy',
      tier: 'ingest',
      team: 'platform',
    });
    const pod = podSpec(proxy);
    expect(pod.containers[0]?.env).toEqual([
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'GOMEMLIMIT', value: '900MiB' },
    ]);
    expect(pod.volumes).toContainEqual({ name: 'scratch', emptyDir: { medium: 'Memory' } });
    expect(pod.containers[0]?.volumeMounts).toContainEqual({ name: 'scratch', mountPath: '/scratch' });
    expect(podSpec(find(manifests, 'Deployment', 'r-cardinal-operator')).containers[0]?.env).toContainEqual({
      name: 'X',
      value: 'y',
    });
  });

  it('takes security contexts and probes from the values, and a startup probe by default', () => {
    const defaults = deployment(gw, 'r-cardinal-proxy').containers[0] as Container & {
      startupProbe?: unknown;
    };
    expect(defaults.startupProbe).toEqual({
      httpGet: { path: '/-/healthy', port: 'http' },
      periodSeconds: 2,
      failureThreshold: 60,
    });
    const operator = deployment(gw, 'r-cardinal-operator').containers[0] as Container & {
      startupProbe?: unknown;
    };
    expect(operator.startupProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'metrics' } });
    const set = [
      ...gw,
      'proxy.securityContext.runAsUser=10001',
      'proxy.podSecurityContext.fsGroup=10001',
      'proxy.livenessProbe.timeoutSeconds=5',
      'proxy.readinessProbe.tcpSocket.port=http',
      'proxy.startupProbe.enabled=false',
    ];
    const pod = deployment(set, 'r-cardinal-proxy');
    const c = pod.containers[0] as Container & { startupProbe?: unknown; readinessProbe?: unknown };
    expect(c.securityContext?.runAsUser).toBe(10001);
    expect(pod.securityContext?.fsGroup).toBe(10001);
    expect(c.livenessProbe).toEqual({
      httpGet: { path: '/-/healthy', port: 'http' },
      periodSeconds: 10,
      timeoutSeconds: 5,
    });
    expect(c.readinessProbe).toEqual({ tcpSocket: { port: 'http' }, periodSeconds: 5 });
    expect(c.startupProbe).toBeUndefined();
  });

  it('spreads pods: the anti-affinity preset, topology spread with the selector filled in, or the given affinity', () => {
    const selector = (component: string) => ({
      'app.kubernetes.io/name': 'cardinal',
      'app.kubernetes.io/instance': 'r',
      'app.kubernetes.io/component': component,
    });
    const soft = deployment(gw, 'r-cardinal-proxy') as PodSpec & { affinity?: unknown };
    expect(soft.affinity).toEqual({
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              topologyKey: 'kubernetes.io/hostname',
              labelSelector: { matchLabels: selector('proxy') },
            },
          },
        ],
      },
    });
    const hard = deployment([...gw, 'operator.podAntiAffinity=hard'], 'r-cardinal-operator') as PodSpec & {
      affinity?: unknown;
    };
    expect(hard.affinity).toEqual({
      podAntiAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selector('operator') } },
        ],
      },
    });
    const spread = deployment(
      [
        ...gw,
        'proxy.podAntiAffinity=none',
        'proxy.topologySpreadConstraints[0].maxSkew=1',
        'proxy.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone',
        'proxy.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway',
      ],
      'r-cardinal-proxy',
    ) as PodSpec & { affinity?: unknown; topologySpreadConstraints?: unknown };
    expect(spread.affinity).toBeUndefined();
    expect(spread.topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchLabels: selector('proxy') },
      },
    ]);
    const given = deployment([...gw, 'proxy.affinity.nodeAffinity.x=y'], 'r-cardinal-proxy') as PodSpec & {
      affinity?: unknown;
    };
    expect(given.affinity).toEqual({ nodeAffinity: { x: 'y' } });
  });

  it('renders a PodDisruptionBudget for the operator and the proxies', () => {
    const manifests = template('obs', gw);
    for (const name of ['r-cardinal-operator', 'r-cardinal-proxy']) {
      expect(find(manifests, 'PodDisruptionBudget', name).spec).toMatchObject({ maxUnavailable: 1 });
    }
  });

  it('uses its own or a given ServiceAccount, with annotations for a cloud identity', () => {
    const manifests = template('obs', [
      ...gw,
      'operator.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/op',
      'proxy.serviceAccount.create=true',
      'proxy.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/px',
    ]);
    const sa = find(manifests, 'ServiceAccount', 'r-cardinal-operator') as Manifest & {
      metadata: { annotations?: Record<string, string> };
    };
    expect(sa.metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::1:role/op' });
    const proxySa = find(manifests, 'ServiceAccount', 'r-cardinal-proxy') as Manifest & {
      automountServiceAccountToken?: boolean;
    };
    expect(proxySa.automountServiceAccountToken).toBe(false);
    expect(podSpec(find(manifests, 'Deployment', 'r-cardinal-proxy')).serviceAccountName).toBe(
      'r-cardinal-proxy',
    );

    const existing = template('obs', [
      ...gw,
      'operator.serviceAccount.create=false',
      'operator.serviceAccount.name=ops',
    ]);
    expect(existing.some((m) => m.kind === 'ServiceAccount')).toBe(false);
    expect(podSpec(find(existing, 'Deployment', 'r-cardinal-operator')).serviceAccountName).toBe('ops');
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      expect((find(existing, kind, 'r-cardinal-operator') as { subjects?: unknown }).subjects).toEqual([
        { kind: 'ServiceAccount', name: 'ops', namespace: 'obs' },
      ]);
    }
  });

  it('configures the ServiceMonitors: interval, timeout, relabelings and their namespace', () => {
    const manifests = template('obs', [
      ...gw,
      'serviceMonitor.enabled=true',
      'serviceMonitor.interval=15s',
      'serviceMonitor.scrapeTimeout=10s',
      'serviceMonitor.namespace=monitoring',
      'serviceMonitor.relabelings[0].targetLabel=cluster',
      'serviceMonitor.relabelings[0].replacement=prod',
      'serviceMonitor.metricRelabelings[0].action=drop',
      'serviceMonitor.metricRelabelings[0].regex=nodejs_.*',
      'serviceMonitor.metricRelabelings[0].sourceLabels[0]=__name__',
    ]);
    for (const name of ['r-cardinal-operator', 'r-cardinal-proxy']) {
      const sm = find(manifests, 'ServiceMonitor', name);
      expect(sm.metadata.namespace).toBe('monitoring');
      expect(sm.spec).toMatchObject({
        namespaceSelector: { matchNames: ['obs'] },
        endpoints: [
          {
            interval: '15s',
            scrapeTimeout: '10s',
            relabelings: [{ targetLabel: 'cluster', replacement: 'prod' }],
            metricRelabelings: [{ action: 'drop', regex: 'nodejs_.*', sourceLabels: ['__name__'] }],
          },
        ],
      });
    }
  });

  it('renders NetworkPolicies that open only the pods\u2019 ports, and always let the operator poll the proxies', () => {
    const open = template('obs', [...gw, 'networkPolicy.enabled=true']);
    expect(find(open, 'NetworkPolicy', 'r-cardinal-proxy').spec).toEqual({
      podSelector: {
        matchLabels: {
          'app.kubernetes.io/name': 'cardinal',
          'app.kubernetes.io/instance': 'r',
          'app.kubernetes.io/component': 'proxy',
        },
      },
      policyTypes: ['Ingress'],
      ingress: [{ ports: [{ port: 'http', protocol: 'TCP' }] }],
    });
    const narrow = template('obs', [
      ...gw,
      'networkPolicy.enabled=true',
      'networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring',
    ]);
    const ingress = (
      find(narrow, 'NetworkPolicy', 'r-cardinal-proxy').spec as { ingress: { from: unknown[] }[] }
    ).ingress[0];
    expect(ingress?.from).toEqual([
      { namespaceSelector: { matchLabels: { team: 'monitoring' } } },
      {
        podSelector: {
          matchLabels: {
            'app.kubernetes.io/name': 'cardinal',
            'app.kubernetes.io/instance': 'r',
            'app.kubernetes.io/component': 'operator',
          },
        },
      },
    ]);
  });

  it('renders the CRD as generated, kept on uninstall, or not at all', () => {
    const generated = parseStrictly(read(CHART_CRD_FILE))[0]!;
    const crd = find(template('obs', gw), 'CustomResourceDefinition', 'metricpolicies.cardinal.dev');
    expect(crd.spec).toEqual(generated.spec);
    expect((crd.metadata as { annotations?: unknown }).annotations).toEqual({
      'helm.sh/resource-policy': 'keep',
    });
    const unkept = find(
      template('obs', [...gw, 'crds.keep=false']),
      'CustomResourceDefinition',
      'metricpolicies.cardinal.dev',
    );
    expect((unkept.metadata as { annotations?: unknown }).annotations).toBeUndefined();
    expect(
      template('obs', [...gw, 'crds.install=false']).some((m) => m.kind === 'CustomResourceDefinition'),
    ).toBe(false);
  });

  it('renders the shipped alerting rules as a PrometheusRule selecting the chart\u2019s own jobs', () => {
    const rule = find(
      template('obs', [...gw, 'prometheusRule.enabled=true', 'prometheusRule.labels.release=kps']),
      'PrometheusRule',
      'r-cardinal',
    );
    expect((rule.metadata as { labels?: Record<string, string> }).labels?.release).toBe('kps');
    const shipped = parseStrictly(read(RULES_FILE))[0] as unknown as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const rendered = (rule.spec as { groups: { rules: { alert: string; expr: string }[] }[] }).groups;
    expect(rendered.flatMap((g) => g.rules.map((r) => r.alert))).toEqual(
      shipped.groups.flatMap((g) => g.rules.map((r) => r.alert)),
    );
    const expr = (alert: string) => rendered.flatMap((g) => g.rules).find((r) => r.alert === alert)?.expr;
    expect(expr('CardinalProxyDown')).toBe('up{job="r-cardinal-proxy"} == 0');
    expect(expr('CardinalOperatorDown')).toBe('up{job="r-cardinal-operator"} == 0');
    expect(JSON.stringify(rendered)).not.toContain('=~\\".*cardinal-');
  });

  it('with operator.webhook.enabled registers the webhook and serves it from the operator, with either certificate source', () => {
    const selfManaged = template('obs', [
      ...gw,
      'operator.webhook.enabled=true',
      'operator.webhook.failurePolicy=Ignore',
    ]);
    const vwc = find(
      selfManaged,
      'ValidatingWebhookConfiguration',
      'r-cardinal-metricpolicies',
    ) as Manifest & {
      webhooks: Record<string, unknown>[];
    };
    expect(vwc.webhooks).toEqual([
      {
        name: 'validate.metricpolicies.cardinal.dev',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: 'Ignore',
        timeoutSeconds: 5,
        matchPolicy: 'Equivalent',
        clientConfig: {
          service: {
            name: 'r-cardinal-operator',
            namespace: 'obs',
            path: '/validate-metricpolicy',
            port: 443,
          },
        },
        rules: [
          {
            apiGroups: ['cardinal.dev'],
            apiVersions: ['v1alpha1'],
            resources: ['metricpolicies'],
            operations: ['CREATE', 'UPDATE'],
            scope: 'Namespaced',
          },
        ],
      },
    ]);
    const op = podSpec(find(selfManaged, 'Deployment', 'r-cardinal-operator'));
    expect(op.containers[0]?.args).toEqual(
      expect.arrayContaining([
        '--webhook-listen=:9443',
        '--webhook-secret=r-cardinal-webhook-tls',
        '--webhook-configuration=r-cardinal-metricpolicies',
        '--webhook-hosts=r-cardinal-operator.obs.svc',
      ]),
    );
    expect(
      (find(selfManaged, 'Service', 'r-cardinal-operator').spec as { ports: unknown[] }).ports,
    ).toContainEqual({
      name: 'webhook',
      port: 443,
      targetPort: 'webhook',
      protocol: 'TCP',
    });
    const rules = (m: Manifest) => JSON.stringify((m as unknown as { rules: unknown[] }).rules);
    expect(rules(find(selfManaged, 'ClusterRole', 'r-cardinal-operator'))).toContain(
      '"resources":["validatingwebhookconfigurations"],"resourceNames":["r-cardinal-metricpolicies"],"verbs":["get","update"]',
    );
    expect(rules(find(selfManaged, 'Role', 'r-cardinal-operator'))).toContain(
      '"resources":["secrets"],"resourceNames":["r-cardinal-webhook-tls"],"verbs":["get","update"]',
    );

    const cm = template('obs', [...gw, 'operator.webhook.enabled=true', 'operator.webhook.certManager=true']);
    expect(
      (
        find(cm, 'ValidatingWebhookConfiguration', 'r-cardinal-metricpolicies').metadata as {
          annotations?: unknown;
        }
      ).annotations,
    ).toEqual({ 'cert-manager.io/inject-ca-from': 'obs/r-cardinal-webhook' });
    expect(find(cm, 'Certificate', 'r-cardinal-webhook').spec).toMatchObject({
      secretName: 'r-cardinal-webhook-tls',
      dnsNames: ['r-cardinal-operator.obs.svc', 'r-cardinal-operator.obs.svc.cluster.local'],
    });
    const cmOp = podSpec(find(cm, 'Deployment', 'r-cardinal-operator'));
    expect(cmOp.containers[0]?.args).toContain('--webhook-cert-dir=/etc/cardinal/webhook');
    expect(cmOp.containers[0]?.args?.some((a) => a.startsWith('--webhook-secret'))).toBe(false);
    expect(rules(find(cm, 'Role', 'r-cardinal-operator'))).not.toContain('secrets');
    const off = template('obs', gw);
    expect(off.some((m) => m.kind === 'ValidatingWebhookConfiguration')).toBe(false);
    expect(rules(find(off, 'Role', 'r-cardinal-operator'))).not.toContain('secrets');
  });

  it('has a `helm test` hook that writes one sample through the proxy Service with the proxy image', () => {
    const hook = find(template('obs', gw), 'Pod', 'r-cardinal-test-write') as Manifest & {
      metadata: { annotations: Record<string, string> };
    };
    expect(hook.metadata.annotations['helm.sh/hook']).toBe('test');
    const c = (hook.spec as unknown as { containers: (Container & { image: string; command: string[] })[] })
      .containers[0]!;
    expect(c.image).toBe('ghcr.io/cardinal-dev/cardinal-proxy:0.1.0');
    expect(c.command).toEqual(['node', '/app/dist/proxy/tools/write-sample.js']);
    expect(c.args).toEqual(['http://r-cardinal-proxy.obs.svc:8080/api/v1/write']);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
    // The image's WORKDIR is /app and its dist/ is this build's (Dockerfile.proxy).
    expect(readFileSync(join(ROOT, 'dist/proxy/tools/write-sample.js'), 'utf8')).toMatch(/write-sample/);
    expect(read('Dockerfile.proxy')).toMatch(/^COPY --from=build \/src\/dist \.\/dist$/m);
  });
});

/** A minimal structural CRD of another project's kind: enough for the API server to accept it. */
const structuralCrd = (group: string, kind: string) => ({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${kind.toLowerCase()}s.${group}` },
  spec: {
    group,
    names: {
      kind,
      listKind: `${kind}List`,
      plural: `${kind.toLowerCase()}s`,
      singular: kind.toLowerCase(),
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
});
/** ServiceMonitor and PrometheusRule (Prometheus Operator), Issuer and Certificate (cert-manager). */
const FOREIGN_CRDS = [
  structuralCrd('monitoring.coreos.com', 'ServiceMonitor'),
  structuralCrd('monitoring.coreos.com', 'PrometheusRule'),
  structuralCrd('cert-manager.io', 'Issuer'),
  structuralCrd('cert-manager.io', 'Certificate'),
];

describe('the rendered chart on a real API server', () => {
  const track = useCleanup();
  const namespace = `cardinal-${randomBytes(4).toString('hex')}`;
  let plane: ControlPlane;

  beforeAll(async () => {
    plane = track(await startControlPlane());
    await plane.apply(read(CHART_CRD_FILE));
    await plane.apply(FOREIGN_CRDS.map((c) => JSON.stringify(c)).join('\n'));
    const wait = await plane.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/metricpolicies.cardinal.dev',
      ...FOREIGN_CRDS.map((c) => `crd/${c.metadata.name}`),
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

  it('fails an install without an upstream with a hint, and prints NOTES that say how to verify one', async () => {
    const kube = ['--kubeconfig', plane.kubeconfig];
    const missing = helm(['install', 'r', CHART, '--dry-run=client', ...kube]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('upstream is required in gateway mode');
    const r = helm([
      'install',
      'r',
      CHART,
      '--dry-run=client',
      '-n',
      'obs',
      '--set',
      `upstream=${UPSTREAM}`,
      // The CRD this file installed is not the release's to adopt (README, "Upgrading").
      '--set',
      'crds.install=false',
      ...kube,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
    expect(notes).toContain('http://r-cardinal-proxy.obs.svc:8080/api/v1/write');
    expect(notes).toContain('kubectl get mp -A');
    expect(notes).toContain('helm test r -n obs');
    expect(notes).toContain('/api/v1/status/config');
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
      projected: {
        sources: ['', '-1', '-2', '-3'].map((suffix) => ({
          configMap: { name: `cardinal-proxy-default-policies${suffix}`, optional: true },
        })),
      },
    });
    expect(text).toContain('url: http://localhost:8080/api/v1/write');
  });
});
