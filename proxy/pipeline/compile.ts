// Policies -> a compiled pipeline. Compilation happens once per configuration version; what it
// produces is immutable and shared by every request until the next reload.
//
// Order (documented in README "Policies"): policies apply in ascending `priority`, then by
// namespace and name. Within a policy the stateless stages run in the order match, relabel, drop,
// unused, standards, and each policy sees the series as the enforcing policies before it left it. Limits
// are stateful and run after every policy's stateless stages, in the same policy order, on the
// series as all of them left it. A dryRun policy computes and counts its verdicts but hands the
// series on unchanged.

import type { MetricPolicySpecT, MetricUseT } from '../../crds/metric-policy.js';
import type { Problem } from '../../policy/load.js';
import type { Matcher } from '../../policy/selector.js';
import type { CollisionMode } from '../codec/output.js';
import type { PluginGuard } from './plugins/guard.js';
import type { StagePlugins } from './plugins/load.js';
import { compilePluginStage } from './plugins/stage.js';
import type { Action, BoundLabelStage, CompileContext, Mode } from './stage.js';
import { STAGES } from './stages/index.js';
import type { CompiledLimits } from './stages/limits/index.js';
import type { CompiledMatch } from './stages/match.js';
import type { CompiledStandards } from './stages/standards.js';
import type { CompiledUnused, ReadsKnown } from './stages/unused.js';

export type { CollisionMode } from '../codec/output.js';
export type { Action } from './stage.js';
export type { CompiledLabelLimit, CompiledLimits, CompiledMetricLimit } from './stages/limits/index.js';
export { OVERFLOW_VALUE } from './stages/limits/overflow.js';
export type { CompiledStandards } from './stages/standards.js';

/** What the configuration's MetricUsage documents say is read; see policy/validate.ts validateUsage. */
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

/**
 * Why a rule acted: one of the reasons a stage declares (stages/index.ts lists the in-tree ones;
 * a plugin declares its own), so metric labels stay bounded.
 */
export type Reason = string;

/** The reasons the engine itself counts under, besides the stages'. */
export const ENGINE_REASONS = ['collision', 'out_of_order'] as const;

/**
 * A counter slot: one (policy, rule, reason, action, mode) combination. Slots are numbered at
 * compile time so the hot path counts into a typed array and flushes once per request.
 */
export interface Slot {
  readonly policy: string;
  readonly rule: string;
  readonly reason: Reason;
  readonly action: Action;
  readonly mode: Mode;
}

export interface CompiledPolicy {
  readonly index: number;
  /** `namespace/name`, or `name` without a namespace: the `policy` label of counters. */
  readonly id: string;
  readonly dryRun: boolean;
  /** The policy's label stages that have something to do, in the order they run. */
  readonly labelStages: readonly BoundLabelStage[];
  /** Whether a series stage (limits) is configured: matched series are then handed to it. */
  readonly hasSeriesStage: boolean;
  /** What the in-tree stages compiled, by name, for statistics and pages. */
  readonly matchers: readonly Matcher[] | undefined;
  readonly tenants: ReadonlySet<string> | undefined;
  readonly standards: CompiledStandards | undefined;
  readonly limits: CompiledLimits | undefined;
  /** spec.unused, when set and some usage is known (see compileUnused). */
  readonly unused: CompiledUnused | undefined;
  /** Whether spec.unused is set, known usage or not. */
  readonly unusedConfigured: boolean;
  /** Series this policy's relabel merged with others of their request (spec.onCollision). */
  readonly collisionSlot: number;
  readonly collisionMode: CollisionMode;
  /**
   * Samples of series synthesized for this policy (overflow, aggregates, merged collisions) left
   * out because this replica had already sent the same series at that time or later.
   */
  readonly outOfOrderSlot: number;
}

export interface Pipeline {
  readonly policies: readonly CompiledPolicy[];
  readonly usage: PipelineUsage;
  readonly slots: readonly Slot[];
  /** True when there is nothing to do: requests are forwarded untouched. */
  readonly empty: boolean;
  /** Whether an enforcing policy relabels: series of one request may then become the same one. */
  readonly mayCollide: boolean;
  /** The guard of the stage plugins some policy runs; undefined when none does. */
  readonly plugins?: PluginGuard | undefined;
}

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
 * Compiles policies: each in-tree stage (stages/index.ts) compiles its part of each policy's spec.
 * Throws an Error naming the policy and field on anything that does not compile; configuration
 * validation runs the same compilation, so a config that validated compiles.
 */
export function compilePipeline(
  inputs: readonly PolicyInput[],
  usage: PipelineUsage = NO_USAGE,
  plugins?: StagePlugins,
): Pipeline {
  const slots: Slot[] = [];
  let anyPlugin = false;
  const policies = orderPolicies(inputs).map((input, index): CompiledPolicy => {
    const id = input.namespace ? `${input.namespace}/${input.name}` : input.name;
    const spec = input.spec;
    const mode = spec.mode ?? 'enforce';
    const at = <T>(field: string, fn: () => T): T => {
      try {
        return fn();
      } catch (err) {
        throw new Error(`policy ${id}: ${field}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const slotFor =
      (reasons: readonly string[]) =>
      (rule: string, reason: string, action: Action): number => {
        if (!reasons.includes(reason))
          throw new Error(`policy ${id}: ${rule}: reason ${reason} is not declared`);
        return slots.push({ policy: id, rule, reason, action, mode }) - 1;
      };
    const compiled = new Map<string, unknown>();
    const labelStages: BoundLabelStage[] = [];
    let hasSeriesStage = false;
    for (const { field, stage } of STAGES) {
      const ctx: CompileContext = { policy: id, mode, usage, slot: slotFor(stage.reasons), at };
      const c = stage.compile(spec[field], ctx);
      if (c === undefined) continue;
      compiled.set(stage.name, c);
      if (stage.kind === 'label') labelStages.push({ stage, compiled: c });
      else hasSeriesStage = true;
    }
    for (const [i, ref] of (spec.stages ?? []).entries()) {
      const reasons = plugins?.byName.get(ref.name)?.plugin.reasons ?? [];
      const ctx: CompileContext = { policy: id, mode, usage, slot: slotFor(reasons), at };
      const bound = compilePluginStage(ref, i, plugins, ctx);
      if (bound === undefined) continue;
      labelStages.push(bound);
      anyPlugin = true;
    }
    const engineSlot = slotFor(ENGINE_REASONS);
    const match = compiled.get('match') as CompiledMatch | undefined;
    return {
      index,
      id,
      dryRun: mode === 'dryRun',
      labelStages,
      hasSeriesStage,
      matchers: match?.matchers,
      tenants: match?.tenants,
      standards: compiled.get('standards') as CompiledStandards | undefined,
      limits: compiled.get('limits') as CompiledLimits | undefined,
      unused: compiled.get('unused') as CompiledUnused | undefined,
      unusedConfigured: spec.unused !== undefined,
      collisionSlot: engineSlot('relabel', 'collision', 'rewritten'),
      collisionMode: spec.onCollision ?? 'sum',
      outOfOrderSlot: engineSlot('synthesized', 'out_of_order', 'dropped'),
    };
  });
  return Object.freeze({
    policies: Object.freeze(policies),
    usage,
    slots: Object.freeze(slots),
    empty: policies.length === 0,
    mayCollide: policies.some(
      (p) => !p.dryRun && p.labelStages.some((b) => b.stage.rewrites === true || b.plugin),
    ),
    plugins: anyPlugin ? plugins?.guard : undefined,
  });
}

/**
 * Every problem compilePipeline would throw for, at once: each policy compiled on its own (a stage
 * plugin's config its schema refuses, a plugin that is not loaded), at the policy's place. For
 * `cardinal check` and the playground, which show all problems where the proxy stops at the first.
 */
export function compileProblems(
  inputs: readonly (PolicyInput & { readonly source: string })[],
  usage: PipelineUsage = NO_USAGE,
  plugins?: StagePlugins,
): Problem[] {
  const problems: Problem[] = [];
  for (const input of inputs) {
    try {
      compilePipeline([input], usage, plugins);
    } catch (err) {
      problems.push({ where: input.source, message: err instanceof Error ? err.message : String(err) });
    }
  }
  return problems;
}
