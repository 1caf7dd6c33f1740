// The Kubernetes Events the operator records, decided from what a status write changes, so that a
// steady state records none: an Event marks a transition, never a level.
//
//   Rejected (Warning)       a generation was rejected, or rejected for a new reason; the message
//                            is the Accepted condition's (InvalidSpec and the validator's words).
//   Degraded (Warning)       Degraded turned True, or True for a new reason (ReloadFailed,
//                            ProxiesUnreachable, ConfigTooLarge).
//   Accepted (Normal)        an edit was accepted (a generation after the first), or a rejected
//                            policy was accepted again. A new policy's first acceptance records
//                            none: its status says so, and a thousand policies applied at once
//                            would otherwise cost a thousand writes.
//   ConfigTooLarge (Warning) on a rendered ConfigMap: a shard could not be written (the operator
//                            records it on each render that finds it so; the recorder aggregates).
//
// Pure: the reconcile decides with these functions and hands the result to the recorder
// (operator/controller/recorder.ts), which deduplicates and aggregates as client-go's
// record.EventCorrelator does (correlate below). Events are core/v1 Events (the API conventions'
// "Events"), which `kubectl describe` and `kubectl get events` show.

import type { Condition, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import type { EventTarget } from '../controller/reconcile.js';
import { selectInstance } from '../render/instance.js';
import { ACCEPTED, DEGRADED } from './conditions.js';

/** The component every Event names as its source and reporter. */
export const REPORTING_COMPONENT = 'cardinal-operator';

/** The Event API truncates nothing itself; a note longer than this is cut (events.k8s.io/v1 allows 1 kB). */
const MAX_MESSAGE = 1024;

export interface PolicyEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: 'Accepted' | 'Rejected' | 'Degraded' | 'ConfigTooLarge';
  readonly message: string;
}

/** The Events that writing `next` over the policy's current status records, in that order. */
export function statusEvents(policy: MetricPolicy, next: MetricPolicyStatus): PolicyEvent[] {
  const out: PolicyEvent[] = [];
  const accepted = acceptanceEvent(policy, next);
  if (accepted !== undefined) out.push(accepted);
  const degraded = degradedEvent(policy.status, next);
  if (degraded !== undefined) out.push(degraded);
  return out;
}

/**
 * The Accepted or Rejected Event that writing `next` over the policy's current status records:
 * none when the Accepted condition says what it said, for the same generation, and none for the
 * first acceptance of a policy never judged before.
 */
export function acceptanceEvent(policy: MetricPolicy, next: MetricPolicyStatus): PolicyEvent | undefined {
  const after = condition(next, ACCEPTED);
  if (after === undefined || after.status === 'Unknown') return undefined;
  const before = condition(policy.status, ACCEPTED);
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
    const judged = before !== undefined && before.status !== 'Unknown';
    if (!judged) return undefined;
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

/** The Degraded Event of a write: when Degraded turns True, or stays True for a new reason. */
export function degradedEvent(
  before: MetricPolicyStatus | undefined,
  next: MetricPolicyStatus,
): PolicyEvent | undefined {
  const after = condition(next, DEGRADED);
  if (after?.status !== 'True') return undefined;
  const was = condition(before, DEGRADED);
  if (was?.status === 'True' && was.reason === after.reason) return undefined;
  return { type: 'Warning', reason: 'Degraded', message: truncate(`${after.reason}: ${after.message}`) };
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
 * The Event object for `event` on `target`. Named as client-go names them, `<object>.<time in
 * hex nanoseconds>`, so two Events of one object never collide; `reportingInstance` names the
 * operator replica (its host name).
 */
export function buildEvent(
  target: EventTarget,
  event: PolicyEvent,
  at: { readonly now: Date; readonly instance: string; readonly sequence?: number },
): EventObject {
  const nanos = BigInt(at.now.getTime()) * 1_000_000n + BigInt(at.sequence ?? 0);
  const { name, namespace, uid, resourceVersion } = target.metadata;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${name}.${nanos.toString(16)}`, namespace },
    involvedObject: {
      apiVersion: target.apiVersion,
      kind: target.kind,
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

function condition(status: MetricPolicyStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

// Aggregation and deduplication, as client-go's EventCorrelator (tools/record/events_cache.go):
// an Event like one recorded within the last ten minutes on the same object (same type, reason
// and message) is not created again; the existing one gets count + 1 and a new lastTimestamp.
// When more than ten Events of one object share type and reason but differ in message within ten
// minutes, the rest are folded into one whose message starts "(combined from similar events): ".

/** client-go's defaultAggregateMaxEvents and defaultAggregateIntervalInSeconds. */
export const AGGREGATE_MAX_EVENTS = 10;
export const AGGREGATE_INTERVAL_MS = 600_000;
/** client-go's maxLruCacheEntries. */
export const CORRELATION_CACHE_SIZE = 4096;
export const COMBINED_PREFIX = '(combined from similar events): ';

/** What the correlator remembers: per aggregate key its messages, per event key the Event written. */
export interface CorrelationState {
  readonly aggregates: Map<string, { messages: Set<string>; lastMs: number }>;
  readonly events: Map<string, { name: string; count: number; firstTimestamp: Date; lastMs: number }>;
}

export function newCorrelationState(): CorrelationState {
  return { aggregates: new Map(), events: new Map() };
}

/** What to write for an Event: a new one, or a patch of one written before. */
export type Correlation =
  | { readonly action: 'create'; readonly key: string; readonly event: EventObject }
  | {
      readonly action: 'patch';
      readonly key: string;
      readonly name: string;
      readonly namespace: string;
      readonly count: number;
      readonly message: string;
      readonly lastTimestamp: Date;
    };

/**
 * Decides what recording `event` writes, and remembers it in `state` (bounded LRU maps). The
 * caller writes the result and calls `forget(state, key)` when a patch finds the Event gone.
 */
export function correlate(state: CorrelationState, event: EventObject, nowMs: number): Correlation {
  const o = event.involvedObject;
  const aggregateKey = [
    event.source.component,
    o.kind,
    o.namespace,
    o.name,
    o.uid ?? '',
    event.type,
    event.reason,
  ].join('\0');
  let aggregate = lru(state.aggregates, aggregateKey);
  if (aggregate === undefined || nowMs - aggregate.lastMs > AGGREGATE_INTERVAL_MS) {
    aggregate = { messages: new Set(), lastMs: nowMs };
  }
  aggregate.messages.add(event.message);
  aggregate.lastMs = nowMs;
  put(state.aggregates, aggregateKey, aggregate);
  const combined = aggregate.messages.size > AGGREGATE_MAX_EVENTS;
  const message = combined ? truncate(COMBINED_PREFIX + event.message) : event.message;
  const key = combined ? aggregateKey : `${aggregateKey}\0${event.message}`;

  const seen = lru(state.events, key);
  if (seen !== undefined && nowMs - seen.lastMs <= AGGREGATE_INTERVAL_MS) {
    seen.count++;
    seen.lastMs = nowMs;
    put(state.events, key, seen);
    return {
      action: 'patch',
      key,
      name: seen.name,
      namespace: event.metadata.namespace,
      count: seen.count,
      message,
      lastTimestamp: new Date(nowMs),
    };
  }
  put(state.events, key, {
    name: event.metadata.name,
    count: 1,
    firstTimestamp: event.firstTimestamp,
    lastMs: nowMs,
  });
  return { action: 'create', key, event: { ...event, message } };
}

/** Forgets the Event of `key`: it expired on the API server, so the next one is created anew. */
export function forget(state: CorrelationState, key: string): void {
  state.events.delete(key);
}

function lru<V>(map: Map<string, V>, key: string): V | undefined {
  const v = map.get(key);
  if (v !== undefined) {
    map.delete(key);
    map.set(key, v);
  }
  return v;
}

function put<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > CORRELATION_CACHE_SIZE) map.delete(map.keys().next().value as string);
}

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 3)}...`;
}
