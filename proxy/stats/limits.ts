// How full each policy's limits are: for every policy with limits, its limits in use with the
// series (or label values, or tenant series) they hold and what they allow, the fullest first.
// Served at GET /api/v1/stats/limits for the operator, which puts them into the MetricPolicy status
// (`kubectl get mp`: Limits % and Limits), so a team sees a limit filling up before it drops anything.
//
// Read on demand from the limit stage's trackers (proxy/pipeline/engine.ts), off the hot path: one
// pass over the metric names in use per policy with limits, with each name's rule looked up once.
//
// With a shared limit store (README "Limits across replicas") a replica's trackers hold only the
// series that flowed through it, so the counts are the store's: the scopes in use here, the fullest
// first and at most MAX_COUNTED of them, counted over all replicas in one round trip. Every replica
// then tells the same global number, and the operator takes it as it is (not the sum over the
// replicas). Without a store, or while it does not answer, each count is this replica's own, as
// each replica then enforces its own limits; `global` says which.

import type { PolicyEngine } from '../pipeline/engine.js';
import { limitScope, SCOPE_LABEL, SCOPE_SERIES, SCOPE_TENANT } from '../pipeline/stages/limits/runtime.js';

/** One limit of a policy in one scope: a metric's series, a metric's label values, a tenant's series. */
export interface LimitUse {
  /** `perMetric[i]`, `perLabel[i]` or `perTenantMaxSeries`, as written in the policy's spec. */
  limit: string;
  /** The metric the count is of (perMetric, perLabel). */
  metric?: string;
  /** The label whose values are counted (perLabel). */
  label?: string;
  /** The tenant whose series are counted (perTenantMaxSeries); '' for requests without one. */
  tenant?: string;
  /** Series (or label values) active in the policy's window. */
  current: number;
  /** What the limit allows: maxSeries, maxValues or perTenantMaxSeries. */
  max: number;
}

export interface PolicyLimitFill {
  /** `namespace/name`, as counters name policies. */
  policy: string;
  /** The fullest limit, in % of what it allows (100 or more: it is dropping or overflowing). */
  fillPercent: number;
  /** Which limit that is: `perMetric[i] <metric>`, `perLabel[i] <metric>` or `perTenantMaxSeries`. */
  limit: string;
  /** True when the counts are over all replicas (the shared store's), false when this replica's own. */
  global: boolean;
  /** The policy's limits in use, the fullest first, at most LIMITS_PER_POLICY. */
  limits: LimitUse[];
}

/** The plain JSON of GET /api/v1/stats/limits; policies without limits are not listed. */
export interface LimitsReport {
  policies: PolicyLimitFill[];
}

/** Limits listed per policy. */
export const LIMITS_PER_POLICY = 10;
/** Scopes counted in the store per report, over all policies: a bound on one report's cost. */
export const MAX_COUNTED = 1000;

interface Candidate {
  readonly policy: number;
  readonly use: LimitUse;
  readonly scope: { readonly tag: string; readonly sub: string; readonly windowSeconds: number };
  global: boolean;
}

/** This replica's counts, with each limit's store scope. */
function localCandidates(engine: PolicyEngine): Candidate[][] {
  const states = engine.limitStates();
  const names = engine.interner;
  const out: Candidate[][] = [];
  for (const p of engine.pipeline.policies) {
    const l = p.limits;
    const state = states[p.index];
    const mine: Candidate[] = [];
    out.push(mine);
    if (l === undefined || state === undefined) continue;
    const add = (use: LimitUse, kind: number, j: number, name: string) =>
      mine.push({
        policy: p.index,
        use,
        scope: { ...limitScope(state.tag, kind, j, name), windowSeconds: state.windowSeconds },
        global: false,
      });
    for (let m = 0; m < names.size; m++) {
      const series = state.series.count(m);
      const labelled = l.perLabel.some((_, j) => state.labels[j]!.count(m) > 0);
      if (series === 0 && !labelled) continue;
      const name = names.name(m);
      if (series > 0) {
        const i = l.perMetric.findIndex((r) => r.metric.matches(name));
        const rule = l.perMetric[i];
        if (rule !== undefined)
          add(
            { limit: `perMetric[${i}]`, metric: name, current: series, max: rule.maxSeries },
            SCOPE_SERIES,
            0,
            name,
          );
      }
      for (const [j, rule] of l.perLabel.entries()) {
        const values = state.labels[j]!.count(m);
        if (values > 0 && (rule.metric === undefined || rule.metric.matches(name)))
          add(
            {
              limit: `perLabel[${j}]`,
              metric: name,
              label: rule.label,
              current: values,
              max: rule.maxValues,
            },
            SCOPE_LABEL,
            j,
            name,
          );
      }
    }
    if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
      for (let t = 0; t < state.tenants.buckets; t++) {
        const series = state.tenants.count(t);
        if (series === 0) continue;
        const tenant = engine.tenantName(t);
        add(
          { limit: 'perTenantMaxSeries', tenant, current: series, max: l.perTenantMaxSeries },
          SCOPE_TENANT,
          0,
          tenant,
        );
      }
    }
  }
  return out;
}

const fill = (u: LimitUse) => u.current / u.max;

/**
 * The report. With a store that answers, the counts are global (one round trip); otherwise, and
 * for the scopes beyond MAX_COUNTED, this replica's own. Each policy lists at most `perPolicy`
 * limits in use (the pages ask for all of them).
 */
export async function limitsReport(
  engine: PolicyEngine,
  nowMs = Date.now(),
  perPolicy = LIMITS_PER_POLICY,
): Promise<LimitsReport> {
  const byPolicy = localCandidates(engine);
  const store = engine.sharedStore;
  if (store?.available === true) {
    const asked = byPolicy
      .flat()
      .sort((a, b) => fill(b.use) - fill(a.use))
      .slice(0, MAX_COUNTED);
    const counts =
      asked.length === 0
        ? undefined
        : await store.counts(
            asked.map((c) => c.scope),
            nowMs,
          );
    if (counts !== undefined) {
      for (const [k, c] of asked.entries()) {
        c.use.current = counts[k]!;
        c.global = true;
      }
    }
  }
  return reportOf(engine, byPolicy, perPolicy);
}

function reportOf(engine: PolicyEngine, byPolicy: readonly Candidate[][], perPolicy: number): LimitsReport {
  const out: PolicyLimitFill[] = [];
  for (const p of engine.pipeline.policies) {
    if (p.limits === undefined || engine.limitStates()[p.index] === undefined) continue;
    const mine = [...(byPolicy[p.index] ?? [])].sort((a, b) => byFill(a.use, b.use));
    out.push(
      policyFill(
        p.id,
        mine.map((c) => c.use),
        mine.length > 0 && mine.every((c) => c.global),
        perPolicy,
      ),
    );
  }
  return { policies: out };
}

/** A policy's entry of the report from its limits in use, sorted the fullest first. Pure. */
export function policyFill(
  policy: string,
  sorted: readonly LimitUse[],
  global: boolean,
  perPolicy: number,
): PolicyLimitFill {
  const top = sorted[0];
  return {
    policy,
    fillPercent: top === undefined ? 0 : Math.floor(fill(top) * 100),
    limit: top === undefined ? '' : legacyName(top),
    global,
    limits: sorted.slice(0, perPolicy),
  };
}

/** The fullest first; among equals by the limit's name. */
export function byFill(a: LimitUse, b: LimitUse): number {
  return fill(b) - fill(a) || a.limit.localeCompare(b.limit);
}

/** The one-line name of a limit this report had before it listed them all. */
function legacyName(u: LimitUse): string {
  return u.metric === undefined ? u.limit : `${u.limit} ${u.metric}`;
}
