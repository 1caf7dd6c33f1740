// The unused stage (spec.unused): a metric that no PrometheusRule, Grafana dashboard or listed
// expression reads is reported, or dropped. What is read comes from the MetricUsage documents of
// the configuration (the operator renders them; see operator/usage/) and the policy's own lists.
// The verdict depends on the metric name only, and on the clock through exemptions, so it is part
// of the cached stateless verdict; the engine drops its cache when an exemption expires.

import { MetricPolicySpec, type MetricUseT, type UnusedT } from '../../../crds/metric-policy.js';
import { extract } from '../../../policy/promql.js';
import { type AnchoredRegex, compileAnchored } from '../../../policy/regex.js';
import { parseDuration } from '../../../policy/validate.js';
import type { LabelStage } from '../stage.js';
import { metricName } from './labels.js';

/**
 * The labels the readings of a metric depend on: `labels` when not `all`, every label but
 * `except` when `all`. The same meaning as policy/promql.ts Need, in plain sets.
 */
export interface LabelNeed {
  readonly all: boolean;
  readonly labels: ReadonlySet<string>;
  readonly except: ReadonlySet<string>;
}

const EVERY_LABEL: LabelNeed = Object.freeze({
  all: true,
  labels: new Set<string>(),
  except: new Set<string>(),
});

/** What is read, compiled: exact names, and one alternation of every name pattern. */
export interface UsedSet {
  readonly names: ReadonlySet<string>;
  readonly patterns: AnchoredRegex | undefined;
  /** The pattern sources, for reports. */
  readonly patternSources: readonly string[];
  /** Label needs by exact name. */
  readonly needs: ReadonlyMap<string, LabelNeed>;
  /** Label needs by pattern, each pattern on its own (only run on a verdict-cache miss). */
  readonly patternNeeds: readonly { readonly re: AnchoredRegex; readonly need: LabelNeed }[];
}

export interface CompiledUnused {
  /** action drop: unused series are dropped (unless the policy is in dryRun). */
  readonly drop: boolean;
  readonly used: UsedSet;
  readonly keep: readonly AnchoredRegex[];
  readonly exemptions: readonly { readonly re: AnchoredRegex; readonly expiresAtMs: number }[];
  /** Counter slot: metric_unused, reported or dropped. */
  readonly slot: number;
  /** spec.unused.labels: labels of read metrics that nothing depends on. */
  readonly labels: 'report' | 'aggregate' | undefined;
  readonly keepLabels: ReadonlySet<string>;
  /** Counter slot: label_unused, reported or rewritten. */
  readonly labelSlot: number;
  /** spec.unused.readWindow, with the reads known; undefined when reads are not considered. */
  readonly reads: { readonly windowMs: number; readonly known: ReadsKnown | undefined } | undefined;
  /** spec.unused.countReferences: whether what rules and dashboards reference counts as used. */
  readonly countReferences: boolean;
}

/** What the read paths saw read: last read per metric name, recorded since `sinceMs`. */
export interface ReadsKnown {
  readonly sinceMs: number;
  readonly lastRead: ReadonlyMap<string, number>;
}

/** The value an unread label gets with spec.unused.labels aggregate. */
export const AGGREGATED_VALUE = '__cardinal_aggregated__';

function needOf(m: MetricUseT): LabelNeed {
  if (m.labels !== undefined) return { all: false, labels: new Set(m.labels), except: new Set() };
  if (m.allLabelsExcept !== undefined)
    return { all: true, labels: new Set(), except: new Set(m.allLabelsExcept) };
  return EVERY_LABEL;
}

function unionNeed(a: LabelNeed | undefined, b: LabelNeed): LabelNeed {
  if (a === undefined) return b;
  if (!a.all && !b.all) return { all: false, labels: new Set([...a.labels, ...b.labels]), except: new Set() };
  if (a.all && b.all)
    return { all: true, labels: new Set(), except: new Set([...a.except].filter((l) => b.except.has(l))) };
  const [all, some] = a.all ? [a, b] : [b, a];
  return {
    all: true,
    labels: new Set(),
    except: new Set([...all.except].filter((l) => !some.labels.has(l))),
  };
}

/** Compiles the used set from MetricUsage entries plus extra names and expressions. */
export function compileUsed(
  metrics: readonly MetricUseT[],
  extraNames: readonly string[] = [],
  expressions: readonly string[] = [],
): UsedSet {
  const names = new Set<string>(extraNames);
  const needs = new Map<string, LabelNeed>();
  const patterns = new Map<string, LabelNeed>();
  // A name listed without an expression: nothing says which labels matter, so all of them do.
  for (const n of extraNames) needs.set(n, EVERY_LABEL);
  const addName = (name: string, need: LabelNeed) => {
    names.add(name);
    needs.set(name, unionNeed(needs.get(name), need));
  };
  const addPattern = (pattern: string, need: LabelNeed) => {
    patterns.set(pattern, unionNeed(patterns.get(pattern), need));
  };
  for (const m of metrics) {
    if (m.name !== undefined) addName(m.name, needOf(m));
    else if (m.pattern !== undefined) addPattern(m.pattern, needOf(m));
  }
  for (const e of expressions) {
    for (const ref of extract(e).metrics) {
      const need: LabelNeed = ref.need.all
        ? { all: true, labels: new Set(), except: new Set(ref.need.except) }
        : { all: false, labels: new Set(ref.need.labels), except: new Set() };
      if (ref.name !== undefined) addName(ref.name, need);
      else if (ref.pattern !== undefined) addPattern(ref.pattern, need);
    }
  }
  const sources = [...patterns.keys()].sort();
  return {
    names,
    // One RE2 program for every pattern: a cache miss costs one match, however many there are.
    patterns: sources.length === 0 ? undefined : compileAnchored(sources.map((p) => `(?:${p})`).join('|')),
    patternSources: sources,
    needs,
    patternNeeds: sources.map((p) => ({ re: compileAnchored(p), need: patterns.get(p)! })),
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
  if (name === '') return false;
  const reads = u.reads;
  if (reads !== undefined && reads.known !== undefined) {
    const last = reads.known.lastRead.get(name);
    if (last !== undefined && nowMs < last + reads.windowMs) return false;
  }
  // References count unless told otherwise, and until reads cover a whole window: "not read in
  // the last D" is only known once reads were recorded for D.
  const references =
    u.countReferences || reads?.known === undefined || nowMs < reads.known.sinceMs + reads.windowMs;
  if (references && isUsed(u.used, name)) return false;
  for (const k of u.keep) if (k.matches(name)) return false;
  for (const e of u.exemptions) if (nowMs < e.expiresAtMs && e.re.matches(name)) return false;
  return true;
}

/** What the readings of metric `name` depend on, over every exact and pattern entry that reads it. */
export function labelNeed(used: UsedSet, name: string): LabelNeed | undefined {
  let need = used.needs.get(name);
  if (used.patterns?.matches(name)) {
    for (const p of used.patternNeeds) if (p.re.matches(name)) need = unionNeed(need, p.need);
  }
  return need;
}

/**
 * The labels of a read metric's series that no reading depends on, in the series' order; empty
 * when the metric is not read (the metric-level stage judges it) or every label matters.
 */
export function unusedLabels(u: CompiledUnused, name: string, labels: readonly { name: string }[]): string[] {
  const need = labelNeed(u.used, name);
  if (need === undefined) return [];
  const out: string[] = [];
  for (const l of labels) {
    if (l.name === '__name__' || u.keepLabels.has(l.name)) continue;
    if (need.all ? need.except.has(l.name) : !need.labels.has(l.name)) out.push(l.name);
  }
  return out;
}

/** The first exemption expiry after `nowMs` over all policies, or Infinity: when verdicts go stale. */
export function nextExpiry(unused: readonly (CompiledUnused | undefined)[], nowMs: number): number {
  let next = Number.POSITIVE_INFINITY;
  const at = (ms: number) => {
    if (ms > nowMs && ms < next) next = ms;
  };
  for (const u of unused) {
    for (const e of u?.exemptions ?? []) at(e.expiresAtMs);
    // A read protects its metric for the window; and references stop counting once reads cover it.
    const reads = u?.reads;
    if (reads?.known === undefined) continue;
    at(reads.known.sinceMs + reads.windowMs);
    for (const last of reads.known.lastRead.values()) at(last + reads.windowMs);
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
  usage: {
    readonly documents: number;
    readonly metrics: readonly MetricUseT[];
    readonly reads?: ReadsKnown | undefined;
  },
  slot: number,
  at: (field: string, fn: () => unknown) => unknown,
  labelSlot = -1,
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
    labels: spec.labels,
    keepLabels: new Set(spec.keepLabels ?? []),
    labelSlot,
    reads:
      spec.readWindow === undefined
        ? undefined
        : {
            windowMs: at('unused.readWindow', () => parseDuration(spec.readWindow!)) as number,
            known: usage.reads,
          },
    countReferences: spec.countReferences ?? true,
  };
}

export const unusedStage: LabelStage<UnusedT | undefined, CompiledUnused> = {
  kind: 'label',
  name: 'unused',
  schema: MetricPolicySpec.properties.unused,
  reasons: ['metric_unused', 'label_unused'],
  compile(spec, ctx) {
    if (spec === undefined) return undefined;
    // The counters exist once spec.unused is set, usage known or not.
    const slot = ctx.slot('unused', 'metric_unused', spec.action === 'drop' ? 'dropped' : 'reported');
    const labelSlot =
      spec.labels === undefined
        ? -1
        : ctx.slot('unused.labels', 'label_unused', spec.labels === 'aggregate' ? 'rewritten' : 'reported');
    return compileUnused(spec, ctx.usage, slot, (field, fn) => ctx.at(field, fn), labelSlot);
  },
  apply(u, step) {
    const labels = step.labels;
    const name = metricName(labels);
    if (isUnused(u, name, step.nowMs)) {
      step.unused();
      if (u.drop) step.drop(u.slot);
      else step.count(u.slot);
      return;
    }
    if (u.labels === undefined) return;
    const names = unusedLabels(u, name, labels);
    if (names.length === 0) return;
    step.count(u.labelSlot);
    for (const l of labels) if (names.includes(l.name)) step.unread(l.name, l.value);
    if (u.labels === 'aggregate')
      step.aggregate(
        labels.map((l) => (names.includes(l.name) ? { name: l.name, value: AGGREGATED_VALUE } : l)),
      );
  },
  expires(u, nowMs) {
    return nextExpiry([u], nowMs);
  },
};
