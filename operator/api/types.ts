// The Kubernetes objects the operator reads and writes, as plain types: only the fields it uses.
// The spec type is the one derived from the MetricPolicy schema (crds/metric-policy.ts), so the
// operator, the proxy and the CRD cannot disagree about it.

import { type Static, Type } from '@sinclair/typebox';
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

// The status is written as TypeBox schemas, like the spec, so that the CRD's status schema and
// `kubectl explain metricpolicy.status` can be derived from the same source as these types
// (toStructural in crds/crd.ts accepts them).

/** How many offenders a policy's status lists. */
export const TOP_OFFENDERS_LIMIT = 5;

const Condition = Type.Object(
  {
    type: Type.String({ maxLength: 316, description: 'Accepted, Ready or Degraded.' }),
    status: Type.Unsafe<'True' | 'False' | 'Unknown'>({
      type: 'string',
      enum: ['True', 'False', 'Unknown'],
      description: 'True, False or Unknown.',
    }),
    reason: Type.String({
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
      description: 'Why the condition has its status, in CamelCase, for machines.',
    }),
    message: Type.String({ maxLength: 32768, description: 'Why the condition has its status, for people.' }),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'When the status last changed, RFC 3339 in whole seconds.',
    }),
    observedGeneration: Type.Integer({
      minimum: 0,
      description: 'The generation of the spec the condition describes.',
    }),
  },
  {
    description:
      'A condition as the Kubernetes API conventions define it (metav1.Condition, "Typical status properties").',
  },
);

const TopOffender = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    series: Type.Integer({
      minimum: 0,
      description:
        'Active series of the metric, summed over the proxies that list it among their largest; 0 when none does.',
    }),
    droppedSamplesPerSecond: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          'Samples per second dropped between the last two polls of the proxies. Absent until a rate is known.',
      }),
    ),
    droppedSamples: Type.Integer({
      minimum: 0,
      description: 'Samples dropped since each proxy last loaded its configuration, summed.',
    }),
    reason: Type.String({
      description: "The proxy's drop reason, such as series_limit, or dryRun:series_limit in dry-run mode.",
    }),
  },
  { description: 'A metric that loses samples to this policy, summed over the proxies that run it.' },
);

const ProxiesStatus = Type.Object(
  {
    ready: Type.Integer({ minimum: 0, description: 'Reachable proxies that report configHash.' }),
    total: Type.Integer({ minimum: 0, description: "Proxies of the policy's instance." }),
    configHash: Type.String({
      description:
        "The configuration hash the proxies report once they run the latest rendering of the policy's instance.",
    }),
  },
  { description: 'The proxies that run this policy.' },
);

export const MetricPolicyStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ minimum: 0, description: 'The generation of the spec this status describes.' }),
    ),
    conditions: Type.Optional(
      Type.Array(Condition, {
        description:
          'Accepted: the spec is valid and rendered. Ready: every proxy runs this generation. Degraded: accepted, but a proxy failed to reload or cannot be reached.',
      }),
    ),
    proxies: Type.Optional(ProxiesStatus),
    topOffenders: Type.Optional(
      Type.Array(TopOffender, {
        maxItems: TOP_OFFENDERS_LIMIT,
        description: 'The metrics that lose the most samples to this policy, the fastest first.',
      }),
    ),
    droppedSamplesPerSecond: Type.Optional(
      Type.Number({
        minimum: 0,
        description: 'Samples per second this policy drops, all metrics, all proxies.',
      }),
    ),
    topOffender: Type.Optional(
      Type.String({ description: 'The first of topOffenders on one line, for a printer column.' }),
    ),
  },
  { description: 'Written by the operator.' },
);

/**
 * A condition: `lastTransitionTime` is when `status` last changed, not when the condition was last
 * written, and `observedGeneration` is the generation of the spec it describes.
 */
export type Condition = Static<typeof Condition>;
export type TopOffender = Static<typeof TopOffender>;
export type ProxiesStatus = Static<typeof ProxiesStatus>;
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
