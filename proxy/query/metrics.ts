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

export function createQueryMetrics(
  registry: Registry,
  recorder: () => UsageRecorder,
  topReads24h: (n: number) => { metric: string; reads24h: number }[],
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
  new Gauge({
    name: 'cardinal_proxy_usage_tracked_metrics',
    help: 'Metric names whose reads are tracked (at most --query.usage.max-metrics).',
    registers: [registry],
    collect() {
      this.set(recorder().trackedMetrics);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_tracked_readers',
    help: 'Distinct readers tracked (at most --query.usage.max-readers; later ones count as other).',
    registers: [registry],
    collect() {
      this.set(recorder().trackedReaders);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_untracked_reads',
    help: 'Reads of metrics not tracked because the tracked metrics were at their maximum, since start.',
    registers: [registry],
    collect() {
      this.set(recorder().untracked);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_usage_top_metric_reads_24h',
    help: 'Read requests over the last 24 hours of the most read metrics, the top N only (--stats.expose-top).',
    labelNames: ['metric'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of topReads24h(exposeTop)) this.labels(r.metric).set(r.reads24h);
    },
  });
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
