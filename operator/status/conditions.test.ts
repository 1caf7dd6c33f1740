import { FormatRegistry, TypeRegistry } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { toStructural } from '../../crds/crd.js';
import {
  type Condition,
  type MetricPolicy,
  type MetricPolicyStatus,
  MetricPolicyStatusSchema,
  type TopOffender,
} from '../api/types.js';
import {
  ACCEPTED,
  computeStatus,
  DEGRADED,
  notReadyReason,
  offenderLine,
  type ProxyReport,
  READY,
  type StatusInput,
  setCondition,
  statusChange,
  statusChanged,
  statusEqual,
} from './conditions.js';

const T1 = new Date('2025-03-01T10:00:00.250Z');
const T2 = new Date('2025-03-01T10:05:00.000Z');
const HASH = 'a'.repeat(64);
const OLD = 'b'.repeat(64);

function cond(
  type: string,
  status: Condition['status'],
  reason: string,
  at = '2025-01-01T00:00:00Z',
): Condition {
  return {
    type,
    status,
    reason,
    message: `${reason} message`,
    lastTransitionTime: at,
    observedGeneration: 1,
  };
}

describe('setCondition', () => {
  const before = [cond('Accepted', 'True', 'Accepted'), cond('Ready', 'False', 'Pending')];

  it.each([
    {
      name: 'a new type is appended with now',
      next: { type: 'Degraded', status: 'False', reason: 'AsExpected', message: '', observedGeneration: 2 },
      index: 2,
      time: '2025-03-01T10:00:00Z',
    },
    {
      name: 'the same status keeps its transition time, and takes the new reason, message and generation',
      next: { type: 'Ready', status: 'False', reason: 'NoProxies', message: 'none', observedGeneration: 2 },
      index: 1,
      time: '2025-01-01T00:00:00Z',
    },
    {
      name: 'a changed status takes now',
      next: { type: 'Ready', status: 'True', reason: 'ConfigLoaded', message: 'ok', observedGeneration: 2 },
      index: 1,
      time: '2025-03-01T10:00:00Z',
    },
    {
      name: 'True to Unknown is a change too',
      next: { type: 'Accepted', status: 'Unknown', reason: 'Pending', message: '', observedGeneration: 2 },
      index: 0,
      time: '2025-03-01T10:00:00Z',
    },
  ] as const)('$name', ({ next, index, time }) => {
    const copy = structuredClone(before);
    const after = setCondition(before, next, T1);
    expect(before).toEqual(copy);
    expect(after[index]).toEqual({ ...next, lastTransitionTime: time });
    expect(after.map((c) => c.type)).toEqual(
      index < before.length ? before.map((c) => c.type) : [...before.map((c) => c.type), next.type],
    );
  });

  it('cuts a long message', () => {
    const [c] = setCondition(
      [],
      {
        type: 'Degraded',
        status: 'True',
        reason: 'ReloadFailed',
        message: 'x'.repeat(5000),
        observedGeneration: 1,
      },
      T1,
    );
    expect(c?.message).toHaveLength(1024);
    expect(c?.message.endsWith('...')).toBe(true);
  });
});

function policy(generation: number, status?: MetricPolicyStatus): MetricPolicy {
  return {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { namespace: 'team-a', name: 'limits', generation },
    spec: { proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'edge' } } },
    ...(status === undefined ? {} : { status }),
  };
}

const up = (endpoint: string, configHash = HASH, lastError?: string): ProxyReport => ({
  endpoint,
  reachable: true,
  configHash,
  ...(lastError === undefined ? {} : { lastError }),
});
const down = (endpoint: string): ProxyReport => ({ endpoint, reachable: false });

function input(overrides: Partial<StatusInput> = {}): StatusInput {
  return {
    policy: policy(3),
    accepted: { ok: true },
    proxies: [up('10.0.0.1:8080'), up('10.0.0.2:8080')],
    renderedHash: HASH,
    renderedGenerations: { 'team-a/limits': 3, 'team-b/other': 9 },
    topOffenders: [],
    now: T1,
    ...overrides,
  };
}

type Expect = [Condition['status'], string];

describe('computeStatus', () => {
  it.each<{
    name: string;
    in: Partial<StatusInput>;
    accepted: Expect;
    ready: Expect;
    degraded: Expect;
    message?: RegExp;
  }>([
    {
      name: 'every proxy runs the rendering',
      in: {},
      accepted: ['True', 'Accepted'],
      ready: ['True', 'ConfigLoaded'],
      degraded: ['False', 'AsExpected'],
      message: /^All 2 proxies run generation 3 \(configuration aaaaaaaaaaaa\)\.$/,
    },
    {
      name: "a proxy runs a set never rendered as a whole, whose file of the policy's shard holds it",
      in: {
        proxies: [
          up('10.0.0.1:8080'),
          { ...up('10.0.0.2:8080', 'mixed'), fileHashes: { '/c/p.yaml': 'mine' } },
        ],
        holdsFiles: (files) => files['/c/p.yaml'] === 'mine',
      },
      accepted: ['True', 'Accepted'],
      ready: ['True', 'ConfigLoaded'],
      degraded: ['False', 'AsExpected'],
    },
    {
      name: "a proxy runs a set never rendered as a whole, whose file of the policy's shard is older",
      in: {
        proxies: [
          up('10.0.0.1:8080'),
          { ...up('10.0.0.2:8080', 'mixed'), fileHashes: { '/c/p.yaml': 'old' } },
        ],
        holdsFiles: (files) => files['/c/p.yaml'] === 'mine',
      },
      accepted: ['True', 'Accepted'],
      ready: ['False', 'Pending'],
      degraded: ['False', 'AsExpected'],
    },
    {
      name: 'a proxy still runs an older configuration',
      in: { proxies: [up('10.0.0.1:8080'), up('10.0.0.2:8080', OLD)] },
      accepted: ['True', 'Accepted'],
      ready: ['False', 'Pending'],
      degraded: ['False', 'AsExpected'],
      message: /^1 of 2 proxies have not loaded configuration aaaaaaaaaaaa yet: 10\.0\.0\.2:8080\.$/,
    },
    {
      name: 'the current generation is not rendered yet',
      in: { renderedGenerations: { 'team-a/limits': 2 } },
      accepted: ['True', 'Accepted'],
      ready: ['False', 'Pending'],
      degraded: ['False', 'AsExpected'],
      message: /not rendered/,
    },
    {
      name: 'the instance has no proxies',
      in: { proxies: [] },
      accepted: ['True', 'Accepted'],
      ready: ['False', 'NoProxies'],
      degraded: ['False', 'AsExpected'],
      message: /instance edge/,
    },
    {
      name: 'the proxies that answer are current, one does not answer',
      in: { proxies: [up('10.0.0.1:8080'), down('10.0.0.2:8080')] },
      accepted: ['True', 'Accepted'],
      ready: ['Unknown', 'ProxiesUnreachable'],
      degraded: ['True', 'ProxiesUnreachable'],
    },
    {
      name: 'a proxy refused the rendering and keeps the old one',
      in: { proxies: [up('10.0.0.1:8080'), up('10.0.0.2:8080', OLD, 'spec.drop[0]: missing )')] },
      accepted: ['True', 'Accepted'],
      ready: ['False', 'Pending'],
      degraded: ['True', 'ReloadFailed'],
    },
    {
      name: 'the spec is rejected and an earlier generation stays in force',
      in: {
        accepted: { ok: false, reason: 'InvalidSpec', message: 'spec.drop[0]: missing )' },
        renderedGenerations: { 'team-a/limits': 2 },
      },
      accepted: ['False', 'InvalidSpec'],
      ready: ['False', 'NotAccepted'],
      degraded: ['False', 'NotAccepted'],
      message: /generation 2 stays in force/,
    },
    {
      name: 'the spec conflicts with another policy',
      in: {
        accepted: { ok: false, reason: 'Conflict', message: 'clashes with team-b/other' },
        renderedGenerations: {},
      },
      accepted: ['False', 'Conflict'],
      ready: ['False', 'NotAccepted'],
      degraded: ['False', 'NotAccepted'],
    },
  ])('$name', (c) => {
    const status = computeStatus(input(c.in));
    const pick = (type: string) => {
      const found = status.conditions?.find((x) => x.type === type);
      return [found?.status, found?.reason];
    };
    expect(status.conditions?.map((x) => x.type)).toEqual([ACCEPTED, READY, DEGRADED]);
    expect(pick(ACCEPTED)).toEqual(c.accepted);
    expect(pick(READY)).toEqual(c.ready);
    expect(pick(DEGRADED)).toEqual(c.degraded);
    if (c.message) expect(status.conditions?.find((x) => x.type === READY)?.message).toMatch(c.message);
    for (const x of status.conditions ?? []) {
      expect(x.observedGeneration).toBe(3);
      expect(x.lastTransitionTime).toBe('2025-03-01T10:00:00Z');
      expect(x.reason).toMatch(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/);
    }
    expect(status.observedGeneration).toBe(3);
  });

  it('passes the rejection message through', () => {
    const status = computeStatus(
      input({ accepted: { ok: false, reason: 'InvalidSpec', message: 'spec.drop[0]: missing )' } }),
    );
    expect(status.conditions?.[0]?.message).toBe('spec.drop[0]: missing )');
  });

  it('counts the proxies that run the rendering', () => {
    const status = computeStatus(input({ proxies: [up('a'), up('b', OLD), down('c')] }));
    expect(status.proxies).toEqual({ ready: 1, total: 3, configHash: HASH });
  });

  it('changes nothing when recomputed later from the same facts, so the write is skipped', () => {
    const first = computeStatus(input());
    const again = computeStatus(input({ policy: policy(3, first), now: T2 }));
    expect(statusEqual(first, again)).toBe(true);
  });

  it('moves only the transition time of the condition whose status changed', () => {
    const pending = computeStatus(input({ proxies: [up('a'), up('b', OLD)] }));
    const loaded = computeStatus(input({ policy: policy(3, pending), now: T2 }));
    const times = Object.fromEntries((loaded.conditions ?? []).map((c) => [c.type, c.lastTransitionTime]));
    expect(times).toEqual({
      Accepted: '2025-03-01T10:00:00Z',
      Ready: '2025-03-01T10:05:00Z',
      Degraded: '2025-03-01T10:00:00Z',
    });
    expect(statusEqual(pending, loaded)).toBe(false);
  });

  it('keeps transition times across a new generation whose conditions keep their status', () => {
    const g3 = computeStatus(input());
    const g4 = computeStatus(
      input({ policy: policy(4, g3), renderedGenerations: { 'team-a/limits': 4 }, now: T2 }),
    );
    for (const c of g4.conditions ?? []) {
      expect(c.lastTransitionTime).toBe('2025-03-01T10:00:00Z');
      expect(c.observedGeneration).toBe(4);
    }
    expect(g4.observedGeneration).toBe(4);
  });

  it('lists at most five offenders, the fastest first, with a one-line summary', () => {
    const offenders: TopOffender[] = [
      { metric: 'a', series: 10, droppedSamples: 50, reason: 'series_limit' },
      ...['b', 'c', 'd', 'e', 'f', 'g'].map((metric, i) => ({
        metric,
        series: 100,
        droppedSamplesPerSecond: i === 5 ? 2500 : i + 1,
        droppedSamples: 1000,
        reason: 'label_values_limit',
      })),
    ];
    const status = computeStatus(input({ topOffenders: offenders, droppedSamplesPerSecond: 2515 }));
    expect(status.topOffenders?.map((o) => o.metric)).toEqual(['g', 'f', 'e', 'd', 'c']);
    expect(status.topOffender).toBe('g 2.5k/s label_values_limit');
    expect(status.droppedSamplesPerSecond).toBe(2515);
    expect(computeStatus(input()).topOffender).toBeUndefined();
  });
});

describe('offenderLine', () => {
  it.each<[TopOffender, string]>([
    [
      { metric: 'up', series: 1, droppedSamplesPerSecond: 0.5, droppedSamples: 3, reason: 'metric_dropped' },
      'up 0.5/s metric_dropped',
    ],
    [
      { metric: 'up', series: 1, droppedSamplesPerSecond: 999_999, droppedSamples: 3, reason: 'x' },
      'up 1M/s x',
    ],
    [
      { metric: 'up', series: 1, droppedSamples: 1_234_567, reason: 'dryRun:series_limit' },
      'up 1.23M dropped dryRun:series_limit',
    ],
  ])('%j reads %s', (o, line) => {
    expect(offenderLine(o)).toBe(line);
  });
});

describe('statusEqual', () => {
  const a: MetricPolicyStatus = {
    observedGeneration: 1,
    conditions: [cond('Accepted', 'True', 'Accepted'), cond('Ready', 'True', 'ConfigLoaded')],
    proxies: { ready: 1, total: 1, configHash: HASH },
    topOffenders: [],
  };

  it.each<[string, MetricPolicyStatus | undefined, boolean]>([
    ['a copy', structuredClone(a), true],
    [
      'the same with keys in another order',
      {
        topOffenders: [],
        proxies: { configHash: HASH, total: 1, ready: 1 },
        conditions: a.conditions!,
        observedGeneration: 1,
      },
      true,
    ],
    ['an undefined field', { ...a, topOffender: undefined } as unknown as MetricPolicyStatus, true],
    [
      'another transition time',
      { ...a, conditions: [cond('Accepted', 'True', 'Accepted', '2025-02-01T00:00:00Z'), a.conditions![1]!] },
      false,
    ],
    ['conditions in another order', { ...a, conditions: [...a.conditions!].reverse() }, false],
    [
      'another message',
      { ...a, conditions: [{ ...a.conditions![0]!, message: 'other' }, a.conditions![1]!] },
      false,
    ],
    ['an added field', { ...a, droppedSamplesPerSecond: 1 }, false],
    [
      'an empty list where there was none',
      { ...a, topOffenders: undefined } as unknown as MetricPolicyStatus,
      false,
    ],
    ['no status', undefined, false],
  ])('%s', (_name, b, equal) => {
    expect(statusEqual(a, b)).toBe(equal);
    expect(statusEqual(b, a)).toBe(equal);
  });
});

describe('the status schema', () => {
  it('holds every status computeStatus writes, and converts to a structural CRD schema', () => {
    const statuses = [
      computeStatus(input()),
      computeStatus(input({ proxies: [up('a', OLD, 'x'.repeat(40_000)), down('b')] })),
      computeStatus(input({ accepted: { ok: false, reason: 'Conflict', message: 'clash' }, proxies: [] })),
      computeStatus(
        input({
          topOffenders: [
            {
              metric: 'm',
              series: 3,
              droppedSamplesPerSecond: 0.25,
              droppedSamples: 9,
              reason: 'dryRun:series_limit',
            },
          ],
          droppedSamplesPerSecond: 0.25,
        }),
      ),
    ];
    // TypeBox checks neither a string enum written as Unsafe nor a format it was not told about.
    // Vitest runs each test file in its own module graph, so these registrations stay here.
    TypeRegistry.Set('Unsafe', (schema: { enum?: unknown[] }, value) => schema.enum?.includes(value) ?? true);
    FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v));
    for (const s of statuses) expect([...Value.Errors(MetricPolicyStatusSchema, s)]).toEqual([]);
    const structural = toStructural(MetricPolicyStatusSchema, 'status');
    expect(structural.type).toBe('object');
    expect(Object.keys(structural.properties as object)).toContain('topOffender');
  });
});

describe('statusChanged', () => {
  const offender = (rate: number, samples: number) => ({
    metric: 'm',
    series: 3,
    droppedSamplesPerSecond: rate,
    droppedSamples: samples,
    reason: 'metric_dropped',
  });
  const status = (rate: number, samples: number): MetricPolicyStatus => ({
    observedGeneration: 1,
    droppedSamplesPerSecond: rate,
    topOffenders: [offender(rate, samples)],
    topOffender: `m ${rate}/s metric_dropped`,
  });
  it.each([
    ['the same', status(100, 10), status(100, 10), false],
    // A steady drop: the counter grows and the rate wobbles, which is not worth a write.
    ['a counter that grew and a rate within 5 %', status(100, 10), status(104, 5000), false],
    ['a rate that moved more than 5 %', status(100, 10), status(106, 10), true],
    ['a rate that fell to 0', status(100, 10), status(0, 10), true],
    ['a rate that became known', { observedGeneration: 1 }, status(0, 0), true],
    [
      'no rate yet, then a rate of 0',
      { observedGeneration: 1 },
      { observedGeneration: 1, droppedSamplesPerSecond: 0 },
      false,
    ],
    [
      'no rate yet, then a rate above 0',
      { observedGeneration: 1 },
      { observedGeneration: 1, droppedSamplesPerSecond: 0.5 },
      true,
    ],
    ['a new generation', status(100, 10), { ...status(100, 10), observedGeneration: 2 }, true],
    ['offenders marked stale', status(100, 10), { ...status(100, 10), offendersStale: true }, true],
  ] as const)('%s: %s', (_name, live, next, changed) => {
    expect(statusChanged(live, next)).toBe(changed);
  });
});

describe('statusChange', () => {
  const ready = (status: 'True' | 'False', reason: string) => ({
    type: 'Ready',
    status,
    reason,
    message: '',
    lastTransitionTime: '2025-01-01T00:00:00Z',
    observedGeneration: 1,
  });
  it.each<[string, MetricPolicyStatus | undefined, MetricPolicyStatus, string | undefined]>([
    ['a first status', undefined, { observedGeneration: 1 }, 'created'],
    ['an empty status', {}, { observedGeneration: 1 }, 'created'],
    ['nothing visible', { observedGeneration: 1 }, { observedGeneration: 1 }, undefined],
    [
      'a condition, named by its type',
      { observedGeneration: 1, conditions: [ready('False', 'Pending')] },
      { observedGeneration: 1, conditions: [ready('True', 'ConfigLoaded')] },
      'conditions.Ready',
    ],
    [
      'the first field that differs',
      { observedGeneration: 1 },
      { observedGeneration: 2 },
      'observedGeneration',
    ],
  ])('%s', (_name, live, next, change) => {
    expect(statusChange(live, next)).toBe(change);
    expect(statusChanged(live, next)).toBe(change !== undefined);
  });
});

describe('notReadyReason', () => {
  const c = (type: string, status: 'True' | 'False' | 'Unknown', reason: string) => ({
    type,
    status,
    reason,
    message: '',
    observedGeneration: 1,
    lastTransitionTime: '2030-01-01T00:00:00Z',
  });
  it.each([
    [[c('Accepted', 'False', 'InvalidSpec'), c('Ready', 'False', 'NotAccepted')], 'InvalidSpec'],
    [[c('Accepted', 'True', 'Accepted'), c('Ready', 'False', 'Pending')], 'Pending'],
    [
      [
        c('Accepted', 'True', 'Accepted'),
        c('Ready', 'True', 'ConfigLoaded'),
        c('Degraded', 'True', 'ReloadFailed'),
      ],
      'ReloadFailed',
    ],
    [
      [
        c('Accepted', 'True', 'Accepted'),
        c('Ready', 'True', 'ConfigLoaded'),
        c('Degraded', 'False', 'AsExpected'),
      ],
      undefined,
    ],
  ])('%j: %s', (conditions, reason) => {
    expect(notReadyReason(conditions)).toBe(reason);
  });
});
