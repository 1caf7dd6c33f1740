import { describe, expect, it } from 'vitest';
import type { TopOffendersReport } from '../../policy/reports.js';
import { observationOf, policyDrops } from './observation.js';
import type { EndpointPoll } from './offenders.js';

const report = (drops: number): TopOffendersReport => ({
  metrics: [],
  labels: [],
  drops: Array.from({ length: drops }, (_, i) => ({
    metric: `m${i}`,
    policy: 'apps/a',
    reason: 'r',
    samples: 1,
  })),
});
const poll = (endpoint: string, at: number, drops = 0, limit = 10): EndpointPoll => ({
  endpoint,
  at,
  limit,
  report: report(drops),
});
const proxy = (endpoint: string) => ({ endpoint, reachable: true, configHash: 'h' });

describe('observationOf', () => {
  it.each([
    ['every proxy polled twice, lists complete', [poll('a', 2)], [poll('a', 1)], [proxy('a')], true],
    ['first poll: no rate yet', [poll('a', 2)], [], [proxy('a')], false],
    ['a proxy without a report', [poll('a', 2)], [poll('a', 1)], [proxy('a'), proxy('b')], false],
    ['a list cut at its limit', [poll('a', 2, 10)], [poll('a', 1)], [proxy('a')], false],
  ])('%s: complete is %s', (_name, current, previous, proxies, complete) => {
    expect(observationOf({ proxies, current, previous, offenders: new Map() })).toMatchObject({ complete });
  });
});

describe('policyDrops', () => {
  const topOffenders = [{ metric: 'm', series: 1, droppedSamples: 5, reason: 'metric_dropped' }];
  const offenders = new Map([['apps/a', { topOffenders, droppedSamples: 5, droppedSamplesPerSecond: 0.5 }]]);
  const observed = (complete: boolean) =>
    ({ observed: true, proxies: [proxy('a')], offenders, complete }) as const;

  it('gives a listed policy its offenders and rate', () => {
    expect(policyDrops(observed(false), 'apps/a')).toEqual({ topOffenders, droppedSamplesPerSecond: 0.5 });
  });

  it('gives an unlisted policy 0/s only when the lists were complete', () => {
    expect(policyDrops(observed(true), 'apps/b')).toEqual({ topOffenders: [], droppedSamplesPerSecond: 0 });
    expect(policyDrops(observed(false), 'apps/b')).toEqual({ topOffenders: [] });
  });
});
