import { describe, expect, it } from 'vitest';
import type { Condition, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import { acceptanceEvent, appliedEvents, buildEvent } from './events.js';

function policy(generation: number, accepted?: Partial<Condition>): MetricPolicy {
  return {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { name: 'p', namespace: 'apps', generation, uid: 'u-1', resourceVersion: '7' },
    spec: {},
    ...(accepted === undefined ? {} : { status: statusWith(accepted) }),
  };
}

function statusWith(accepted: Partial<Condition>): MetricPolicyStatus {
  return {
    conditions: [
      {
        type: 'Accepted',
        status: 'True',
        reason: 'Accepted',
        message: 'ok',
        observedGeneration: 1,
        lastTransitionTime: '2030-01-01T00:00:00Z',
        ...accepted,
      },
    ],
  };
}

describe('acceptanceEvent', () => {
  const rejected = { status: 'False', reason: 'InvalidSpec', message: 'spec.drop[0]: bad' } as const;
  it.each([
    ['first acceptance', policy(1), statusWith({}), 'Accepted'],
    ['same generation accepted again', policy(1, {}), statusWith({}), undefined],
    ['a new generation accepted', policy(2, {}), statusWith({ observedGeneration: 2 }), 'Accepted'],
    ['first rejection', policy(1), statusWith(rejected), 'Rejected'],
    ['still rejected', policy(1, rejected), statusWith(rejected), undefined],
    [
      'rejected for a new reason',
      policy(1, rejected),
      statusWith({ ...rejected, message: 'other' }),
      'Rejected',
    ],
    ['accepted after a rejection', policy(1, rejected), statusWith({}), 'Accepted'],
    ['not processed yet', policy(1), statusWith({ status: 'Unknown' }), undefined],
  ] as const)('%s', (_name, p, next, reason) => {
    expect(acceptanceEvent(p, next)?.reason).toBe(reason);
  });

  it('names the generation and, for a rejection, the reason and message', () => {
    expect(acceptanceEvent(policy(1), statusWith(rejected))).toEqual({
      type: 'Warning',
      reason: 'Rejected',
      message: 'Generation 1 rejected (InvalidSpec): spec.drop[0]: bad',
    });
  });
});

describe('appliedEvents', () => {
  it('names the policies whose generation the write changed', () => {
    const a = policy(2);
    const b = { ...policy(1), metadata: { ...policy(1).metadata, name: 'b' } };
    const c = { ...policy(1), metadata: { ...policy(1).metadata, name: 'c' } };
    const events = appliedEvents(
      [a, b, c],
      { 'apps/p': 1, 'apps/b': 1 },
      { 'apps/p': 2, 'apps/b': 1 },
      { namespace: 'sys', name: 'cm' },
    );
    expect(events.map((e) => [e.policy.metadata.name, e.event.message])).toEqual([
      ['p', 'Generation 2 written to ConfigMap sys/cm.'],
    ]);
  });
});

describe('buildEvent', () => {
  it('makes a core/v1 Event on the policy, from cardinal-operator, named as client-go names them', () => {
    const now = new Date('2030-01-01T00:00:00.123Z');
    const e = buildEvent(
      policy(1),
      { type: 'Normal', reason: 'Accepted', message: 'm' },
      { now, instance: 'pod-1', sequence: 5 },
    );
    expect(e).toEqual({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `p.${(BigInt(now.getTime()) * 1_000_000n + 5n).toString(16)}`, namespace: 'apps' },
      involvedObject: {
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        name: 'p',
        namespace: 'apps',
        uid: 'u-1',
        resourceVersion: '7',
      },
      type: 'Normal',
      reason: 'Accepted',
      message: 'm',
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component: 'cardinal-operator', host: 'pod-1' },
      reportingComponent: 'cardinal-operator',
      reportingInstance: 'pod-1',
    });
    const long = buildEvent(
      policy(1),
      { type: 'Warning', reason: 'Rejected', message: 'x'.repeat(5000) },
      { now, instance: 'i' },
    );
    expect(long.message).toHaveLength(1024);
  });
});
