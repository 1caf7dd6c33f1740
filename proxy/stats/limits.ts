// How full each policy's limits are: for every policy with limits, the fullest of them, as the
// series (or label values, or tenant series) its tracker holds over what the limit allows. Served
// at GET /api/v1/stats/limits for the operator's Limits printer column, so a team sees a limit
// filling up before it drops anything.
//
// Read on demand from the limit stage's trackers (proxy/pipeline/engine.ts), off the hot path: one
// pass over the metric names in use per policy with limits, with each name's rule looked up once.

import type { PolicyEngine } from '../pipeline/engine.js';

export interface PolicyLimitFill {
  /** `namespace/name`, as counters name policies. */
  policy: string;
  /** The fullest limit, in % of what it allows (100 or more: it is dropping or overflowing). */
  fillPercent: number;
  /** Which limit that is: `perMetric[i] <metric>`, `perLabel[i] <metric>` or `perTenantMaxSeries`. */
  limit: string;
}

/** The plain JSON of GET /api/v1/stats/limits; policies without limits are not listed. */
export interface LimitsReport {
  policies: PolicyLimitFill[];
}

export function limitsReport(engine: PolicyEngine): LimitsReport {
  const states = engine.limitStates();
  const names = engine.interner;
  const out: PolicyLimitFill[] = [];
  for (const p of engine.pipeline.policies) {
    const l = p.limits;
    const state = states[p.index];
    if (l === undefined || state === undefined) continue;
    let best = 0;
    let which = '';
    const consider = (fill: number, limit: string) => {
      if (fill > best) {
        best = fill;
        which = limit;
      }
    };
    for (let m = 0; m < names.size; m++) {
      const series = state.series.count(m);
      const labelled = l.perLabel.some((_, j) => state.labels[j]!.count(m) > 0);
      if (series === 0 && !labelled) continue;
      const name = names.name(m);
      if (series > 0) {
        const i = l.perMetric.findIndex((r) => r.metric.matches(name));
        const rule = l.perMetric[i];
        if (rule !== undefined) consider(series / rule.maxSeries, `perMetric[${i}] ${name}`);
      }
      for (const [j, rule] of l.perLabel.entries()) {
        const values = state.labels[j]!.count(m);
        if (values > 0 && (rule.metric === undefined || rule.metric.matches(name)))
          consider(values / rule.maxValues, `perLabel[${j}] ${name}`);
      }
    }
    if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
      for (let t = 0; t < state.tenants.buckets; t++) {
        const series = state.tenants.count(t);
        if (series > 0) consider(series / l.perTenantMaxSeries, 'perTenantMaxSeries');
      }
    }
    out.push({ policy: p.id, fillPercent: Math.floor(best * 100), limit: which });
  }
  return { policies: out };
}
