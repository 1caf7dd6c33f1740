// The unused stage (spec.unused): a metric that no PrometheusRule, Grafana dashboard or listed
// expression reads is reported, or dropped. What is read comes from the MetricUsage documents of
// the configuration (the operator renders them; see operator/usage/) and the policy's own lists.
// The verdict depends on the metric name only, and on the clock through exemptions, so it is part
// of the cached stateless verdict; the engine drops its cache when an exemption expires.

import type { MetricUseT, UnusedT } from '../../crds/metric-policy.js';
import { extract } from '../../operator/usage/promql.js';
import { type AnchoredRegex, compileAnchored } from './regex.js';

/** What is read, compiled: exact names, and one alternation of every name pattern. */
export interface UsedSet {
  readonly names: ReadonlySet<string>;
  readonly patterns: AnchoredRegex | undefined;
  /** The pattern sources, for reports. */
  readonly patternSources: readonly string[];
}

export interface CompiledUnused {
  /** action drop: unused series are dropped (unless the policy is in dryRun). */
  readonly drop: boolean;
  readonly used: UsedSet;
  readonly keep: readonly AnchoredRegex[];
  readonly exemptions: readonly { readonly re: AnchoredRegex; readonly expiresAtMs: number }[];
  /** Counter slot: metric_unused, reported or dropped. */
  readonly slot: number;
}

/** Compiles the used set from MetricUsage entries plus extra names and expressions. */
export function compileUsed(
  metrics: readonly MetricUseT[],
  extraNames: readonly string[] = [],
  expressions: readonly string[] = [],
): UsedSet {
  const names = new Set<string>(extraNames);
  const patterns = new Set<string>();
  for (const m of metrics) {
    if (m.name !== undefined) names.add(m.name);
    else if (m.pattern !== undefined) patterns.add(m.pattern);
  }
  for (const e of expressions) {
    for (const ref of extract(e).metrics) {
      if (ref.name !== undefined) names.add(ref.name);
      else if (ref.pattern !== undefined) patterns.add(ref.pattern);
    }
  }
  const sources = [...patterns].sort();
  return {
    names,
    // One RE2 program for every pattern: a cache miss costs one match, however many there are.
    patterns: sources.length === 0 ? undefined : compileAnchored(sources.map((p) => `(?:${p})`).join('|')),
    patternSources: sources,
  };
}

export function isUsed(used: UsedSet, name: string): boolean {
  return used.names.has(name) || (used.patterns?.matches(name) ?? false);
}

/**
 * Whether the unused stage judges `name` unused at `nowMs`: nothing reads it, no keep pattern
 * matches it and no live exemption protects it. A series without a name is never judged.
 */
export function isUnused(u: CompiledUnused, name: string, nowMs: number): boolean {
  if (name === '' || isUsed(u.used, name)) return false;
  for (const k of u.keep) if (k.matches(name)) return false;
  for (const e of u.exemptions) if (nowMs < e.expiresAtMs && e.re.matches(name)) return false;
  return true;
}

/** The first exemption expiry after `nowMs` over all policies, or Infinity: when verdicts go stale. */
export function nextExpiry(unused: readonly (CompiledUnused | undefined)[], nowMs: number): number {
  let next = Number.POSITIVE_INFINITY;
  for (const u of unused) {
    for (const e of u?.exemptions ?? [])
      if (e.expiresAtMs > nowMs && e.expiresAtMs < next) next = e.expiresAtMs;
  }
  return next;
}

/**
 * Compiles a policy's spec.unused, or undefined when there is nothing to judge by: no MetricUsage
 * document is loaded and the policy lists no metrics or expressions of its own. Without any usage
 * known every metric would look unused, and a drop policy would drop everything.
 */
export function compileUnused(
  spec: UnusedT,
  usage: { readonly documents: number; readonly metrics: readonly MetricUseT[] },
  slot: number,
  at: (field: string, fn: () => unknown) => unknown,
): CompiledUnused | undefined {
  const own = (spec.metrics?.length ?? 0) + (spec.expressions?.length ?? 0);
  if (usage.documents === 0 && own === 0) return undefined;
  return {
    drop: spec.action === 'drop',
    used: at('unused', () => compileUsed(usage.metrics, spec.metrics, spec.expressions)) as UsedSet,
    keep: (spec.keep ?? []).map((p, i) => at(`unused.keep[${i}]`, () => compileAnchored(p)) as AnchoredRegex),
    exemptions: (spec.exemptions ?? []).map((e, i) => ({
      re: at(`unused.exemptions[${i}].metric`, () => compileAnchored(e.metric)) as AnchoredRegex,
      expiresAtMs: Date.parse(e.expiresAt),
    })),
    slot,
  };
}
