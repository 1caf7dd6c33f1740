// Policies -> a compiled pipeline. Compilation happens once per configuration version; what it
// produces is immutable and shared by every request until the next reload.
//
// Order (documented in README "Policies"): policies apply in ascending `priority`, then by
// namespace and name. Within a policy the stateless stages run in the order match, relabel, drop,
// unused, standards, and each policy sees the series as the enforcing policies before it left it. Limits
// are stateful and run after every policy's stateless stages, in the same policy order, on the
// series as all of them left it. A dryRun policy computes and counts its verdicts but hands the
// series on unchanged.

import type { MetricPolicySpecT, MetricUseT, StandardsT } from '../../crds/metric-policy.js';
import { parseDuration } from '../config/validate.js';
import { type AnchoredRegex, compileAnchored } from './regex.js';
import { compileRelabel, type RelabelProgram } from './relabel.js';
import { type Matcher, parseSelector } from './selector.js';
import { type CompiledUnused, compileUnused, type ReadsKnown } from './unused.js';

/** What the configuration's MetricUsage documents say is read; see proxy/config/validate.ts validateUsage. */
export interface PipelineUsage {
  /** How many MetricUsage documents were loaded; none means usage is unknown. */
  readonly documents: number;
  readonly metrics: readonly MetricUseT[];
  /** What the read paths saw read (spec.unused.readWindow); absent when no document says. */
  readonly reads?: ReadsKnown | undefined;
}

const NO_USAGE: PipelineUsage = Object.freeze({ documents: 0, metrics: Object.freeze([]) });

/** One policy as the configuration holds it. */
export interface PolicyInput {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly spec: MetricPolicySpecT;
}

/** Why a rule acted; a fixed set, so metric labels stay bounded. */
export type Reason =
  | 'relabel_dropped'
  | 'relabel_rewritten'
  | 'metric_dropped'
  | 'metric_unused'
  | 'label_unused'
  | 'metric_name'
  | 'label_name'
  | 'required_label'
  | 'forbidden_label'
  | 'max_labels'
  | 'label_name_length'
  | 'label_value_length'
  | 'series_limit'
  | 'label_values_limit'
  | 'tenant_series_limit'
  | 'collision'
  | 'out_of_order';

/** What a rule did to a series. `reported`: a violation that let the series through. */
export type Action = 'dropped' | 'rewritten' | 'reported';

/**
 * A counter slot: one (policy, rule, reason, action, mode) combination. Slots are numbered at
 * compile time so the hot path counts into a typed array and flushes once per request.
 */
export interface Slot {
  readonly policy: string;
  readonly rule: string;
  readonly reason: Reason;
  readonly action: Action;
  readonly mode: 'enforce' | 'dryRun';
}

export interface CompiledStandards {
  readonly metricName: AnchoredRegex | undefined;
  readonly labelName: AnchoredRegex | undefined;
  readonly required: readonly string[];
  readonly forbidden: ReadonlySet<string>;
  readonly maxLabels: number;
  readonly maxNameLength: number;
  readonly maxValueLength: number;
  readonly drop: boolean;
}

export interface CompiledMetricLimit {
  readonly metric: AnchoredRegex;
  readonly maxSeries: number;
  readonly overflow: boolean;
  readonly overflowLabel: string | undefined;
  readonly slot: number;
}

export interface CompiledLabelLimit {
  readonly metric: AnchoredRegex | undefined;
  readonly label: string;
  readonly maxValues: number;
  readonly overflow: boolean;
  readonly slot: number;
}

export interface CompiledLimits {
  readonly windowMs: number;
  readonly perMetric: readonly CompiledMetricLimit[];
  readonly perLabel: readonly CompiledLabelLimit[];
  readonly perTenantMaxSeries: number | undefined;
  readonly tenantSlot: number;
  /** Identifies the limits' meaning; trackers survive a reload while it is unchanged. */
  readonly key: string;
}

export interface CompiledPolicy {
  readonly index: number;
  /** `namespace/name`, or `name` without a namespace: the `policy` label of counters. */
  readonly id: string;
  readonly dryRun: boolean;
  readonly matchers: readonly Matcher[] | undefined;
  readonly tenants: ReadonlySet<string> | undefined;
  readonly relabel: RelabelProgram | undefined;
  readonly relabelDropSlot: number;
  readonly relabelRewriteSlot: number;
  /** Series this policy's relabel merged with others of their request (spec.onCollision). */
  readonly collisionSlot: number;
  readonly collisionMode: CollisionMode;
  /**
   * Samples of series synthesized for this policy (overflow, aggregates, merged collisions) left
   * out because this replica had already sent the same series at that time or later.
   */
  readonly outOfOrderSlot: number;
  readonly drop: readonly { readonly re: AnchoredRegex; readonly slot: number }[];
  readonly standards: CompiledStandards | undefined;
  /** Slot per standards reason, for this policy. */
  readonly standardsSlots: Readonly<Record<string, number>>;
  readonly limits: CompiledLimits | undefined;
  /** spec.unused, when set and some usage is known (see compileUnused). */
  readonly unused: CompiledUnused | undefined;
  /** Whether spec.unused is set, known usage or not. */
  readonly unusedConfigured: boolean;
}

export interface Pipeline {
  readonly policies: readonly CompiledPolicy[];
  readonly usage: PipelineUsage;
  readonly slots: readonly Slot[];
  /** True when there is nothing to do: requests are forwarded untouched. */
  readonly empty: boolean;
  /** Whether an enforcing policy relabels: series of one request may then become the same one. */
  readonly mayCollide: boolean;
}

/** How samples of one timestamp of merged series are combined. */
export type CollisionMode = 'sum' | 'max' | 'min' | 'last';

export const OVERFLOW_VALUE = '__cardinality_overflow__';

/** Orders policies as documented: priority, then namespace, then name. */
export function orderPolicies<T extends PolicyInput>(policies: readonly T[]): T[] {
  return [...policies].sort(
    (a, b) =>
      (a.spec.priority ?? 0) - (b.spec.priority ?? 0) ||
      cmp(a.namespace ?? '', b.namespace ?? '') ||
      cmp(a.name, b.name),
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Compiles policies. Throws an Error naming the policy and field on anything that does not
 * compile; configuration validation runs the same compilation, so a config that validated compiles.
 */
export function compilePipeline(inputs: readonly PolicyInput[], usage: PipelineUsage = NO_USAGE): Pipeline {
  const slots: Slot[] = [];
  const slot = (s: Slot): number => slots.push(s) - 1;
  const policies = orderPolicies(inputs).map((input, index): CompiledPolicy => {
    const id = input.namespace ? `${input.namespace}/${input.name}` : input.name;
    const spec = input.spec;
    const mode = spec.mode ?? 'enforce';
    const at = (field: string, fn: () => unknown) => {
      try {
        return fn();
      } catch (err) {
        throw new Error(`policy ${id}: ${field}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const mk = (rule: string, reason: Reason, action: Action) =>
      slot({ policy: id, rule, reason, action, mode });

    const matchers = spec.match?.selector
      ? (at('match.selector', () => parseSelector(spec.match!.selector!)) as ReturnType<typeof parseSelector>)
          .matchers
      : undefined;
    const relabel =
      spec.relabel && spec.relabel.length > 0
        ? (at('relabel', () => compileRelabel(spec.relabel!)) as RelabelProgram)
        : undefined;
    const drop = (spec.drop ?? []).map((pattern, i) => ({
      re: at(`drop[${i}]`, () => compileAnchored(pattern)) as AnchoredRegex,
      slot: mk(`drop[${i}]`, 'metric_dropped', 'dropped'),
    }));
    const unused =
      spec.unused === undefined
        ? undefined
        : compileUnused(
            spec.unused,
            usage,
            mk('unused', 'metric_unused', spec.unused.action === 'drop' ? 'dropped' : 'reported'),
            at,
            spec.unused.labels === undefined
              ? -1
              : mk(
                  'unused.labels',
                  'label_unused',
                  spec.unused.labels === 'aggregate' ? 'rewritten' : 'reported',
                ),
          );
    const standards = spec.standards
      ? compileStandards(spec.standards, (f, fn) => at(`standards.${f}`, fn))
      : undefined;
    const standardsSlots: Record<string, number> = {};
    if (standards) {
      const action: Action = standards.drop ? 'dropped' : 'reported';
      for (const [reason, rule] of STANDARDS_RULES)
        standardsSlots[reason] = mk(`standards.${rule}`, reason, action);
    }
    let limits: CompiledLimits | undefined;
    if (spec.limits) {
      const l = spec.limits;
      limits = {
        windowMs: at('limits.window', () => parseDuration(l.window ?? '1h')) as number,
        perMetric: (l.perMetric ?? []).map((m, i) => ({
          metric: at(`limits.perMetric[${i}].metric`, () => compileAnchored(m.metric)) as AnchoredRegex,
          maxSeries: m.maxSeries,
          overflow: m.onExceed === 'overflow',
          overflowLabel: m.overflowLabel,
          slot: mk(
            m.name ?? `limits.perMetric[${i}]`,
            'series_limit',
            m.onExceed === 'overflow' ? 'rewritten' : 'dropped',
          ),
        })),
        perLabel: (l.perLabel ?? []).map((m, i) => ({
          metric:
            m.metric === undefined
              ? undefined
              : (at(`limits.perLabel[${i}].metric`, () => compileAnchored(m.metric!)) as AnchoredRegex),
          label: m.label,
          maxValues: m.maxValues,
          overflow: m.onExceed === 'overflow',
          slot: mk(
            m.name ?? `limits.perLabel[${i}]`,
            'label_values_limit',
            m.onExceed === 'overflow' ? 'rewritten' : 'dropped',
          ),
        })),
        perTenantMaxSeries: l.perTenantMaxSeries,
        tenantSlot: mk('limits.perTenantMaxSeries', 'tenant_series_limit', 'dropped'),
        key: `${id}\0${JSON.stringify(l)}`,
      };
    }
    return {
      index,
      id,
      dryRun: mode === 'dryRun',
      matchers,
      tenants: spec.match?.tenants ? new Set(spec.match.tenants) : undefined,
      relabel,
      relabelDropSlot: mk('relabel', 'relabel_dropped', 'dropped'),
      relabelRewriteSlot: mk('relabel', 'relabel_rewritten', 'rewritten'),
      collisionSlot: mk('relabel', 'collision', 'rewritten'),
      collisionMode: spec.onCollision ?? 'sum',
      outOfOrderSlot: mk('synthesized', 'out_of_order', 'dropped'),
      drop,
      standards,
      standardsSlots,
      limits,
      unused,
      unusedConfigured: spec.unused !== undefined,
    };
  });
  return Object.freeze({
    policies: Object.freeze(policies),
    usage,
    slots: Object.freeze(slots),
    empty: policies.length === 0,
    mayCollide: policies.some((p) => p.relabel !== undefined && !p.dryRun),
  });
}

const STANDARDS_RULES: ReadonlyArray<readonly [Reason, string]> = [
  ['metric_name', 'metricNamePattern'],
  ['label_name', 'labelNamePattern'],
  ['required_label', 'requiredLabels'],
  ['forbidden_label', 'forbiddenLabels'],
  ['max_labels', 'maxLabels'],
  ['label_name_length', 'maxLabelNameLength'],
  ['label_value_length', 'maxLabelValueLength'],
];

function compileStandards(
  s: StandardsT,
  at: (field: string, fn: () => unknown) => unknown,
): CompiledStandards {
  return {
    metricName:
      s.metricNamePattern === undefined
        ? undefined
        : (at('metricNamePattern', () => compileAnchored(s.metricNamePattern!)) as AnchoredRegex),
    labelName:
      s.labelNamePattern === undefined
        ? undefined
        : (at('labelNamePattern', () => compileAnchored(s.labelNamePattern!)) as AnchoredRegex),
    required: s.requiredLabels ?? [],
    forbidden: new Set(s.forbiddenLabels ?? []),
    maxLabels: s.maxLabels ?? Number.POSITIVE_INFINITY,
    maxNameLength: s.maxLabelNameLength ?? Number.POSITIVE_INFINITY,
    maxValueLength: s.maxLabelValueLength ?? Number.POSITIVE_INFINITY,
    drop: s.onViolation === 'drop',
  };
}
