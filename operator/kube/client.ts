// Thin, typed wrappers over @kubernetes/client-node for the few calls the operator makes: loading
// credentials, listing MetricPolicies and the operator's ConfigMaps, applying a ConfigMap with
// server-side apply, writing a MetricPolicy's status subresource, recording Events, and listing the
// EndpointSlices of the proxies' Services.

import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import type { LiveConfigMap } from '../controller/reconcile.js';
import type { EventObject } from '../status/events.js';
import type { PrometheusRuleObject } from '../usage/objects.js';
import { type ThrottleOptions, withThrottleRetry } from './throttle.js';

export const GROUP = 'cardinal.dev';
export const VERSION = 'v1alpha1';
export const PLURAL = 'metricpolicies';
/** The field manager of every write, so `kubectl get -o yaml --show-managed-fields` names the operator. */
export const FIELD_MANAGER = 'cardinal-operator';
/** The label every ConfigMap the operator renders carries; its watch selects on it. */
export const MANAGED_BY_SELECTOR = 'app.kubernetes.io/managed-by=cardinal-operator';

/**
 * Credentials: the file given, else what KUBECONFIG or ~/.kube/config names, else the pod's
 * service account (in-cluster), which is the order kubectl and client-go follow.
 */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromDefault();
  if (kc.getCurrentCluster() === null) {
    throw new Error(
      path === undefined
        ? 'no cluster found: set --kubeconfig or KUBECONFIG, or run in a pod'
        : `${path} names no current cluster`,
    );
  }
  return kc;
}

/** A list of objects as the API server returns it: the items and the list's resourceVersion. */
export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export class KubeClient {
  readonly config: KubeConfig;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #objects: KubernetesObjectApi;
  /** EndpointSlices, for listProxyEndpoints (operator/proxies/discovery.ts). */
  readonly discovery: DiscoveryV1Api;

  readonly #throttle: ThrottleOptions;

  /** `throttle.throttled` is told of every 429 a write got (each is retried: operator/kube/throttle.ts). */
  constructor(config: KubeConfig, throttle: ThrottleOptions = {}) {
    this.config = config;
    this.#throttle = throttle;
    this.discovery = config.makeApiClient(DiscoveryV1Api);
    this.#core = config.makeApiClient(CoreV1Api);
    this.#custom = config.makeApiClient(CustomObjectsApi);
    this.#objects = KubernetesObjectApi.makeApiClient(config);
  }

  /** The path to watch every MetricPolicy at. */
  static readonly policiesPath = `/apis/${GROUP}/${VERSION}/${PLURAL}`;

  static configMapsPath(namespace: string): string {
    return `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`;
  }

  async listPolicies(): Promise<ObjectList<MetricPolicy>> {
    return (await this.#custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
    })) as ObjectList<MetricPolicy>;
  }

  /** Where PrometheusRules (prometheus-operator's CRD) are watched, cluster-wide. */
  static readonly prometheusRulesPath = '/apis/monitoring.coreos.com/v1/prometheusrules';
  /** Every ConfigMap, cluster-wide: dashboards are found by label (--dashboard-selector). */
  static readonly allConfigMapsPath = '/api/v1/configmaps';

  /**
   * Whether the API server serves monitoring.coreos.com/v1 prometheusrules (API discovery). False
   * when the group or the resource is absent, so a cluster without prometheus-operator's CRDs is
   * no error; other failures throw.
   */
  async servesPrometheusRules(): Promise<boolean> {
    try {
      const list = await this.#custom.getAPIResources({ group: 'monitoring.coreos.com', version: 'v1' });
      return list.resources.some((r) => r.name === 'prometheusrules');
    } catch (err) {
      if (statusCode(err) === 404) return false;
      throw err;
    }
  }

  async listPrometheusRules(): Promise<ObjectList<PrometheusRuleObject>> {
    return (await this.#custom.listClusterCustomObject({
      group: 'monitoring.coreos.com',
      version: 'v1',
      plural: 'prometheusrules',
    })) as ObjectList<PrometheusRuleObject>;
  }

  /** ConfigMaps by label: in `namespace`, or in every namespace when it is undefined. */
  async listConfigMapsBySelector(
    namespace: string | undefined,
    labelSelector: string,
  ): Promise<ObjectList<LiveConfigMap>> {
    return (
      namespace === undefined
        ? await this.#core.listConfigMapForAllNamespaces({ labelSelector })
        : await this.#core.listNamespacedConfigMap({ namespace, labelSelector })
    ) as ObjectList<LiveConfigMap>;
  }

  async listConfigMaps(namespace: string, labelSelector: string): Promise<ObjectList<LiveConfigMap>> {
    return (await this.#core.listNamespacedConfigMap({
      namespace,
      labelSelector,
    })) as ObjectList<LiveConfigMap>;
  }

  /**
   * Server-side apply of the whole object with force: the operator owns what it renders, and
   * takes back a field someone else changed (Kubernetes "Server-Side Apply", "Conflicts").
   */
  async applyConfigMap(configMap: ConfigMap): Promise<void> {
    await this.#write('apply', 'configmaps', () =>
      this.#objects.patch(
        configMap,
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      ),
    );
  }

  /** A write, made again after each 429 the API server's priority and fairness answers it with. */
  #write<T>(verb: string, resource: string, call: () => Promise<T>): Promise<T> {
    return withThrottleRetry(verb, resource, call, this.#throttle);
  }

  /**
   * Replaces the policy's status with a JSON merge patch on the status subresource. The patch
   * carries the resourceVersion the status was computed from, so it fails with 409 Conflict when
   * the policy changed since (optimistic concurrency, API conventions "Concurrency Control and
   * Consistency"); fields of the old status that the new one lacks are removed with null.
   */
  async writePolicyStatus(policy: MetricPolicy, status: MetricPolicyStatus): Promise<void> {
    const body: Record<string, unknown> = {
      metadata: {
        ...(policy.metadata.resourceVersion === undefined
          ? {}
          : { resourceVersion: policy.metadata.resourceVersion }),
      },
      status: { ...nulls(policy.status), ...status },
    };
    await this.#write('patch', `${PLURAL}/status`, () =>
      this.#custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: policy.metadata.namespace,
          name: policy.metadata.name,
          body,
          fieldManager: FIELD_MANAGER,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
  }

  /** Creates a core/v1 Event (buildEvent in operator/status/events.ts makes it). */
  async createEvent(event: EventObject): Promise<void> {
    await this.#write('create', 'events', () =>
      this.#core.createNamespacedEvent({ namespace: event.metadata.namespace, body: event }),
    );
  }

  /**
   * Counts one more occurrence of an Event written before, with a JSON merge patch, as client-go's
   * recorder does for a repeated Event (it sends count, lastTimestamp and message).
   */
  async patchEvent(
    namespace: string,
    name: string,
    patch: { count: number; message: string; lastTimestamp: Date },
  ): Promise<void> {
    await this.#write('patch', 'events', () =>
      this.#core.patchNamespacedEvent(
        { namespace, name, body: { ...patch, lastTimestamp: patch.lastTimestamp.toISOString() } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
  }
}

function nulls(status: MetricPolicyStatus | undefined): Record<string, null> {
  return Object.fromEntries(Object.keys(status ?? {}).map((k) => [k, null]));
}

/** The HTTP status of a failed API call, when the error carries one. */
export function statusCode(err: unknown): number | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  const code = typeof e.code === 'number' ? e.code : e.statusCode;
  return typeof code === 'number' ? code : undefined;
}
