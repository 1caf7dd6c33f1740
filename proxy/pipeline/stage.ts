// The stage contract: every governance capability of the pipeline is a stage, in one of two kinds.
//
// - A label stage is a pure function of a series' labels (and its tenant, and the clock through
//   values it declares as expiring) to a verdict: keep, drop, rewrite or report, with a reason.
//   The label stages of every policy are composed at compile time and their combined verdict is
//   cached per label set, so in the steady state a label stage runs once per new series, not per
//   request.
// - A series stage is stateful and runs per series, after the cached verdict (limits, overflow).
//   Its state outlives requests and sits behind the shared-state interface (proxy/limits/store.ts,
//   local or Redis); it never sees HTTP.
//
// Each stage declares the schema fragment it is configured by (TypeBox), the reasons it counts
// under (so `reason` labels stay bounded and named), and a compile step run once per
// configuration version. The engine (engine.ts) only runs stages and builds the output.
//
// Out-of-tree stages (proxy/pipeline/plugins/) are label stages with the same contract, versioned
// by STAGE_API_VERSION; README "Stage plugins" documents it for plugin authors.

import type { TSchema } from '@sinclair/typebox';
import type { Label } from '../codec/types.js';
import type { PipelineUsage } from './compile.js';

/** The version of the stage contract a plugin declares; bumped on any incompatible change. */
export const STAGE_API_VERSION = 1;

/** What a rule did to a series. `reported`: a violation that let the series through. */
export type Action = 'dropped' | 'rewritten' | 'reported';

/** How a policy runs: enforcing, or only counting what it would do. */
export type Mode = 'enforce' | 'dryRun';

/** What a stage's compile step may use. */
export interface CompileContext {
  /** `namespace/name` (or `name`) of the policy being compiled. */
  readonly policy: string;
  readonly mode: Mode;
  /** What the configuration's MetricUsage documents say is read. */
  readonly usage: PipelineUsage;
  /**
   * Numbers a counter slot for (rule, reason, action); counted by the hot path into a typed array.
   * `reason` must be one of the stage's declared reasons (it throws otherwise), which is what keeps
   * the `reason` label bounded.
   */
  slot(rule: string, reason: string, action: Action): number;
  /** Runs `fn`; an error it throws is rethrown as `policy <id>: <field>: <message>`. */
  at<T>(field: string, fn: () => T): T;
}

/**
 * One policy's label stages working on one label set, in order. A stage reads `labels` and says
 * what it does through the methods; the evaluator composes the verdict. Once a stage drops or skips,
 * the policy's later stages do not run. In a dryRun policy the evaluator counts but keeps the
 * series as it was.
 */
export interface LabelStep {
  /** The labels as the earlier stages of this policy (and the enforcing policies before) left them. */
  readonly labels: readonly Label[];
  readonly tenant: string | undefined;
  readonly nowMs: number;
  /** Index of the policy in the pipeline. */
  readonly policy: number;
  readonly dryRun: boolean;
  /** The policy does not apply to the series: none of its stages count or change anything. */
  skip(): void;
  /** Drops the series, counted in `slot`. */
  drop(slot: number): void;
  /** Counts the series in `slot` (a report, or a rewrite counted where it happens). */
  count(slot: number): void;
  /**
   * Replaces the labels (sorted by name, as remote-write requires) seen by the later stages. When
   * two series of one request end up the same, they are merged as the policy's spec.onCollision
   * says (the stage must declare `rewrites`).
   */
  rewrite(labels: Label[]): void;
  /**
   * Replaces the labels knowing that many series collapse onto the result (values replaced by a
   * placeholder or a bucket): their samples are summed per timestamp, as overflow series are, and
   * the result carries the replica label. Ignored in a dryRun policy.
   */
  aggregate(labels: Label[]): void;
  /** For the unused statistics: the series' metric is unread by this policy's spec.unused. */
  unused(): void;
  /** For the unread-label statistics: label `name` with value `value` is unread. */
  unread(name: string, value: string): void;
}

interface StageBase<Spec, Compiled> {
  /** Unique among stages; the name `spec.stages[].name` refers to for plugins. */
  readonly name: string;
  /** The schema fragment the stage's configuration must satisfy. */
  readonly schema: TSchema;
  /** Every reason the stage counts under. */
  readonly reasons: readonly string[];
  /** Whether the stage may `rewrite` labels (then series of one request may collide). */
  readonly rewrites?: boolean;
  /** Compiles one policy's configuration; undefined when the stage has nothing to do for it. */
  compile(spec: Spec, ctx: CompileContext): Compiled | undefined;
}

export interface LabelStage<Spec = unknown, Compiled = unknown> extends StageBase<Spec, Compiled> {
  readonly kind: 'label';
  /** Pure: the same labels, tenant and compiled configuration always give the same verdict. */
  apply(compiled: Compiled, step: LabelStep): void;
  /**
   * When the verdicts of `compiled` stop holding (an exemption expiring), as epoch ms, or
   * Infinity; the engine drops its verdict cache then.
   */
  expires?(compiled: Compiled, nowMs: number): number;
}

export interface SeriesStage<Spec = unknown, Compiled = unknown> extends StageBase<Spec, Compiled> {
  readonly kind: 'series';
}

export type Stage = LabelStage | SeriesStage;

/** A label stage with one policy's compiled configuration, as the evaluator runs it. */
export interface BoundLabelStage {
  readonly stage: LabelStage;
  readonly compiled: unknown;
  /** A stage plugin's: it runs only inside the engine's bounded run (plugins/guard.ts). */
  readonly plugin?: true;
}

/** Binds a compiled configuration to its stage, keeping the pair's types in step. */
export function bind<C>(stage: LabelStage<never, C>, compiled: C): BoundLabelStage {
  return { stage: stage as unknown as LabelStage, compiled };
}

/**
 * What a stage plugin module (cardinal-proxy --stage.plugin PATH) exports as its default export:
 * a label stage, the contract version it was written against, and what a failure does. Policies
 * run it by name (spec.stages: [{ name, config }]); `schema` (TypeBox) checks `config` when the
 * proxy loads the configuration, and `compile` may refuse it further by throwing.
 */
export interface StagePlugin<Config = Record<string, unknown>, Compiled = unknown>
  extends LabelStage<Config, Compiled> {
  readonly apiVersion: typeof STAGE_API_VERSION;
  /**
   * When `apply` throws or the request's time budget runs out while it runs: `forward` (default)
   * lets the series go on as the stages before the plugin left them; `refuse` answers the request
   * with 503, which senders retry. Either way it is counted and logged, rate-limited.
   */
  readonly onError?: 'forward' | 'refuse';
}
