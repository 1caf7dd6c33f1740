import { readFileSync } from 'node:fs';

export interface OperatorOptions {
  /** undefined: KUBECONFIG, ~/.kube/config, or the pod's service account. */
  readonly kubeconfig: string | undefined;
  readonly namespace: string;
  readonly metricsHost: string;
  readonly metricsPort: number;
  readonly logLevel: string;
  /** How long shutdown may take to finish queued reconciles before the process exits anyway. */
  readonly shutdownTimeoutMs: number;
}

/** Where Kubernetes mounts the pod's namespace (the service account volume). */
export const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
export const DEFAULT_NAMESPACE = 'cardinal-system';

export const usage = `Usage: cardinal-operator [flags]

Renders MetricPolicy resources into the ConfigMaps that cardinal-proxy pods mount.

Flags:
  --kubeconfig PATH         Credentials; default KUBECONFIG, ~/.kube/config, or the pod's service account.
  --namespace NS            Where the proxies' ConfigMaps live; default the pod's namespace,
                            else ${DEFAULT_NAMESPACE}.
  --metrics-listen ADDR     /metrics, /healthz and /readyz; default :8081.
  --log-level LEVEL         trace, debug, info, warn, error; default info.
  --shutdown-timeout DUR    Time to finish queued reconciles on SIGTERM, in s or ms; default 30s.
  -h, --help                This text.
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses the flags; `podNamespace` reads the pod's namespace file, and is replaceable for tests. */
export function parseOperatorOptions(
  argv: readonly string[],
  podNamespace: () => string | undefined = readPodNamespace,
): OperatorOptions | 'help' {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') return 'help';
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (
      !['--kubeconfig', '--namespace', '--metrics-listen', '--log-level', '--shutdown-timeout'].includes(name)
    )
      throw new UsageError(`unknown flag ${arg}`);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
    values.set(name, value);
  }
  const listen = values.get('--metrics-listen') ?? ':8081';
  const colon = listen.lastIndexOf(':');
  const port = Number(listen.slice(colon + 1));
  if (colon === -1 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--metrics-listen ${listen}: want HOST:PORT or :PORT`);
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const namespace = values.get('--namespace') ?? podNamespace() ?? DEFAULT_NAMESPACE;
  return Object.freeze({
    kubeconfig: values.get('--kubeconfig'),
    namespace,
    metricsHost: host === '' ? '0.0.0.0' : host,
    metricsPort: port,
    logLevel: values.get('--log-level') ?? 'info',
    shutdownTimeoutMs: duration('--shutdown-timeout', values.get('--shutdown-timeout') ?? '30s'),
  });
}

function duration(flag: string, text: string): number {
  const m = /^(\d+)(ms|s)$/.exec(text);
  if (m === null) throw new UsageError(`${flag} ${text}: want a duration such as 30s or 500ms`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

function readPodNamespace(): string | undefined {
  try {
    const ns = readFileSync(POD_NAMESPACE_FILE, 'utf8').trim();
    return ns === '' ? undefined : ns;
  } catch {
    return undefined;
  }
}
