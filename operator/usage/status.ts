// status.unused of a policy with spec.unused: what the operator found reading (from the rendered
// usage) and what the proxies found unread (GET /api/v1/stats/unused, summed over the proxies).
// Pure; bounded lists, so a status stays small however many metrics a cluster has.

import { type MetricUsageSpecT, UNUSED_STATUS_LIMIT, type UnusedStatusT } from '../../crds/metric-policy.js';
import type { MetricPolicy } from '../api/types.js';

/** One proxy's report for one policy (a part of proxy/stats/unused.ts UnusedPolicyReport). */
export interface ProxyUnusedReport {
  readonly usageKnown: boolean;
  readonly unusedMetrics: number;
  readonly activeSeries: number;
  readonly samplesPerSecond: number;
  readonly metrics: readonly {
    readonly metric: string;
    readonly activeSeries: number;
    readonly samplesPerSecond: number;
  }[];
  /** Unread labels of read metrics (spec.unused.labels). */
  readonly labels?: readonly {
    readonly metric: string;
    readonly label: string;
    readonly distinctValues: number;
  }[];
}

export interface UnusedStatusInput {
  readonly policy: MetricPolicy;
  /** The usage rendered for the policy's instance; undefined when none is known yet. */
  readonly usage: MetricUsageSpecT | undefined;
  readonly problems: readonly string[];
  /** The policy's report from each proxy that answered; undefined when the proxies were not polled. */
  readonly reports: readonly ProxyUnusedReport[] | undefined;
}

export function unusedStatus(input: UnusedStatusInput): UnusedStatusT | undefined {
  const spec = input.policy.spec.unused;
  if (spec === undefined) return undefined;
  const metrics = input.usage?.metrics ?? [];
  const own = (spec.metrics?.length ?? 0) + (spec.expressions?.length ?? 0);
  const status: UnusedStatusT = {
    action: spec.action ?? 'report',
    usedMetrics: metrics.length,
    usageKnown: input.usage !== undefined || own > 0,
  };
  const usedBy = metrics.slice(0, UNUSED_STATUS_LIMIT).map((m) => ({
    metric: m.name ?? m.pattern ?? '',
    sources: [...m.sources],
  }));
  if (usedBy.length > 0) status.usedBy = usedBy;
  if (input.problems.length > 0) status.sourceProblems = input.problems.slice(0, UNUSED_STATUS_LIMIT);
  const reports = input.reports;
  if (reports === undefined || reports.length === 0) return status;

  // The same metric on several proxies: its series and rate add up.
  const byMetric = new Map<string, { series: number; samplesPerSecond: number }>();
  let series = 0;
  let rate = 0;
  let count = 0;
  for (const r of reports) {
    series += r.activeSeries;
    rate += r.samplesPerSecond;
    count = Math.max(count, r.unusedMetrics);
    for (const m of r.metrics) {
      const row = byMetric.get(m.metric) ?? { series: 0, samplesPerSecond: 0 };
      row.series += m.activeSeries;
      row.samplesPerSecond += m.samplesPerSecond;
      byMetric.set(m.metric, row);
    }
  }
  const top = [...byMetric.entries()]
    .sort(([a, x], [b, y]) => y.series - x.series || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, UNUSED_STATUS_LIMIT)
    .map(([metric, row]) => ({ metric, series: row.series, samplesPerSecond: round(row.samplesPerSecond) }));
  const byLabel = new Map<string, { metric: string; label: string; distinctValues: number }>();
  for (const r of reports) {
    for (const l of r.labels ?? []) {
      const key = `${l.metric}\u0000${l.label}`;
      const row = byLabel.get(key) ?? { metric: l.metric, label: l.label, distinctValues: 0 };
      row.distinctValues += l.distinctValues;
      byLabel.set(key, row);
    }
  }
  const labels = [...byLabel.values()]
    .sort(
      (a, b) =>
        b.distinctValues - a.distinctValues ||
        (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : a.label < b.label ? -1 : 1),
    )
    .slice(0, UNUSED_STATUS_LIMIT);
  if (labels.length > 0) status.labels = labels;
  status.unusedMetrics = Math.max(count, byMetric.size);
  status.series = series;
  status.samplesPerSecond = round(rate);
  if (top.length > 0) status.top = top;
  return status;
}

/** Three significant digits: a status that changes with every sample would be written every poll. */
function round(n: number): number {
  return n === 0 ? 0 : Number(n.toPrecision(3));
}
