import { describe, expect, it } from 'vitest';
import type { Condition, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import {
  AGGREGATE_INTERVAL_MS,
  AGGREGATE_MAX_EVENTS,
  acceptanceEvent,
  buildEvent,
  COMBINED_PREFIX,
  correlate,
  degradedEvent,
  newCorrelationState,
  statusEvents,
} from './events.js';

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
    // A new policy's status says so; a thousand new policies must not cost a thousand Events.
    ['first acceptance', policy(1), statusWith({}), undefined],
    ['accepted after Unknown', policy(1, { status: 'Unknown' }), statusWith({}), undefined],
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

describe('degradedEvent', () => {
  const degraded = (status: 'True' | 'False', reason: string): MetricPolicyStatus => ({
    conditions: [
      {
        type: 'Degraded',
        status,
        reason,
        message: `because ${reason}`,
        observedGeneration: 1,
        lastTransitionTime: '2030-01-01T00:00:00Z',
      },
    ],
  });
  it.each([
    ['turns True', undefined, degraded('True', 'ReloadFailed'), 'ReloadFailed: because ReloadFailed'],
    [
      'from False',
      degraded('False', 'AsExpected'),
      degraded('True', 'ProxiesUnreachable'),
      'ProxiesUnreachable: because ProxiesUnreachable',
    ],
    ['stays True', degraded('True', 'ReloadFailed'), degraded('True', 'ReloadFailed'), undefined],
    [
      'True for a new reason',
      degraded('True', 'ReloadFailed'),
      degraded('True', 'ConfigTooLarge'),
      'ConfigTooLarge: because ConfigTooLarge',
    ],
    ['recovers', degraded('True', 'ReloadFailed'), degraded('False', 'AsExpected'), undefined],
  ] as const)('%s', (_name, before, next, message) => {
    const e = degradedEvent(before, next);
    expect(e?.message).toBe(message);
    if (e !== undefined) expect(e).toMatchObject({ type: 'Warning', reason: 'Degraded' });
  });

  it('is recorded with a rejection by statusEvents, in that order', () => {
    const next: MetricPolicyStatus = {
      conditions: [
        ...statusWith({ status: 'False', reason: 'InvalidSpec', message: 'bad' }).conditions!,
        ...degraded('True', 'ReloadFailed').conditions!,
      ],
    };
    expect(statusEvents(policy(1), next).map((e) => e.reason)).toEqual(['Rejected', 'Degraded']);
  });
});

describe('correlate', () => {
  const at = Date.parse('2030-01-01T00:00:00Z');
  const event = (message: string, name = 'p', ms = at) =>
    buildEvent(
      { ...policy(1), metadata: { ...policy(1).metadata, name } },
      { type: 'Warning', reason: 'Degraded', message },
      { now: new Date(ms), instance: 'pod-1' },
    );

  it('creates an Event once and counts its repeats on it, as client-go does', () => {
    const state = newCorrelationState();
    const first = correlate(state, event('m'), at);
    expect(first).toMatchObject({ action: 'create', event: { message: 'm', count: 1 } });
    const name = first.action === 'create' ? first.event.metadata.name : '';
    for (const count of [2, 3]) {
      expect(correlate(state, event('m', 'p', at + count), at + count)).toMatchObject({
        action: 'patch',
        name,
        namespace: 'apps',
        count,
        message: 'm',
      });
    }
    // Another object, or a quiet ten minutes, starts over.
    expect(correlate(state, event('m', 'q'), at)).toMatchObject({ action: 'create' });
    const later = at + AGGREGATE_INTERVAL_MS + 10;
    expect(correlate(state, event('m', 'p', later), later)).toMatchObject({ action: 'create' });
  });

  it('folds more than ten different messages of one reason into one combined Event', () => {
    const state = newCorrelationState();
    const actions = Array.from({ length: AGGREGATE_MAX_EVENTS + 3 }, (_, i) =>
      correlate(state, event(`m${i}`), at + i),
    );
    expect(actions.slice(0, AGGREGATE_MAX_EVENTS).every((a) => a.action === 'create')).toBe(true);
    const [combined, ...rest] = actions.slice(AGGREGATE_MAX_EVENTS);
    expect(combined).toMatchObject({
      action: 'create',
      event: { message: `${COMBINED_PREFIX}m${AGGREGATE_MAX_EVENTS}` },
    });
    expect(rest.map((a) => a.action === 'patch' && [a.count, a.message])).toEqual([
      [2, `${COMBINED_PREFIX}m${AGGREGATE_MAX_EVENTS + 1}`],
      [3, `${COMBINED_PREFIX}m${AGGREGATE_MAX_EVENTS + 2}`],
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
