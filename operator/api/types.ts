// The Kubernetes objects the operator reads and writes, as plain types: only the fields it uses.
// The spec type is the one derived from the MetricPolicy schema (crds/metric-policy.ts), so the
// operator, the proxy and the CRD cannot disagree about it.

import type { Static } from '@sinclair/typebox';
import type {
  ConditionSchema,
  MetricPolicySpecT,
  MetricPolicyStatusSchema,
  ProxiesStatusSchema,
  TopOffenderSchema,
} from '../../crds/metric-policy.js';

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

// The status schema lives with the spec's in crds/metric-policy.ts, the one source of the API;
// the CRD's status schema and `kubectl explain metricpolicy.status` are derived from it.
export {
  MetricPolicyStatusSchema,
  TOP_OFFENDERS_LIMIT,
} from '../../crds/metric-policy.js';

/**
 * A condition: `lastTransitionTime` is when `status` last changed, not when the condition was last
 * written, and `observedGeneration` is the generation of the spec it describes.
 */
export type Condition = Static<typeof ConditionSchema>;
export type TopOffender = Static<typeof TopOffenderSchema>;
export type ProxiesStatus = Static<typeof ProxiesStatusSchema>;
export type MetricPolicyStatus = Static<typeof MetricPolicyStatusSchema>;

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
