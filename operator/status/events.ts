// The Kubernetes Events the operator records on a MetricPolicy, decided from what a reconcile
// changes, so that a steady state records none: an Event marks a transition, never a level.
//
//   Accepted (Normal)   a generation was accepted for the first time: its Accepted condition
//                       turned True for that generation.
//   Rejected (Warning)  a generation was rejected, or rejected for a new reason; the message is
//                       the Accepted condition's (InvalidSpec and the validator's words).
//   Applied (Normal)    the instance's ConfigMap was written with a generation of the policy it
//                       did not hold before.
//
// Pure: the reconcile loop decides with these functions and records what they return. Events are
// core/v1 Events (the API conventions' "Events"), which `kubectl describe` and `kubectl get events`
// show; the fields follow client-go's record.EventRecorder.

import type { Condition, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import { policyId, selectInstance } from '../render/instance.js';
import { ACCEPTED } from './conditions.js';

/** The component every Event names as its source and reporter. */
export const REPORTING_COMPONENT = 'cardinal-operator';

/** The Event API truncates nothing itself; a note longer than this is cut (events.k8s.io/v1 allows 1 kB). */
const MAX_MESSAGE = 1024;

export interface PolicyEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: 'Accepted' | 'Rejected' | 'Applied';
  readonly message: string;
}

/**
 * The Accepted or Rejected Event that writing `next` over the policy's current status records:
 * none when the Accepted condition says what it said, for the same generation.
 */
export function acceptanceEvent(policy: MetricPolicy, next: MetricPolicyStatus): PolicyEvent | undefined {
  const after = acceptedCondition(next);
  if (after === undefined || after.status === 'Unknown') return undefined;
  const before = acceptedCondition(policy.status);
  if (
    before !== undefined &&
    before.status === after.status &&
    before.observedGeneration === after.observedGeneration &&
    before.reason === after.reason &&
    before.message === after.message
  )
    return undefined;
  const generation = after.observedGeneration ?? policy.metadata.generation;
  if (after.status === 'True') {
    return {
      type: 'Normal',
      reason: 'Accepted',
      message: `Generation ${generation} accepted for proxy instance ${selectInstance(policy)}.`,
    };
  }
  return {
    type: 'Warning',
    reason: 'Rejected',
    message: truncate(`Generation ${generation} rejected (${after.reason}): ${after.message}`),
  };
}

/**
 * The Applied Events of a ConfigMap write: one per policy whose generation in the written
 * ConfigMap (`after`, renderedGenerations) differs from the one it held before (`before`).
 */
export function appliedEvents(
  policies: readonly MetricPolicy[],
  before: Readonly<Record<string, number>>,
  after: Readonly<Record<string, number>>,
  configMap: { readonly namespace: string; readonly name: string },
): { policy: MetricPolicy; event: PolicyEvent }[] {
  return policies.flatMap((policy) => {
    const generation = after[policyId(policy)];
    if (generation === undefined || before[policyId(policy)] === generation) return [];
    return [
      {
        policy,
        event: {
          type: 'Normal',
          reason: 'Applied',
          message: `Generation ${generation} written to ConfigMap ${configMap.namespace}/${configMap.name}.`,
        },
      },
    ];
  });
}

/** A core/v1 Event as the API server takes it (CoreV1Event of @kubernetes/client-node). */
export interface EventObject {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  involvedObject: {
    apiVersion: string;
    kind: string;
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
  };
  type: PolicyEvent['type'];
  reason: PolicyEvent['reason'];
  message: string;
  count: number;
  firstTimestamp: Date;
  lastTimestamp: Date;
  source: { component: string; host?: string };
  reportingComponent: string;
  reportingInstance: string;
}

/**
 * The Event object for `event` on `policy`. Named as client-go names them, `<object>.<time in
 * hex nanoseconds>`, so two Events of one object never collide; `reportingInstance` names the
 * operator replica (its host name).
 */
export function buildEvent(
  policy: MetricPolicy,
  event: PolicyEvent,
  at: { readonly now: Date; readonly instance: string; readonly sequence?: number },
): EventObject {
  const nanos = BigInt(at.now.getTime()) * 1_000_000n + BigInt(at.sequence ?? 0);
  const { name, namespace, uid, resourceVersion } = policy.metadata;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${name}.${nanos.toString(16)}`, namespace },
    involvedObject: {
      apiVersion: policy.apiVersion,
      kind: policy.kind,
      name,
      namespace,
      ...(uid === undefined ? {} : { uid }),
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    },
    type: event.type,
    reason: event.reason,
    message: truncate(event.message),
    count: 1,
    firstTimestamp: at.now,
    lastTimestamp: at.now,
    source: { component: REPORTING_COMPONENT, host: at.instance },
    reportingComponent: REPORTING_COMPONENT,
    reportingInstance: at.instance.slice(0, 128),
  };
}

function acceptedCondition(status: MetricPolicyStatus | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === ACCEPTED);
}

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 3)}...`;
}
