import { describe, expect, it } from 'vitest';
import { metricReads, type ProxyUsageReport, usageStatus } from './reads.js';

const H = 3_600_000;
const T = Date.parse('2026-12-01T10:20:00Z');
const row = (metric: string, o: Partial<ProxyUsageReport['metrics'][number]> = {}) => ({
  metric,
  reads30d: 0,
  lastReadMs: 0,
  known: true,
  series: 0,
  samplesPerSecond: 0,
  ...o,
});

describe('metricReads', () => {
  it('merges the proxies: the latest read per metric, rounded up to the hour, since the latest start', () => {
    const reads = metricReads([
      {
        sinceMs: T - 48 * H,
        missingKnown: true,
        metrics: [row('a', { reads30d: 2, lastReadMs: T - 5 * H }), row('b')],
      },
      { sinceMs: T - 24 * H, missingKnown: true, metrics: [row('a', { reads30d: 1, lastReadMs: T - H })] },
    ]);
    expect(reads).toEqual({
      since: new Date(T - 24 * H).toISOString(),
      metrics: [{ name: 'a', lastRead: '2026-12-01T10:00:00.000Z' }],
    });
    // Up, never down: a rounding keeps a metric a little longer, never shorter.
    expect(
      metricReads([{ sinceMs: T, missingKnown: false, metrics: [row('a', { lastReadMs: T })] }])?.metrics,
    ).toEqual([{ name: 'a', lastRead: '2026-12-01T11:00:00.000Z' }]);
    expect(metricReads([])).toBeUndefined();
  });
});

describe('usageStatus', () => {
  it('lists the unread expensive metrics first, then the highest cost per read, and the missing ones', () => {
    const s = usageStatus([
      {
        sinceMs: T - 48 * H,
        missingKnown: true,
        metrics: [
          row('big_unread', { series: 1000, samplesPerSecond: 100 }),
          row('small_unread', { series: 1, samplesPerSecond: 1 }),
          row('read_a_lot', { series: 1000, samplesPerSecond: 100, reads30d: 1000, lastReadMs: T }),
          row('read_once', { series: 100, samplesPerSecond: 10, reads30d: 1, lastReadMs: T - H }),
          row('typo_total', { known: false, reads30d: 3, lastReadMs: T }),
        ],
      },
      {
        sinceMs: T - 24 * H,
        missingKnown: false,
        metrics: [row('read_once', { series: 100, samplesPerSecond: 10 })],
      },
    ]);
    expect(s.readsKnown).toBe(true);
    expect(s.since).toBe(new Date(T - 24 * H).toISOString());
    expect(s.metricsRead).toBe(3);
    expect(s.leastRead?.map((m) => m.metric)).toEqual([
      'big_unread',
      'small_unread',
      'read_once',
      'read_a_lot',
    ]);
    expect(s.leastRead?.[2]).toEqual({
      metric: 'read_once',
      series: 200,
      samplesPerSecond: 20,
      reads30d: 1,
      lastRead: '2026-12-01T10:00:00.000Z',
      costPerRead: 4000,
    });
    expect(s.missingMetrics).toBe(1);
    expect(s.missing).toEqual([{ metric: 'typo_total', reads30d: 3, lastRead: '2026-12-01T11:00:00.000Z' }]);
  });

  it('does not judge missing metrics when no proxy knows the query API names', () => {
    const s = usageStatus([
      {
        sinceMs: T,
        missingKnown: false,
        metrics: [row('typo', { known: false, reads30d: 1, lastReadMs: T })],
      },
    ]);
    expect(s.missingMetrics).toBeUndefined();
    expect(s.missing).toBeUndefined();
    expect(usageStatus([])).toEqual({ readsKnown: false, metricsRead: 0 });
  });
});
