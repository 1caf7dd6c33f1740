import { readFileSync } from 'node:fs';
import {
  bool,
  positiveDuration as duration,
  hostPort,
  nonNegativeNumber,
  parseFlags,
  positiveInt,
  UsageError,
} from '../../lib/flags.js';
import { type ProxySource, parseProxyEndpoints, proxyServiceName } from '../proxies/source.js';

export interface OperatorOptions {
  /** undefined: KUBECONFIG, ~/.kube/config, or the pod's service account. */
  readonly kubeconfig: string | undefined;
  readonly namespace: string;
  readonly metricsHost: string;
  readonly metricsPort: number;
  readonly logLevel: string;
  /** How long shutdown may take to finish queued reconciles before the process exits anyway. */
  readonly shutdownTimeoutMs: number;
  /** Where the proxies of each instance are found; `none` leaves Ready and Degraded Unknown. */
  readonly proxies: ProxySource;
  /** The directory the proxies mount their ConfigMap at: their `--config`. */
  readonly proxyConfigPath: string;
  /** How long one poll of one proxy may take before it counts as unreachable. */
  readonly proxyTimeoutMs: number;
  /**
   * Poll the proxies over HTTPS (their --tls.cert-file), trusting the CA in `caFile`. `serverName`
   * is the name their certificate is checked against; undefined: the proxy Service's DNS name
   * (<service>.<namespace>.svc) with --proxy-service, the URL's host with --proxy-endpoints.
   */
  readonly proxyTls: { readonly caFile: string; readonly serverName: string | undefined } | undefined;
  /** A token of a proxy credential with the admin role, sent with every poll. */
  readonly proxyBearerTokenFile: string | undefined;
  /** How often every instance is reconciled again to refresh the policies' status from the proxies. */
  readonly statusIntervalMs: number;
  /**
   * MetricPolicy status writes per second, over all policies, and the burst allowed; Events get a
   * bucket of their own with the same numbers. 0: no client-side limit (the default).
   */
  readonly statusWriteQps: number;
  readonly statusWriteBurst: number;
  /** Status writes in flight at once. */
  readonly statusWorkers: number;
  /** ConfigMaps each instance's configuration is split over. */
  readonly configShards: number;
  /** Usage sources for spec.unused; undefined when --usage=false. */
  readonly usage:
    | {
        readonly dashboardSelector: string;
        /** Empty: every namespace. */
        readonly dashboardNamespaces: readonly string[];
        readonly prometheusRules: boolean;
      }
    | undefined;
  /** The validating admission webhook (operator/webhook/), served by every replica; undefined: off. */
  readonly webhook: WebhookOptions | undefined;
  /** Leader election: only the holder of the Lease reconciles and writes. */
  readonly leaderElection: {
    readonly enabled: boolean;
    readonly namespace: string;
    readonly leaseDurationMs: number;
    readonly renewDeadlineMs: number;
    readonly retryPeriodMs: number;
  };
}

export interface WebhookOptions {
  readonly host: string;
  readonly port: number;
  /** Where the serving certificate comes from. */
  readonly certs:
    | { readonly kind: 'dir'; readonly dir: string }
    | {
        readonly kind: 'self-managed';
        readonly secretName: string;
        readonly webhookConfiguration: string;
        readonly hosts: readonly string[];
        readonly servingValidityMs: number;
        readonly caValidityMs: number;
        readonly syncIntervalMs: number;
      };
}

/** Where Kubernetes mounts the pod's namespace (the service account volume). */
export const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
export const DEFAULT_NAMESPACE = 'cardinal-system';
/** Where the chart mounts an instance's ConfigMap in its proxies, and what it passes as `--config`. */
export const DEFAULT_PROXY_CONFIG_PATH = '/etc/cardinal/policies';
/** kube-prometheus-stack's Grafana sidecar loads ConfigMaps with this label as dashboards. */
export const DEFAULT_DASHBOARD_SELECTOR = 'grafana_dashboard=1';

export const usage = `Usage: cardinal-operator [flags]

Renders MetricPolicy resources into the ConfigMaps that cardinal-proxy pods mount, and reports in
each policy's status whether the proxies run it and what it drops.

Flags:
  --kubeconfig PATH           Credentials; default KUBECONFIG, ~/.kube/config, or the pod's service account.
  --namespace NS              Where the proxies' ConfigMaps and Services live; default the pod's
                              namespace, else ${DEFAULT_NAMESPACE}.
  --metrics-listen ADDR       /metrics, /healthz and /readyz; default :8081.
  --log-level LEVEL           trace, debug, info, warn, error; default info.
  --shutdown-timeout DUR      Time to finish queued reconciles on SIGTERM; default 30s.

Proxy discovery (at most one of the first two; with neither, Ready and Degraded stay Unknown):
  --proxy-service NAME        Find the proxies through the EndpointSlices of a Service in --namespace:
                              NAME for instance "default", NAME-<instance> for any other instance.
  --proxy-endpoints URL,...   The proxies of instance "default", as base URLs such as
                              http://10.0.0.7:8080; for sidecars and clusters without Services.
  --proxy-config-path DIR     Where the proxies mount their ConfigMap (their --config); default
                              ${DEFAULT_PROXY_CONFIG_PATH}. The configuration hash they report depends on it.
  --proxy-timeout DUR         Time one proxy has to answer a poll; default 5s.
  --proxy-tls-ca-file FILE    Poll the proxies over HTTPS (they serve --tls.cert-file), trusting the CA
                              certificate(s) in FILE, re-read every round.
  --proxy-tls-server-name N   The name the proxies' certificate is checked against; default the proxy
                              Service's DNS name, <service>.<namespace>.svc (pods are polled by IP).
  --proxy-bearer-token-file F Send this token with every poll, re-read each time: with
                              --auth.credentials-file, the proxies' status and statistics need a
                              credential with the admin role.
  --status-interval DUR       How often statuses are refreshed from the proxies; default 30s.
  --status-write-qps N        A client-side limit on status writes per second, all policies; Events get
                              a bucket of their own with the same numbers. Default 0: no limit, as
                              controller-runtime's clients since v0.21; the API server's priority and
                              fairness paces the writes, and a 429 it answers with is retried after
                              its Retry-After (cardinal_operator_api_throttled_total counts them).
  --status-write-burst N      With --status-write-qps: writes allowed at once above it; default 30.
  --status-workers N          Status writes in flight at once, so one slow write holds up no other and
                              the operator never has more open; default 8.
  --config-shards N           ConfigMaps each instance's configuration is split over, by a hash of the
                              policy: <instance ConfigMap>, then -1 .. -(N-1). The proxies must mount all
                              N in one projected volume (the chart's operator.configShards does both).
                              Each holds at most 768 KiB; default 1.

Usage-aware governance (spec.unused: what PrometheusRules and Grafana dashboards read):
  --usage=false               Watch no usage sources; spec.unused then judges only by the metrics and
                              expressions a policy lists itself.
  --dashboard-selector SEL    Label selector of the ConfigMaps holding Grafana dashboards (one JSON
                              per key); default ${DEFAULT_DASHBOARD_SELECTOR}.
  --dashboard-namespaces NS,...  Where dashboards are looked for; default every namespace.
  --prometheus-rules=false    Read no PrometheusRules (read by default, when monitoring.coreos.com/v1
                              is served).

Validating admission webhook (refuses at kubectl apply what the proxy's validator refuses):
  --webhook-listen ADDR       Serve it over HTTPS on ADDR, e.g. :9443; off by default.
  --webhook-cert-dir DIR      Serve DIR/tls.crt and DIR/tls.key (a mounted cert-manager Secret),
                              re-read when they change.
  --webhook-secret NAME       Or: keep a self-managed CA and serving certificate in Secret NAME in
                              --namespace, renewed after two thirds of their life, and write the CA
                              into the caBundle of --webhook-configuration.
  --webhook-configuration N   The ValidatingWebhookConfiguration to write the caBundle into.
  --webhook-hosts H,...       DNS names and IPs the self-managed certificate names; default
                              cardinal-operator.<namespace>.svc.
  --webhook-cert-validity DUR Self-managed serving certificate lifetime; default 2160h (90 days).
  --webhook-ca-validity DUR   Self-managed CA lifetime; default 43800h (5 years).
  --webhook-cert-sync DUR     How often the Secret is checked; default 1m.

Leader election (replicas share a coordination.k8s.io Lease named cardinal-operator; only its
holder reconciles and writes; a replica that loses it exits, to be restarted as a standby):
  --leader-elect=false        Run without a Lease (one replica only).
  --leader-elect-namespace NS Where the Lease lives; default --namespace.
  --leader-elect-lease-duration DUR   How long a Lease holds without renewal; default 15s.
  --leader-elect-renew-deadline DUR   How long the leader keeps trying to renew; default 10s.
  --leader-elect-retry-period DUR     How often to try to acquire or renew; default 2s.
  -h, --help                  This text.

Durations are written like 500ms, 30s, 1m or 1m30s.
`;

export { UsageError } from '../../lib/flags.js';

/** Parses the flags; `podNamespace` reads the pod's namespace file, and is replaceable for tests. */
export function parseOperatorOptions(
  argv: readonly string[],
  podNamespace: () => string | undefined = readPodNamespace,
): OperatorOptions | 'help' {
  const v = parse(argv).values;
  if (v.help) return 'help';
  for (const [name, value] of Object.entries(v)) {
    if (value === '') throw new UsageError(`--${name} needs a value`);
  }
  const { host, port } = hostPort('--metrics-listen', v['metrics-listen'] ?? ':8081');
  const namespace = v.namespace ?? podNamespace() ?? DEFAULT_NAMESPACE;
  const statusWriteQps = nonNegativeNumber('--status-write-qps', v['status-write-qps'] ?? '0');
  const statusWriteBurst = positiveInt('--status-write-burst', v['status-write-burst'] ?? '30');
  const statusWorkers = positiveInt('--status-workers', v['status-workers'] ?? '8');
  const configShards = positiveInt('--config-shards', v['config-shards'] ?? '1');
  if (configShards > 64) throw new UsageError(`--config-shards ${configShards}: at most 64`);
  return Object.freeze({
    kubeconfig: v.kubeconfig,
    namespace,
    metricsHost: host,
    metricsPort: port,
    logLevel: v['log-level'] ?? 'info',
    shutdownTimeoutMs: duration('--shutdown-timeout', v['shutdown-timeout'] ?? '30s'),
    proxies: proxySource(v['proxy-service'], v['proxy-endpoints']),
    proxyConfigPath: v['proxy-config-path'] ?? DEFAULT_PROXY_CONFIG_PATH,
    proxyTimeoutMs: duration('--proxy-timeout', v['proxy-timeout'] ?? '5s'),
    proxyTls: proxyTls(v['proxy-tls-ca-file'], v['proxy-tls-server-name']),
    proxyBearerTokenFile: v['proxy-bearer-token-file'],
    statusIntervalMs: duration('--status-interval', v['status-interval'] ?? '30s'),
    statusWriteQps,
    statusWriteBurst,
    statusWorkers,
    configShards,
    usage: usageSources(v),
    webhook: webhookOptions(v, namespace),
    leaderElection: leaderElection(v, namespace),
  });
}

function usageSources(v: ReturnType<typeof parse>['values']): OperatorOptions['usage'] {
  if (!bool('--usage', v.usage, true)) return undefined;
  const selector = v['dashboard-selector'] ?? DEFAULT_DASHBOARD_SELECTOR;
  // Equality-based requirements only (key=value, key!=value, key): what a watch URL carries as is.
  if (!/^[A-Za-z0-9._/-]+(!?==?[A-Za-z0-9._-]*)?(,[A-Za-z0-9._/-]+(!?==?[A-Za-z0-9._-]*)?)*$/.test(selector))
    throw new UsageError(
      `--dashboard-selector ${selector}: want a label selector such as grafana_dashboard=1`,
    );
  const namespaces = (v['dashboard-namespaces'] ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  for (const n of namespaces) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n))
      throw new UsageError(`--dashboard-namespaces: ${JSON.stringify(n)} is not a namespace name`);
  }
  return Object.freeze({
    dashboardSelector: selector,
    dashboardNamespaces: Object.freeze(namespaces),
    prometheusRules: bool('--prometheus-rules', v['prometheus-rules'], true),
  });
}

function webhookOptions(
  v: ReturnType<typeof parse>['values'],
  namespace: string,
): WebhookOptions | undefined {
  const listen = v['webhook-listen'];
  const dir = v['webhook-cert-dir'];
  const secretName = v['webhook-secret'];
  const selfManagedFlags = [
    'webhook-configuration',
    'webhook-hosts',
    'webhook-cert-validity',
    'webhook-ca-validity',
  ];
  if (listen === undefined) {
    const stray = ['webhook-cert-dir', 'webhook-secret', ...selfManagedFlags].find(
      (f) => v[f as 'webhook-secret'] !== undefined,
    );
    if (stray !== undefined) throw new UsageError(`--${stray} needs --webhook-listen`);
    return undefined;
  }
  const { host, port } = hostPort('--webhook-listen', listen);
  if (port < 1) throw new UsageError(`--webhook-listen: port ${port} is out of range`);
  if ((dir === undefined) === (secretName === undefined))
    throw new UsageError('--webhook-listen needs exactly one of --webhook-cert-dir and --webhook-secret');
  if (dir !== undefined) {
    const stray = selfManagedFlags.find((f) => v[f as 'webhook-secret'] !== undefined);
    if (stray !== undefined)
      throw new UsageError(`--${stray} applies to --webhook-secret, not --webhook-cert-dir`);
    return Object.freeze({ host, port, certs: Object.freeze({ kind: 'dir', dir }) });
  }
  const webhookConfiguration = v['webhook-configuration'];
  if (webhookConfiguration === undefined)
    throw new UsageError('--webhook-secret needs --webhook-configuration');
  const hosts = (v['webhook-hosts'] ?? `cardinal-operator.${namespace}.svc`)
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  if (hosts.length === 0) throw new UsageError('--webhook-hosts: name at least one host');
  return Object.freeze({
    host,
    port,
    certs: Object.freeze({
      kind: 'self-managed',
      secretName: secretName!,
      webhookConfiguration,
      hosts: Object.freeze(hosts),
      servingValidityMs: duration('--webhook-cert-validity', v['webhook-cert-validity'] ?? '2160h'),
      caValidityMs: duration('--webhook-ca-validity', v['webhook-ca-validity'] ?? '43800h'),
      syncIntervalMs: duration('--webhook-cert-sync', v['webhook-cert-sync'] ?? '1m'),
    }),
  });
}

function leaderElection(v: ReturnType<typeof parse>['values'], namespace: string) {
  const elect = bool('--leader-elect', v['leader-elect'], true);
  const leaseDurationMs = duration(
    '--leader-elect-lease-duration',
    v['leader-elect-lease-duration'] ?? '15s',
  );
  const renewDeadlineMs = duration(
    '--leader-elect-renew-deadline',
    v['leader-elect-renew-deadline'] ?? '10s',
  );
  const retryPeriodMs = duration('--leader-elect-retry-period', v['leader-elect-retry-period'] ?? '2s');
  if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs)) {
    throw new UsageError('leader election needs lease duration > renew deadline > retry period');
  }
  return Object.freeze({
    enabled: elect,
    namespace: v['leader-elect-namespace'] ?? namespace,
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
  });
}

function parse(argv: readonly string[]) {
  return parseFlags(argv, {
    kubeconfig: { type: 'string' },
    namespace: { type: 'string' },
    'metrics-listen': { type: 'string' },
    'log-level': { type: 'string' },
    'shutdown-timeout': { type: 'string' },
    'proxy-service': { type: 'string' },
    'proxy-endpoints': { type: 'string' },
    'proxy-tls-ca-file': { type: 'string' },
    'proxy-tls-server-name': { type: 'string' },
    'proxy-bearer-token-file': { type: 'string' },
    'proxy-config-path': { type: 'string' },
    'proxy-timeout': { type: 'string' },
    'status-interval': { type: 'string' },
    'status-write-qps': { type: 'string' },
    'status-write-burst': { type: 'string' },
    'status-workers': { type: 'string' },
    'config-shards': { type: 'string' },
    'leader-elect': { type: 'string' },
    usage: { type: 'string' },
    'dashboard-selector': { type: 'string' },
    'dashboard-namespaces': { type: 'string' },
    'prometheus-rules': { type: 'string' },
    'webhook-listen': { type: 'string' },
    'webhook-cert-dir': { type: 'string' },
    'webhook-secret': { type: 'string' },
    'webhook-configuration': { type: 'string' },
    'webhook-hosts': { type: 'string' },
    'webhook-cert-validity': { type: 'string' },
    'webhook-ca-validity': { type: 'string' },
    'webhook-cert-sync': { type: 'string' },
    'leader-elect-namespace': { type: 'string' },
    'leader-elect-lease-duration': { type: 'string' },
    'leader-elect-renew-deadline': { type: 'string' },
    'leader-elect-retry-period': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
}

function proxyTls(caFile: string | undefined, serverName: string | undefined): OperatorOptions['proxyTls'] {
  if (caFile === undefined || caFile === '') {
    if (serverName !== undefined) throw new UsageError('--proxy-tls-server-name needs --proxy-tls-ca-file');
    return undefined;
  }
  return Object.freeze({ caFile, serverName });
}

function proxySource(service: string | undefined, endpoints: string | undefined): ProxySource {
  if (service !== undefined && endpoints !== undefined)
    throw new UsageError('--proxy-service and --proxy-endpoints exclude each other');
  if (service !== undefined) {
    try {
      proxyServiceName(service, 'default');
    } catch (err) {
      throw new UsageError(`--proxy-service: ${(err as Error).message}`);
    }
    return Object.freeze({ kind: 'service', service });
  }
  if (endpoints === undefined) return Object.freeze({ kind: 'none' });
  try {
    return Object.freeze({ kind: 'static', endpoints: Object.freeze(parseProxyEndpoints(endpoints)) });
  } catch (err) {
    throw new UsageError(`--proxy-endpoints: ${(err as Error).message}`);
  }
}

/** The duration syntax both programs share (lib/flags.ts); zero is refused. */
function readPodNamespace(): string | undefined {
  try {
    const ns = readFileSync(POD_NAMESPACE_FILE, 'utf8').trim();
    return ns === '' ? undefined : ns;
  } catch {
    return undefined;
  }
}
