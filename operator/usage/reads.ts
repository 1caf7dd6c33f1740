// Reads from the proxies' read paths (GET /api/v1/stats/usage, proxy/query/usage.ts), merged over
// the proxies of an instance: into the MetricUsage document's `reads` (what spec.unused.readWindow
// judges by) and into status.usage (the least-read expensive metrics and the missing ones). Pure.

import { type MetricReadsT, USAGE_STATUS_LIMIT, type UsageStatusT } from '../../crds/metric-policy.js';

/** One proxy's usage report, as the operator keeps it. */
export interface ProxyUsageReport {
  /** Since when the proxy records reads, ms since the epoch. */
  readonly sinceMs: number;
  /** Whether the proxy fetched the query API's metric names, so `known: false` means missing. */
  readonly missingKnown: boolean;
  readonly metrics: readonly {
    readonly metric: string;
    readonly reads30d: number;
    /** 0 when never read. */
    readonly lastReadMs: number;
    readonly known: boolean;
    readonly series: number;
    readonly samplesPerSecond: number;
  }[];
}

const HOUR_MS = 3_600_000;

interface Merged {
  reads30d: number;
  lastReadMs: number;
  known: boolean;
  series: number;
  samplesPerSecond: number;
}

function merge(reports: readonly ProxyUsageReport[]): Map<string, Merged> {
  const out = new Map<string, Merged>();
  for (const r of reports) {
    for (const m of r.metrics) {
      const row = out.get(m.metric) ?? {
        reads30d: 0,
        lastReadMs: 0,
        known: false,
        series: 0,
        samplesPerSecond: 0,
      };
      row.reads30d += m.reads30d;
      row.lastReadMs = Math.max(row.lastReadMs, m.lastReadMs);
      row.known ||= m.known;
      row.series += m.series;
      row.samplesPerSecond += m.samplesPerSecond;
      out.set(m.metric, row);
    }
  }
  return out;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The MetricUsage document's reads; undefined when no proxy records reads. Last reads are rounded
 * up to the hour, so the rendered document changes at most hourly for a metric read all the time,
 * and a rounding errs towards keeping a metric. `since` is the latest start over the proxies.
 */
export function metricReads(reports: readonly ProxyUsageReport[]): MetricReadsT | undefined {
  if (reports.length === 0) return undefined;
  const since = Math.max(...reports.map((r) => r.sinceMs));
  const rows = [...merge(reports)].filter(([, m]) => m.lastReadMs > 0).sort(([a], [b]) => cmp(a, b));
  return {
    since: new Date(since).toISOString(),
    metrics: rows.map(([name, m]) => ({
      name,
      lastRead: new Date(Math.ceil(m.lastReadMs / HOUR_MS) * HOUR_MS).toISOString(),
    })),
  };
}

/** Three significant digits: a status that changes with every sample would be written every poll. */
function round(n: number): number {
  return n === 0 ? 0 : Number(n.toPrecision(3));
}

/** status.usage of a policy of the instance whose proxies sent `reports`. */
export function usageStatus(reports: readonly ProxyUsageReport[]): UsageStatusT {
  if (reports.length === 0) return { readsKnown: false, metricsRead: 0 };
  const merged = merge(reports);
  const rows = [...merged];
  const weight = (m: Merged) => m.series * m.samplesPerSecond;
  const leastRead = rows
    .filter(([, m]) => m.series > 0)
    .sort(
      ([a, x], [b, y]) =>
        (x.reads30d === 0 ? 0 : 1) - (y.reads30d === 0 ? 0 : 1) ||
        (x.reads30d === 0 ? weight(y) - weight(x) : weight(y) / y.reads30d - weight(x) / x.reads30d) ||
        cmp(a, b),
    )
    .slice(0, USAGE_STATUS_LIMIT)
    .map(([metric, m]) => ({
      metric,
      series: m.series,
      samplesPerSecond: round(m.samplesPerSecond),
      reads30d: m.reads30d,
      ...(m.lastReadMs > 0
        ? { lastRead: new Date(Math.ceil(m.lastReadMs / HOUR_MS) * HOUR_MS).toISOString() }
        : {}),
      ...(m.reads30d > 0 ? { costPerRead: round(weight(m) / m.reads30d) } : {}),
    }));
  const judged = reports.some((r) => r.missingKnown);
  const missingRows = judged
    ? rows
        .filter(([, m]) => !m.known && m.lastReadMs > 0)
        .sort(([a, x], [b, y]) => y.reads30d - x.reads30d || cmp(a, b))
    : [];
  const status: UsageStatusT = {
    readsKnown: true,
    since: new Date(Math.max(...reports.map((r) => r.sinceMs))).toISOString(),
    metricsRead: rows.filter(([, m]) => m.reads30d > 0).length,
  };
  if (leastRead.length > 0) status.leastRead = leastRead;
  if (judged) status.missingMetrics = missingRows.length;
  if (missingRows.length > 0) {
    status.missing = missingRows.slice(0, USAGE_STATUS_LIMIT).map(([metric, m]) => ({
      metric,
      reads30d: m.reads30d,
      lastRead: new Date(Math.ceil(m.lastReadMs / HOUR_MS) * HOUR_MS).toISOString(),
    }));
  }
  return status;
}
