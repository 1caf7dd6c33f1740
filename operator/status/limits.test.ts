import { describe, expect, it } from 'vitest';
import { LIMITS_STATUS_LIMIT } from '../../crds/metric-policy.js';
import { limitsStatus, mergeLimits, type PolicyLimits, parseLimitsReport } from './limits.js';

const use = (metric: string, current: number, max: number, global = false) => ({
  limit: 'perMetric[0]',
  metric,
  current,
  max,
  global,
});

describe('parseLimitsReport', () => {
  it("keeps each policy's limits, and refuses a malformed answer naming the field", () => {
    const got = parseLimitsReport({
      policies: [
        {
          policy: 'apps/a',
          fillPercent: 60,
          limit: 'perMetric[0] x',
          global: true,
          limits: [
            { limit: 'perMetric[0]', metric: 'x', current: 12, max: 20 },
            { limit: 'perTenantMaxSeries', tenant: 'team-a', current: 3, max: 100 },
          ],
        },
        // An older proxy: the fullest limit only.
        { policy: 'apps/b', fillPercent: 75, limit: 'perMetric[0] y' },
      ],
    });
    expect(got).toEqual(
      new Map([
        [
          'apps/a',
          {
            fillPercent: 60,
            limits: [
              use('x', 12, 20, true),
              { limit: 'perTenantMaxSeries', tenant: 'team-a', current: 3, max: 100, global: true },
            ],
          },
        ],
        ['apps/b', { fillPercent: 75, limits: [] }],
      ]),
    );
    expect(() => parseLimitsReport({ policies: [{ policy: 'apps/a', fillPercent: -1 }] })).toThrow(
      'policies[0].fillPercent: must be an integer of at least 0',
    );
    expect(() =>
      parseLimitsReport({
        policies: [
          { policy: 'apps/a', fillPercent: 1, limits: [{ limit: 'perMetric[0]', current: 1, max: 0 }] },
        ],
      }),
    ).toThrow('policies[0].limits[0].max: must be an integer of at least 1');
    expect(() => parseLimitsReport({})).toThrow('policies: must be a list');
  });
});

describe('mergeLimits', () => {
  const report = (limits: PolicyLimits['limits'], fillPercent = 0) =>
    new Map([['apps/a', { fillPercent, limits }]]);

  it('takes the global count of a scope as it is, never the sum over the proxies', () => {
    // Two proxies with a shared store: both report the store's 12 of 20.
    const merged = mergeLimits([report([use('x', 12, 20, true)]), report([use('x', 12, 20, true)])]);
    expect(merged.get('apps/a')).toEqual({ fillPercent: 60, limits: [use('x', 12, 20, true)] });
  });

  it('takes the fullest proxy of a scope without a store, and a global count over any own count', () => {
    expect(mergeLimits([report([use('x', 8, 20)]), report([use('x', 11, 20)])]).get('apps/a')).toEqual({
      fillPercent: 55,
      limits: [use('x', 11, 20)],
    });
    // One proxy counts globally, the other fell back and counts its own (larger than its share).
    expect(mergeLimits([report([use('x', 15, 20)]), report([use('x', 12, 20, true)])]).get('apps/a')).toEqual(
      {
        fillPercent: 60,
        limits: [use('x', 12, 20, true)],
      },
    );
  });

  it('lists the fullest scopes first, at most the status limit, with the fill of the fullest', () => {
    const many = Array.from({ length: 15 }, (_, i) => use(`m${i}`, i, 20));
    const merged = mergeLimits([report(many.slice(0, 8)), report(many.slice(8)), undefined]).get('apps/a')!;
    expect(merged.fillPercent).toBe(70);
    expect(merged.limits.map((u) => u.metric)).toEqual(
      Array.from({ length: LIMITS_STATUS_LIMIT }, (_, i) => `m${14 - i}`),
    );
  });

  it("keeps an older proxy's fill, which lists no limits", () => {
    expect(mergeLimits([report([], 90), report([use('x', 1, 20)])]).get('apps/a')?.fillPercent).toBe(90);
  });
});

describe('limitsStatus', () => {
  it('gives the list, the fill and a summary line naming the fullest three', () => {
    expect(
      limitsStatus({
        fillPercent: 60,
        limits: [
          use('http_requests_total', 12, 20, true),
          {
            limit: 'perLabel[0]',
            metric: 'http_requests_total',
            label: 'path',
            current: 20,
            max: 50,
            global: true,
          },
          { limit: 'perTenantMaxSeries', tenant: '', current: 30, max: 100, global: true },
          use('rpc_total', 1, 20, true),
        ],
      }),
    ).toEqual({
      limitsFillPercent: 60,
      limits: [
        { limit: 'perMetric[0]', metric: 'http_requests_total', current: 12, max: 20, global: true },
        {
          limit: 'perLabel[0]',
          metric: 'http_requests_total',
          label: 'path',
          current: 20,
          max: 50,
          global: true,
        },
        { limit: 'perTenantMaxSeries', tenant: '', current: 30, max: 100, global: true },
        { limit: 'perMetric[0]', metric: 'rpc_total', current: 1, max: 20, global: true },
      ],
      limitsSummary:
        'http_requests_total 12/20, http_requests_total{path} 20/50, tenant (none) 30/100 +1 more',
    });
    expect(limitsStatus({ fillPercent: 75, limits: [] })).toEqual({ limitsFillPercent: 75 });
  });
});
