// The Kubernetes objects the operator reads and writes, as plain types: only the fields it uses.
// The spec type is the one derived from the MetricPolicy schema (crds/metric-policy.ts), so the
// operator, the proxy and the CRD cannot disagree about it.

import type { MetricPolicySpecT } from '../../crds/metric-policy.js';

export type { MetricPolicySpecT } from '../../crds/metric-policy.js';

/** The metadata of an object read from the API server (ObjectMeta, the fields the operator uses). */
export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  /** Set by the API server, and increased by it on every change of the spec. */
  generation: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** RFC 3339; present once deletion was requested and finalizers still hold the object. */
  deletionTimestamp?: string;
}

/**
 * A condition as Kubernetes API conventions define it (metav1.Condition, "Typical status
 * properties"): `lastTransitionTime` is when `status` last changed, not when the condition was
 * last written, and `observedGeneration` is the generation of the spec it describes.
 */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  /** CamelCase, machine-readable: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`. */
  reason: string;
  /** For humans; may be empty. */
  message: string;
  /** RFC 3339 in whole seconds, as metav1.Time serialises. */
  lastTransitionTime: string;
  observedGeneration: number;
}

/** One metric that loses samples to a policy, summed over the proxies that run it. */
export interface TopOffender {
  metric: string;
  /** Active series of the metric, summed over the proxies that list it among their largest; 0 when none does. */
  series: number;
  /**
   * Samples per second dropped between the last two polls. Absent when no proxy could give a rate
   * yet (the first poll, or the metric was outside a proxy's previous top list).
   */
  droppedSamplesPerSecond?: number;
  /** Samples dropped since each proxy last loaded its configuration, summed. */
  droppedSamples: number;
  /** The proxy's drop reason, such as `series_limit` or `dryRun:series_limit`. */
  reason: string;
}

/** The proxies that run a policy's instance, as far as the operator could reach them. */
export interface ProxiesStatus {
  /** Reachable proxies that report `configHash`. */
  ready: number;
  total: number;
  /** The configuration the proxies should report: the latest rendering for this policy's instance. */
  configHash: string;
}

export interface MetricPolicyStatus {
  /** The generation of the spec this status describes. */
  observedGeneration?: number;
  /** Accepted, Ready and Degraded; operator/status/conditions.ts says what each status means. */
  conditions?: Condition[];
  proxies?: ProxiesStatus;
  /** At most TOP_OFFENDERS_LIMIT, the largest first. */
  topOffenders?: TopOffender[];
  /** Samples per second the policy drops, all metrics, summed over its proxies. */
  droppedSamplesPerSecond?: number;
  /** The first of `topOffenders` on one line, for a printer column. */
  topOffender?: string;
}

export interface MetricPolicy {
  apiVersion: 'cardinal.dev/v1alpha1';
  kind: 'MetricPolicy';
  metadata: ObjectMeta;
  spec: MetricPolicySpecT;
  status?: MetricPolicyStatus;
}

/** A ConfigMap as the operator writes it: no binaryData, no immutability. */
export interface ConfigMap {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  data: Record<string, string>;
}
