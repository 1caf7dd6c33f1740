// The test's own workloads on the cluster: a receiving Prometheus, and the senders (a Prometheus
// in agent mode and vmagent) that scrape pods exposing metrics and remote-write through the
// proxy Service by its DNS name. They run under the same kind of security context as the chart's
// pods: non-root, read-only root file system, every capability dropped.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';

export const MONITORING = 'monitoring';
export const SCRAPE_INTERVAL_S = 5;

type Obj = Record<string, unknown>;

const securityContext = {
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
};
const podSecurityContext = {
  runAsNonRoot: true,
  runAsUser: 65534,
  runAsGroup: 65534,
  fsGroup: 65534,
  seccompProfile: { type: 'RuntimeDefault' },
};

function deployment(name: string, container: Obj, volumes: Obj[], config: Record<string, string>): Obj[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: MONITORING },
      data: config,
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: MONITORING },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            automountServiceAccountToken: false,
            securityContext: podSecurityContext,
            terminationGracePeriodSeconds: 5,
            containers: [{ name, imagePullPolicy: 'Never', securityContext, ...container }],
            volumes: [{ name: 'config', configMap: { name } }, ...volumes],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: MONITORING },
      spec: {
        selector: { app: name },
        ports: [{ name: 'http', port: (container.ports as { containerPort: number }[])[0]?.containerPort }],
      },
    },
  ];
}

/**
 * The receiver: Prometheus with its remote-write receiver on, scraping nothing itself. It
 * evaluates one recording rule and writes its query log (query_log_file) to its data volume, and
 * a cardinal-proxy beside it tails that log (`--query.log-file`), counting the rule evaluations
 * as reads: the dashboard's query-log panel. The Service `receiver-usage` exposes that proxy's
 * /metrics (port `metrics`) for a ServiceMonitor.
 */
export function receiver(images: { prometheus: string; proxy: string }): Obj[] {
  const objects = deployment(
    'receiver',
    {
      image: images.prometheus,
      args: [
        '--config.file=/etc/prometheus/prometheus.yml',
        '--storage.tsdb.path=/prometheus',
        '--web.enable-remote-write-receiver',
        '--web.listen-address=:9090',
      ],
      ports: [{ name: 'http', containerPort: 9090 }],
      readinessProbe: { httpGet: { path: '/-/ready', port: 9090 }, periodSeconds: 2 },
      volumeMounts: [
        { name: 'config', mountPath: '/etc/prometheus' },
        { name: 'data', mountPath: '/prometheus' },
      ],
    },
    [{ name: 'data', emptyDir: {} }],
    {
      'prometheus.yml': [
        'global:',
        `  evaluation_interval: ${SCRAPE_INTERVAL_S}s`,
        '  query_log_file: /prometheus/query.log',
        'rule_files: [/etc/prometheus/rules.yml]',
        '',
      ].join('\n'),
      'rules.yml': [
        'groups:',
        '  - name: senders',
        '    rules:',
        '      - record: sender:up:count',
        '        expr: count by (sender) (up)',
        '',
      ].join('\n'),
    },
  );
  const pod = (objects[1] as { spec: { template: { spec: { containers: Obj[] } } } }).spec.template.spec;
  pod.containers.push({
    name: 'cardinal-proxy',
    image: images.proxy,
    imagePullPolicy: 'Never',
    securityContext,
    args: [
      '--listen=0.0.0.0:8080',
      // Nothing writes to this proxy; it is here for the query log.
      '--upstream=http://localhost:9090/api/v1/write',
      '--query.log-file=/prometheus/query.log',
    ],
    ports: [{ name: 'metrics', containerPort: 8080 }],
    readinessProbe: { httpGet: { path: '/-/ready', port: 8080 }, periodSeconds: 2 },
    volumeMounts: [{ name: 'data', mountPath: '/prometheus', readOnly: true }],
  });
  objects.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'receiver-usage', namespace: MONITORING, labels: { app: 'receiver-usage' } },
    spec: { selector: { app: 'receiver' }, ports: [{ name: 'metrics', port: 8080 }] },
  });
  return objects;
}

/** A ServiceMonitor for the receiver's query-log proxy (`receiver-usage`). */
export function receiverUsageMonitor(): Obj {
  return {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata: { name: 'receiver-usage', namespace: MONITORING },
    spec: {
      selector: { matchLabels: { app: 'receiver-usage' } },
      endpoints: [{ port: 'metrics', interval: `${SCRAPE_INTERVAL_S}s` }],
    },
  };
}

/** A Pushgateway, which the proxies forward Pushgateway-protocol pushes to. */
export function pushgateway(image: string): Obj[] {
  return deployment(
    'pushgateway',
    {
      image,
      args: ['--web.listen-address=:9091'],
      ports: [{ name: 'http', containerPort: 9091 }],
      readinessProbe: { httpGet: { path: '/-/ready', port: 9091 }, periodSeconds: 2 },
    },
    [],
    {},
  );
}

/**
 * The senders. Each scrapes itself and another pod every SCRAPE_INTERVAL_S and writes to
 * `writeUrl`, labelling what it sends with sender=<its name>.
 */
export function senders(images: { prometheus: string; vmagent: string }, writeUrl: string): Obj[] {
  const agentConfig = [
    'global:',
    `  scrape_interval: ${SCRAPE_INTERVAL_S}s`,
    '  external_labels: { sender: prometheus-agent }',
    'scrape_configs:',
    '  - job_name: self',
    '    static_configs: [{ targets: ["localhost:9090"] }]',
    '  - job_name: receiver',
    `    static_configs: [{ targets: ["receiver.${MONITORING}.svc.cluster.local:9090"] }]`,
    'remote_write:',
    `  - url: ${writeUrl}`,
    '    queue_config: { batch_send_deadline: 1s }',
    '',
  ].join('\n');
  const vmagentConfig = [
    'global:',
    `  scrape_interval: ${SCRAPE_INTERVAL_S}s`,
    'scrape_configs:',
    '  - job_name: self',
    '    static_configs: [{ targets: ["localhost:8429"] }]',
    '  - job_name: agent',
    `    static_configs: [{ targets: ["prometheus-agent.${MONITORING}.svc.cluster.local:9090"] }]`,
    '',
  ].join('\n');
  return [
    ...deployment(
      'prometheus-agent',
      {
        image: images.prometheus,
        args: [
          '--enable-feature=agent',
          '--config.file=/etc/prometheus/prometheus.yml',
          '--storage.agent.path=/agent',
          '--web.listen-address=:9090',
        ],
        ports: [{ name: 'http', containerPort: 9090 }],
        readinessProbe: { httpGet: { path: '/-/ready', port: 9090 }, periodSeconds: 2 },
        volumeMounts: [
          { name: 'config', mountPath: '/etc/prometheus' },
          { name: 'data', mountPath: '/agent' },
        ],
      },
      [{ name: 'data', emptyDir: {} }],
      { 'prometheus.yml': agentConfig },
    ),
    ...deployment(
      'vmagent',
      {
        image: images.vmagent,
        args: [
          '-promscrape.config=/etc/vmagent/scrape.yml',
          `-remoteWrite.url=${writeUrl}`,
          '-remoteWrite.tmpDataPath=/vmagent-data',
          '-remoteWrite.label=sender=vmagent',
          '-remoteWrite.flushInterval=1s',
          '-httpListenAddr=:8429',
        ],
        ports: [{ name: 'http', containerPort: 8429 }],
        readinessProbe: { httpGet: { path: '/health', port: 8429 }, periodSeconds: 2 },
        volumeMounts: [
          { name: 'config', mountPath: '/etc/vmagent' },
          { name: 'data', mountPath: '/vmagent-data' },
        ],
      },
      [{ name: 'data', emptyDir: {} }],
      { 'scrape.yml': vmagentConfig },
    ),
  ];
}

/** A kubectl apply body for a list of objects. */
export function list(items: Obj[]): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/**
 * prometheus-operator as its own module ships it (example/rbac, kept by
 * hack/build-prometheus-operator.sh in `dir`), in namespace default, with the images built here,
 * and a Prometheus it runs that selects every ServiceMonitor of the cluster and scrapes every
 * SCRAPE_INTERVAL_S. Returns the objects to apply once the CRDs are Established.
 */
export function prometheusOperator(
  dir: string,
  images: { operator: string; reloader: string; prometheus3: string },
): Obj[] {
  const read = (sub: string, file: string) =>
    parseDocument(readFileSync(join(dir, 'rbac', sub, file), 'utf8')).toJS() as Obj;
  const operator = ['service-account', 'cluster-role', 'cluster-role-binding', 'deployment', 'service'].map(
    (f) => read('prometheus-operator', `prometheus-operator-${f}.yaml`),
  );
  for (const o of operator) {
    if (o.kind !== 'Deployment') continue;
    const pod = (o.spec as { template: { spec: { containers: Obj[] } } }).template.spec;
    for (const c of pod.containers) {
      c.image = images.operator;
      c.imagePullPolicy = 'Never';
      c.args = (c.args as string[]).map((a) =>
        a.startsWith('--prometheus-config-reloader=') ? `--prometheus-config-reloader=${images.reloader}` : a,
      );
      c.resources = { requests: { cpu: '20m', memory: '50Mi' }, limits: { memory: '200Mi' } };
    }
  }
  const prometheusRbac = ['service-account', 'cluster-role', 'cluster-role-binding'].map((f) =>
    read('prometheus', `prometheus-${f}.yaml`),
  );
  const prometheus: Obj = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'Prometheus',
    metadata: { name: 'governance', namespace: 'default' },
    spec: {
      image: images.prometheus3,
      imagePullPolicy: 'Never',
      version: 'v3.5.0',
      replicas: 1,
      serviceAccountName: 'prometheus',
      // Every ServiceMonitor in every namespace: here, the chart's.
      serviceMonitorSelector: {},
      serviceMonitorNamespaceSelector: {},
      scrapeInterval: `${SCRAPE_INTERVAL_S}s`,
      evaluationInterval: `${SCRAPE_INTERVAL_S}s`,
      resources: { requests: { cpu: '20m', memory: '100Mi' } },
      securityContext: podSecurityContext,
    },
  };
  return [...operator, ...prometheusRbac, prometheus];
}
