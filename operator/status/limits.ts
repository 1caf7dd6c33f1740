// How full each policy's limits are, from the proxies' GET /api/v1/stats/limits
// (proxy/stats/limits.ts), into the MetricPolicy status: `limits` (current / max per limit in use),
// `limitsFillPercent` and `limitsSummary` (the Limits % and Limits printer columns). Pure.
//
// Across proxies. With a shared limit store every proxy reports the store's count of a scope, the
// same global number: it is taken as it is, never summed (summing would count a series once per
// proxy it flowed through). Without a store each proxy enforces its own limits, so a limit is as
// full as on its fullest proxy. Either way the merge of one scope is the largest count reported,
// and a global count wins over a proxy's own.

import { LIMITS_STATUS_LIMIT } from '../../crds/metric-policy.js';
import type { MetricPolicyStatus } from '../api/types.js';

type LimitUseStatus = NonNullable<MetricPolicyStatus['limits']>[number];

/** One limit in one scope, as a proxy reports it. */
export interface LimitUse {
  readonly limit: string;
  readonly metric?: string;
  readonly label?: string;
  readonly tenant?: string;
  readonly current: number;
  readonly max: number;
  /** Counted over all proxies by the shared store. */
  readonly global: boolean;
}

/** One policy's limits, as one proxy (or the merge of all) reports them. */
export interface PolicyLimits {
  /** The fullest limit in %. */
  readonly fillPercent: number;
  /** Fullest first; empty from a proxy that reports only fillPercent (an older version). */
  readonly limits: readonly LimitUse[];
}

/**
 * Checks GET /api/v1/stats/limits and keeps each policy's limits. Throws a TypeError naming the
 * first field that is wrong.
 */
export function parseLimitsReport(json: unknown): Map<string, PolicyLimits> {
  const policies = (json as { policies?: unknown } | null)?.policies;
  if (!Array.isArray(policies)) throw new TypeError('policies: must be a list');
  const out = new Map<string, PolicyLimits>();
  const count = (v: unknown, what: string, min: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw new TypeError(`${what}: must be an integer of at least ${min}`);
    return v;
  };
  const text = (v: unknown, what: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new TypeError(`${what}: must be a string`);
    return v;
  };
  policies.forEach((raw, i) => {
    const p = (raw ?? {}) as Record<string, unknown>;
    if (typeof p.policy !== 'string') throw new TypeError(`policies[${i}].policy: must be a string`);
    const fillPercent = count(p.fillPercent, `policies[${i}].fillPercent`, 0);
    const global = p.global === true;
    const list = p.limits === undefined ? [] : p.limits;
    if (!Array.isArray(list)) throw new TypeError(`policies[${i}].limits: must be a list`);
    const limits = list.map((l: unknown, j: number): LimitUse => {
      const u = (l ?? {}) as Record<string, unknown>;
      const at = `policies[${i}].limits[${j}]`;
      const limit = text(u.limit, `${at}.limit`);
      if (limit === undefined) throw new TypeError(`${at}.limit: must be a string`);
      const metric = text(u.metric, `${at}.metric`);
      const label = text(u.label, `${at}.label`);
      const tenant = text(u.tenant, `${at}.tenant`);
      return {
        limit,
        ...(metric === undefined ? {} : { metric }),
        ...(label === undefined ? {} : { label }),
        ...(tenant === undefined ? {} : { tenant }),
        current: count(u.current, `${at}.current`, 0),
        max: count(u.max, `${at}.max`, 1),
        global,
      };
    });
    out.set(p.policy, { fillPercent, limits });
  });
  return out;
}

const scopeKey = (u: LimitUse) => `${u.limit}\0${u.metric ?? ''}\0${u.label ?? ''}\0${u.tenant ?? ''}`;
const fill = (u: LimitUse) => u.current / u.max;

/** The limits of every policy over the proxies that reported them (see the top of the file). */
export function mergeLimits(
  reports: readonly (ReadonlyMap<string, PolicyLimits> | undefined)[],
): Map<string, PolicyLimits> {
  const byPolicy = new Map<string, { legacy: number; scopes: Map<string, LimitUse> }>();
  for (const report of reports) {
    for (const [id, p] of report ?? []) {
      let merged = byPolicy.get(id);
      if (merged === undefined) {
        merged = { legacy: 0, scopes: new Map() };
        byPolicy.set(id, merged);
      }
      if (p.limits.length === 0) merged.legacy = Math.max(merged.legacy, p.fillPercent);
      for (const u of p.limits) {
        const key = scopeKey(u);
        const had = merged.scopes.get(key);
        if (
          had === undefined ||
          (u.global && !had.global) ||
          (u.global === had.global && u.current > had.current)
        )
          merged.scopes.set(key, u);
      }
    }
  }
  const out = new Map<string, PolicyLimits>();
  for (const [id, { legacy, scopes }] of byPolicy) {
    const limits = [...scopes.values()].sort(
      (a, b) => fill(b) - fill(a) || scopeKey(a).localeCompare(scopeKey(b)),
    );
    const top = limits[0];
    out.set(id, {
      fillPercent: Math.max(legacy, top === undefined ? 0 : Math.floor(fill(top) * 100)),
      limits: limits.slice(0, LIMITS_STATUS_LIMIT),
    });
  }
  return out;
}

/** Entries the summary line names before it only counts the rest. */
const SUMMARY_ENTRIES = 3;

/** The status fields of a policy's merged limits. */
export function limitsStatus(
  p: PolicyLimits,
): Pick<MetricPolicyStatus, 'limitsFillPercent' | 'limits' | 'limitsSummary'> {
  const limits: LimitUseStatus[] = p.limits.map((u) => ({
    limit: u.limit,
    ...(u.metric === undefined ? {} : { metric: u.metric }),
    ...(u.label === undefined ? {} : { label: u.label }),
    ...(u.tenant === undefined ? {} : { tenant: u.tenant }),
    current: u.current,
    max: u.max,
    ...(u.global ? { global: true } : {}),
  }));
  const named = p.limits.slice(0, SUMMARY_ENTRIES).map((u) => `${scopeText(u)} ${u.current}/${u.max}`);
  const more = p.limits.length - named.length;
  return {
    limitsFillPercent: p.fillPercent,
    ...(limits.length === 0 ? {} : { limits }),
    ...(named.length === 0
      ? {}
      : { limitsSummary: `${named.join(', ')}${more > 0 ? ` +${more} more` : ''}` }),
  };
}

/** What a limit counts, in a few words: `http_requests_total`, `http_requests_total{path}`, `tenant a`. */
function scopeText(u: LimitUse): string {
  if (u.tenant !== undefined) return u.tenant === '' ? 'tenant (none)' : `tenant ${u.tenant}`;
  if (u.label !== undefined) return `${u.metric ?? ''}{${u.label}}`;
  return u.metric ?? u.limit;
}
