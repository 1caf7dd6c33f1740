// The policies, evaluated against the series a Prometheus holds: the shared part of `preview` and
// `retro`. Series are listed in pages of metric names (one /api/v1/series call per page), bounded
// by a total, and run through the proxy's engine as if they arrived in that order.

import type { Label } from '../proxy/codec/types.js';
import type { Pipeline } from '../proxy/pipeline/compile.js';
import { simulate } from '../proxy/pipeline/simulate.js';
import type { PrometheusClient, TimeRange } from './prometheus.js';
import { isLimit } from './verdict.js';

/** Metric names per /api/v1/series call. */
const NAMES_PER_PAGE = 50;

export type Effect = 'dropped' | 'rewritten' | 'over limit' | 'reported';

/** Series counts per (policy, rule, metric, effect, mode). */
export interface EffectRow {
  readonly policy: string;
  readonly rule: string;
  readonly metric: string;
  readonly effect: Effect;
  readonly mode: 'enforce' | 'dryRun';
  series: number;
}

export interface MetricState {
  /** Series of the metric that were listed. */
  listed: number;
  /** Label names seen on the metric's series. */
  readonly labelNames: Set<string>;
  /** Series an enforcing drop rule (not a limit) drops: what retro deletes. */
  readonly dropped: Label[][];
  /** The policies and rules that drop them. */
  readonly droppedBy: Set<string>;
}

export interface StoredReport {
  readonly range: TimeRange;
  readonly headSeries: number | undefined;
  readonly metricNames: number;
  /** Metric names whose series were listed (all unless the series bound was reached). */
  metricsListed: number;
  seriesListed: number;
  /** True when --max-series stopped the listing: the counts are a lower bound. */
  truncated: boolean;
  readonly rows: Map<string, EffectRow>;
  readonly metrics: Map<string, MetricState>;
}

export async function evaluateStored(opts: {
  readonly client: PrometheusClient;
  readonly pipeline: Pipeline;
  readonly range: TimeRange;
  readonly maxSeries: number;
  readonly tenant?: string | undefined;
  /** Called after each page, for progress. */
  readonly progress?: (listed: number) => void;
}): Promise<StoredReport> {
  const { client, pipeline, range } = opts;
  const names = (await client.metricNames(range)).sort();
  const report: StoredReport = {
    range,
    headSeries: await client.headSeries(),
    metricNames: names.length,
    metricsListed: 0,
    seriesListed: 0,
    truncated: false,
    rows: new Map(),
    metrics: new Map(),
  };
  for (let i = 0; i < names.length; i += NAMES_PER_PAGE) {
    const budget = opts.maxSeries - report.seriesListed;
    if (budget <= 0) {
      report.truncated = true;
      break;
    }
    const page = names.slice(i, i + NAMES_PER_PAGE);
    // Metric names are [a-zA-Z_:][a-zA-Z0-9_:]*: nothing in them is special in a regex.
    const selector = `{__name__=~"${page.join('|')}"}`;
    const series = await client.series([selector], range, budget + 1);
    if (series.length > budget) {
      report.truncated = true;
      series.length = budget;
    }
    record(report, pipeline, series, opts.tenant);
    report.metricsListed += report.truncated ? new Set(series.map(metricOf)).size : page.length;
    opts.progress?.(report.seriesListed);
    if (report.truncated) break;
  }
  return report;
}

function metricOf(labels: readonly Label[]): string {
  return labels.find((l) => l.name === '__name__')?.value ?? '';
}

function record(
  report: StoredReport,
  pipeline: Pipeline,
  series: Label[][],
  tenant: string | undefined,
): void {
  report.seriesListed += series.length;
  const results = simulate(pipeline, series, {
    tenant,
    steps: false,
    maxTrackedSeries: Math.max(1024, series.length * 2),
  });
  for (const r of results) {
    const metric = metricOf(r.input);
    let m = report.metrics.get(metric);
    if (m === undefined) {
      m = { listed: 0, labelNames: new Set(), dropped: [], droppedBy: new Set() };
      report.metrics.set(metric, m);
    }
    m.listed++;
    for (const l of r.input) m.labelNames.add(l.name);
    for (const h of r.hits) {
      const effect: Effect = isLimit(h)
        ? 'over limit'
        : h.action === 'dropped'
          ? 'dropped'
          : h.action === 'rewritten'
            ? 'rewritten'
            : 'reported';
      const key = `${h.policy}\0${h.rule}\0${metric}\0${effect}\0${h.mode}`;
      const row = report.rows.get(key);
      if (row === undefined) {
        report.rows.set(key, { policy: h.policy, rule: h.rule, metric, effect, mode: h.mode, series: 1 });
      } else row.series++;
    }
    const dropper =
      r.outcome === 'dropped'
        ? r.hits.find((h) => h.mode === 'enforce' && h.action === 'dropped')
        : undefined;
    if (dropper !== undefined && !isLimit(dropper)) {
      m.dropped.push([...r.input]);
      m.droppedBy.add(`${dropper.policy} ${dropper.rule}`);
    }
  }
}
