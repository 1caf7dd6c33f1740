// The read path's and the usage recorder's own metrics. Labels have small fixed sets (endpoints,
// status codes, outcomes); per-metric numbers are exposed for the top N read metrics only
// (--stats.expose-top), so /metrics can never grow with what is read.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { UsageRecorder } from './recorder.js';

export interface QueryMetrics {
  request(endpoint: string, status: number): void;
  upstreamSeconds(endpoint: string, seconds: number): void;
  expressions(parsed: number, unparsed: number, unnamed: number): void;
  queryLogLine(outcome: 'rule' | 'other' | 'invalid' | 'too_long'): void;
  stateSave(ok: boolean): void;
}

/** What the usage gauges show: one process's recorder, or with --workers N the primary's merge. */
export interface UsageGauges {
  readonly trackedMetrics: number;
  readonly trackedReaders: number;
  readonly untrackedReads: number;
  /** The most read metrics over 24 hours, as many as asked for. */
  readonly top: readonly { readonly metric: string; readonly reads24h: number }[];
}

/** The gauges' values, with the top `n` read metrics (none for n = 0). */
export type UsageGaugeSource = (n: number) => UsageGauges | Promise<UsageGauges>;

/** The `n` metrics with the most reads over 24 hours, unread ones left out. Pure. */
export function topReads24h(
  rows: readonly { readonly metric: string; readonly reads24h: number }[],
  n: number,
): { metric: string; reads24h: number }[] {
  return rows
    .filter((r) => r.reads24h > 0)
    .map((r) => ({ metric: r.metric, reads24h: r.reads24h }))
    .sort((a, b) => b.reads24h - a.reads24h || (a.metric < b.metric ? -1 : 1))
    .slice(0, n);
}

/** One process's gauges, from its recorder. */
export function recorderGauges(
  recorder: () => UsageRecorder,
  now: () => number = Date.now,
): UsageGaugeSource {
  return (n) => {
    const r = recorder();
    return {
      trackedMetrics: r.trackedMetrics,
      trackedReaders: r.trackedReaders,
      untrackedReads: r.untracked,
      top: n === 0 ? [] : topReads24h(r.rows(now(), 0), n),
    };
  };
}

/**
 * The read path's counters, and the usage gauges from `gauges`; without it (a worker of
 * --workers N, whose primary registers them from the merge) no gauges.
 */
export function createQueryMetrics(
  registry: Registry,
  gauges: UsageGaugeSource | undefined,
  exposeTop: number,
): QueryMetrics {
  const requests = new Counter({
    name: 'cardinal_proxy_query_requests_total',
    help: 'Read-path requests answered, by endpoint and HTTP status (499: the client went away first).',
    labelNames: ['endpoint', 'code'],
    registers: [registry],
  });
  const upstream = new Histogram({
    name: 'cardinal_proxy_query_upstream_seconds',
    help: 'Time from a read request to the query API answer headers, by endpoint.',
    labelNames: ['endpoint'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const expressions = new Counter({
    name: 'cardinal_proxy_usage_expressions_total',
    help: 'PromQL expressions and selectors of read requests, by whether they parsed (unparsed ones are passed through).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const unnamed = new Counter({
    name: 'cardinal_proxy_usage_unnamed_selectors_total',
    help: 'Selectors that constrain no metric name ({job="x"}); not counted as reads of any metric.',
    registers: [registry],
  });
  const lines = new Counter({
    name: 'cardinal_proxy_usage_query_log_lines_total',
    help: 'Lines of the query log (--query.log-file): rule evaluations, other queries (not counted), invalid or too long lines.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const saves = new Counter({
    name: 'cardinal_proxy_usage_state_saves_total',
    help: 'Writes of the usage state file, by outcome.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  if (gauges !== undefined) registerUsageGauges(registry, exposeTop, gauges);
  return {
    request: (endpoint, status) => requests.labels(endpoint, String(status)).inc(),
    upstreamSeconds: (endpoint, seconds) => upstream.labels(endpoint).observe(seconds),
    expressions: (p, u, n) => {
      if (p > 0) expressions.labels('parsed').inc(p);
      if (u > 0) expressions.labels('unparsed').inc(u);
      if (n > 0) unnamed.inc(n);
    },
    queryLogLine: (outcome) => lines.labels(outcome).inc(),
    stateSave: (ok) => saves.labels(ok ? 'ok' : 'failed').inc(),
  };
}

/**
 * The usage gauges, filled at scrape time from `source`: summed over workers they would
 * overcount (a metric every worker tracks) and sum each worker's own top list, so with
 * --workers N only the primary registers them, from the merged usage report.
 */
export function registerUsageGauges(registry: Registry, exposeTop: number, source: UsageGaugeSource): void {
  new Gauge({
    name: 'cardinal_proxy_usage_tracked_metrics',
    help: 'Metric names whose reads are tracked (at most --query.usage.max-metrics).',
    registers: [registry],
    async collect() {
      this.set((await source(0)).trackedMetrics);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_tracked_readers',
    help: 'Distinct readers tracked (at most --query.usage.max-readers; later ones count as other).',
    registers: [registry],
    async collect() {
      this.set((await source(0)).trackedReaders);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_untracked_reads',
    help: 'Reads of metrics not tracked because the tracked metrics were at their maximum, since start.',
    registers: [registry],
    async collect() {
      this.set((await source(0)).untrackedReads);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_top_metric_reads_24h',
    help: 'Read requests over the last 24 hours of the most read metrics, the top N only (--stats.expose-top).',
    labelNames: ['metric'],
    registers: [registry],
    async collect() {
      const { top } = await source(exposeTop);
      this.reset();
      for (const r of top) this.labels(r.metric).set(r.reads24h);
    },
  });
}
