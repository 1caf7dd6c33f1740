// The whole governed path in a cluster, as the chart deploys it, for end-to-end tests: the
// operator under the chart's ServiceAccount renders the instance's ConfigMap, a kubelet-like sync
// projects it into the directory the real proxy watches, and the proxy forwards into a real
// Prometheus. The control plane (with the CRD) and the namespace come from the caller.

import { type ProxyProgram, startProxy } from './cardinal.js';
import { installChartRbac } from './chart.js';
import type { ControlPlane } from './kube.js';
import { type OperatorProgram, projectedConfigDir, startOperator, type Track } from './operator.js';
import { type PrometheusReceiver, startPrometheusReceiver } from './prometheus.js';

/** The ConfigMap the operator renders for the instance `default`, which the proxies mount. */
export const DEFAULT_CONFIG_MAP = 'cardinal-proxy-default-policies';

export interface GovernedStack {
  /** The directory the proxy's --config watches, fed from the ConfigMap. */
  readonly configDir: string;
  readonly receiver: PrometheusReceiver;
  readonly proxy: ProxyProgram;
  readonly operator: OperatorProgram;
}

/** Starts the stack; everything started is passed through `track`, so the caller closes it. */
export async function startGovernedStack(options: {
  plane: ControlPlane;
  /** Where the operator runs and renders the ConfigMap. */
  namespace: string;
  track: Track;
  /** More proxy flags, given the receiver's base URL (for --query.upstream). */
  proxyArgs?: (receiverUrl: string) => string[];
}): Promise<GovernedStack> {
  const { plane, namespace, track } = options;
  const configDir = await projectedConfigDir(track, {
    plane,
    namespace,
    name: DEFAULT_CONFIG_MAP,
    prefix: 'cardinal-e2e-',
  });
  const receiver = track(await startPrometheusReceiver({ version: 2 }));
  const proxy = track(
    await startProxy({
      upstream: receiver.remoteWriteUrl,
      args: () => ['--config', configDir, ...(options.proxyArgs?.(receiver.url) ?? [])],
    }),
  );
  // The operator runs with exactly the permissions the Helm chart grants its ServiceAccount.
  const { kubeconfig } = await installChartRbac(plane, 'cardinal', namespace);
  const operator = await startOperator({
    plane,
    namespace,
    kubeconfig,
    args: ['--proxy-endpoints', proxy.url, '--proxy-config-path', configDir, '--status-interval', '1s'],
  });
  track(operator.program);
  return { configDir, receiver, proxy, operator };
}
