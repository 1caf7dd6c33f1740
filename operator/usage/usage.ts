// The usage set: which metrics the cluster reads, with which labels, and who reads them. Built from
// every source's expressions (rules, dashboards, a policy's own lists); pure and deterministic, so
// the rendered MetricUsage document changes only when what is read changes.

import type { MetricUsageSpecT, MetricUseT } from '../../crds/metric-policy.js';
import { ALL, extract, type MetricRef, type Need, PromQLError, union } from '../../policy/promql.js';
import type { SourceExprs } from './sources.js';

/** Sources listed per metric: enough to find who reads it, bounded so the ConfigMap stays small. */
export const MAX_SOURCES_PER_METRIC = 5;
/** Problems kept, over all sources: a broken source is worth a line, not a megabyte. */
export const MAX_PROBLEMS = 50;

export interface UsageSource {
  /** `PrometheusRule ns/name`, `Dashboard ns/configmap/key`, `MetricPolicy ns/name`. */
  readonly id: string;
  readonly exprs: SourceExprs;
}

export interface Use {
  need: Need;
  readonly sources: Set<string>;
}

export interface Usage {
  /** By exact metric name. */
  readonly names: Map<string, Use>;
  /** By anchored RE2 pattern: regex matchers on __name__, names with variables, nameless selectors. */
  readonly patterns: Map<string, Use>;
  /** `source: where: reason`, at most MAX_PROBLEMS. */
  readonly problems: string[];
  /** Problems in all, kept or not. */
  problemCount: number;
  /** Expressions parsed successfully. */
  expressions: number;
}

export function emptyUsage(): Usage {
  return { names: new Map(), patterns: new Map(), problems: [], problemCount: 0, expressions: 0 };
}

function problem(u: Usage, text: string): void {
  u.problemCount++;
  if (u.problems.length < MAX_PROBLEMS) u.problems.push(text);
}

function add(map: Map<string, Use>, key: string, need: Need, source: string): void {
  const use = map.get(key);
  if (use === undefined) map.set(key, { need, sources: new Set([source]) });
  else {
    use.need = union(use.need, need);
    use.sources.add(source);
  }
}

/** Adds what one source reads to `usage`. */
export function addSource(usage: Usage, source: UsageSource): void {
  for (const p of source.exprs.problems) problem(usage, `${source.id}: ${p}`);
  for (const e of source.exprs.exprs) {
    let refs: readonly MetricRef[];
    try {
      refs = extract(e.expr).metrics;
    } catch (err) {
      if (!(err instanceof PromQLError)) throw err;
      problem(usage, `${source.id}: ${e.where}: ${err.message}`);
      continue;
    }
    usage.expressions++;
    for (const r of refs) {
      if (r.name !== undefined) add(usage.names, r.name, r.need, source.id);
      else if (r.pattern !== undefined) add(usage.patterns, r.pattern, r.need, source.id);
    }
    // The rule writes its output series, every label of them; it is in use while the rule is.
    if (e.record !== undefined) add(usage.names, e.record, ALL, source.id);
  }
}

export function computeUsage(sources: readonly UsageSource[]): Usage {
  const usage = emptyUsage();
  for (const s of [...sources].sort((a, b) => cmp(a.id, b.id))) addSource(usage, s);
  return usage;
}

/**
 * Merges usages computed apart (one per watched object, so an object is parsed once per version);
 * the same as computeUsage over all their sources when `parts` is in source order.
 */
export function mergeUsage(parts: readonly Usage[]): Usage {
  const out = emptyUsage();
  for (const part of parts) {
    for (const [k, use] of part.names) for (const s of use.sources) add(out.names, k, use.need, s);
    for (const [k, use] of part.patterns) for (const s of use.sources) add(out.patterns, k, use.need, s);
    for (const p of part.problems) problem(out, p);
    out.problemCount += part.problemCount - part.problems.length;
    out.expressions += part.expressions;
  }
  return out;
}

/** The usage as the proxy reads it: sorted, sources bounded. */
export function usageSpec(usage: Usage): MetricUsageSpecT {
  const metrics: MetricUseT[] = [];
  const row = (key: 'name' | 'pattern', value: string, use: Use): MetricUseT => {
    const sources = [...use.sources].sort(cmp);
    const need = use.need;
    return {
      [key]: value,
      sources: sources.slice(0, MAX_SOURCES_PER_METRIC),
      ...(sources.length > MAX_SOURCES_PER_METRIC ? { sourceCount: sources.length } : {}),
      ...(need.all
        ? { allLabelsExcept: [...need.except].sort(cmp) }
        : { labels: [...need.labels].sort(cmp) }),
    };
  };
  for (const name of [...usage.names.keys()].sort(cmp))
    metrics.push(row('name', name, usage.names.get(name)!));
  for (const p of [...usage.patterns.keys()].sort(cmp))
    metrics.push(row('pattern', p, usage.patterns.get(p)!));
  return { metrics };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
