// What the proxy reports about policies and the operator reads into MetricPolicy status: the
// plain JSON of the proxy's statistics API (GET /api/v1/stats/top-offenders), the contract
// between the two programs. The proxy produces it (proxy/stats/top-offenders.ts); the operator
// parses it (operator/status/offenders.ts).

export interface TopMetric {
  metric: string;
  activeSeries: number;
}
export interface TopLabel {
  metric: string;
  label: string;
  distinctValues: number;
}
export interface TopDrop {
  metric: string;
  policy: string;
  reason: string;
  samples: number;
}
/** The plain JSON the top-offenders endpoint answers with; every list sorted by its count, largest first. */
export interface TopOffendersReport {
  metrics: TopMetric[];
  labels: TopLabel[];
  drops: TopDrop[];
}
