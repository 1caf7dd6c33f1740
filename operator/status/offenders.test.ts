import { describe, expect, it } from 'vitest';
import type { TopDrop, TopOffendersReport } from '../../policy/reports.js';
import {
  aggregateOffenders,
  type EndpointPoll,
  NO_OFFENDERS,
  parseTopOffendersReport,
  roundRate,
} from './offenders.js';

const T0 = 1_700_000_000_000;
const A = 'team-a/limits';
const B = 'team-b/standards';

function poll(
  endpoint: string,
  at: number,
  drops: TopDrop[],
  opts: { metrics?: TopOffendersReport['metrics']; limit?: number; configHash?: string } = {},
): EndpointPoll {
  return {
    endpoint,
    at,
    limit: opts.limit ?? 100,
    ...(opts.configHash === undefined ? {} : { configHash: opts.configHash }),
    report: { metrics: opts.metrics ?? [], labels: [], drops },
  };
}

const drop = (metric: string, policy: string, reason: string, samples: number): TopDrop => ({
  metric,
  policy,
  reason,
  samples,
});

describe('aggregateOffenders', () => {
  it('sums each policy over the proxies, with the series of each metric', () => {
    const metrics = [{ metric: 'http_requests_total', activeSeries: 4000 }];
    const out = aggregateOffenders({
      previous: [],
      current: [
        poll(
          'p1',
          T0,
          [drop('http_requests_total', A, 'series_limit', 100), drop('up', B, 'label_name', 7)],
          { metrics },
        ),
        poll('p2', T0, [drop('http_requests_total', A, 'series_limit', 50)], { metrics }),
      ],
    });
    expect(out.get(A)).toEqual({
      topOffenders: [
        { metric: 'http_requests_total', series: 8000, droppedSamples: 150, reason: 'series_limit' },
      ],
      droppedSamples: 150,
    });
    expect(out.get(B)?.topOffenders).toEqual([
      { metric: 'up', series: 0, droppedSamples: 7, reason: 'label_name' },
    ]);
    expect(out.get('team-c/none') ?? NO_OFFENDERS).toEqual({ topOffenders: [], droppedSamples: 0 });
  });

  it('derives rates from two polls of each proxy and sums them', () => {
    const previous = [
      poll('p1', T0, [drop('m', A, 'series_limit', 100)]),
      poll('p2', T0, [drop('m', A, 'series_limit', 1000)]),
    ];
    const current = [
      poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 150)]),
      poll('p2', T0 + 20_000, [drop('m', A, 'series_limit', 1400)]),
    ];
    const a = aggregateOffenders({ previous, current }).get(A);
    // p1: 50 samples in 10 s; p2: 400 in 20 s.
    expect(a?.topOffenders[0]?.droppedSamplesPerSecond).toBe(25);
    expect(a?.droppedSamplesPerSecond).toBe(25);
    expect(a?.droppedSamples).toBe(1550);
  });

  it.each([
    {
      name: 'a counter that went down restarted from zero',
      before: poll('p1', T0, [drop('m', A, 'series_limit', 900), drop('n', A, 'metric_dropped', 10)]),
      after: poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 30), drop('n', A, 'metric_dropped', 20)]),
      rates: { m: 3, n: 2 },
    },
    {
      name: 'a new configuration restarted every counter',
      before: poll('p1', T0, [drop('m', A, 'series_limit', 10), drop('n', A, 'metric_dropped', 10)], {
        configHash: 'h1',
      }),
      after: poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 40), drop('n', A, 'metric_dropped', 20)], {
        configHash: 'h2',
      }),
      rates: { m: 4, n: 2 },
    },
    {
      name: 'a drop missing from a complete list was at zero',
      before: poll('p1', T0, [drop('m', A, 'series_limit', 10)], { limit: 10 }),
      after: poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 40), drop('n', A, 'metric_dropped', 20)], {
        limit: 10,
      }),
      rates: { m: 3, n: 2 },
    },
    {
      name: 'a drop missing from a full list has no rate yet',
      before: poll('p1', T0, [drop('m', A, 'series_limit', 10)], { limit: 1 }),
      after: poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 40), drop('n', A, 'metric_dropped', 20)], {
        limit: 1,
      }),
      rates: { m: 3, n: undefined },
    },
    {
      name: 'a proxy polled twice at the same time gives no rate',
      before: poll('p1', T0, [drop('m', A, 'series_limit', 10)]),
      after: poll('p1', T0, [drop('m', A, 'series_limit', 40)]),
      rates: { m: undefined },
    },
    {
      name: 'a proxy not polled before gives no rate',
      before: poll('p0', T0, [drop('m', A, 'series_limit', 10)]),
      after: poll('p1', T0 + 10_000, [drop('m', A, 'series_limit', 40)]),
      rates: { m: undefined },
    },
  ])('$name', ({ before, after, rates }) => {
    const a = aggregateOffenders({ previous: [before], current: [after] }).get(A);
    const got = Object.fromEntries((a?.topOffenders ?? []).map((o) => [o.metric, o.droppedSamplesPerSecond]));
    expect(got).toEqual(rates);
  });

  it('keeps the fastest offenders, bounded, in one order whatever the proxies listed first', () => {
    const metrics = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const previous = [
      poll(
        'p1',
        T0,
        metrics.map((m) => drop(m, A, 'series_limit', 0)),
      ),
    ];
    const current = [
      poll(
        'p1',
        T0 + 1000,
        metrics.map((m, i) => drop(m, A, 'series_limit', i === 0 ? 10 : i)),
      ),
    ];
    const order = (ps: EndpointPoll[]) =>
      aggregateOffenders({ previous, current: ps, limit: 3 })
        .get(A)
        ?.topOffenders.map((o) => o.metric);
    expect(order(current)).toEqual(['a', 'g', 'f']);
    const reversed = [
      { ...current[0]!, report: { ...current[0]!.report, drops: [...current[0]!.report.drops].reverse() } },
    ];
    expect(order(reversed)).toEqual(['a', 'g', 'f']);
    expect(aggregateOffenders({ previous, current }).get(A)?.topOffenders).toHaveLength(5);
  });

  it('rounds rates to three significant digits', () => {
    expect([roundRate(0), roundRate(1 / 3), roundRate(123_456), roundRate(0.000_123_45)]).toEqual([
      0, 0.333, 123_000, 0.000_123,
    ]);
  });
});

describe('parseTopOffendersReport', () => {
  it.each([
    [null, /report: must be an object/],
    [{ metrics: [], labels: [] }, /drops: must be a list/],
    [
      { metrics: [{ metric: 'a', activeSeries: -1 }], labels: [], drops: [] },
      /metrics\[0\]\.activeSeries: must be a count/,
    ],
    [
      { metrics: [], labels: [], drops: [{ metric: 'a', policy: 1, reason: 'r', samples: 1 }] },
      /drops\[0\]\.policy: must be a string/,
    ],
  ])('refuses %j', (json, error) => {
    expect(() => parseTopOffendersReport(json)).toThrow(error);
  });
});
