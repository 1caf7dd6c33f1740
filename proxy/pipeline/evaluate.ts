// The stateless part of the pipeline: what every policy's label stages (stage.ts) do to one label
// set, composed into one verdict. Pure, and a function of (labels, tenant) only, so the engine
// caches its result per label set and the steady state never runs a regex for a series it has seen.

import type { Label } from '../codec/types.js';
import type { CompiledPolicy, Pipeline } from './compile.js';
import type { ContainedStep } from './plugins/stage.js';
import { matches } from './stages/match.js';
import { sameLabels } from './stages/relabel.js';

export interface Verdict {
  /** The labels after every enforcing policy; null when an enforcing policy dropped the series. */
  readonly labels: Label[] | null;
  /** Whether `labels` differ from the input. */
  readonly changed: boolean;
  /** Counter slots to bump by the series' samples every time it is seen (drops, rewrites, reports). */
  readonly slots: readonly number[];
  /** The policies whose series stages (limits) apply to the series, in order (indices into pipeline.policies). */
  readonly seriesPolicies: readonly number[];
  /** The policies whose unused stage found the metric unread, reported or dropped. */
  readonly unused: readonly number[];
  /**
   * True when a stage aggregated (spec.unused.labels aggregate replaced unread labels' values):
   * several series may collapse onto these labels, so their samples must be summed per timestamp.
   */
  readonly aggregated: boolean;
  /** The last policy whose stages rewrote the series (relabel; index into pipeline.policies), or -1. */
  readonly relabeledBy: number;
  /** The last policy that aggregated the series' labels, or -1. */
  readonly aggregatedBy: number;
  /** Labels (with their original values) a policy's spec.unused.labels found unread, for statistics. */
  readonly unread: readonly { readonly policy: number; readonly name: string; readonly value: string }[];
  /** A stage plugin failed or did not run: the verdict holds for this request only, not cached. */
  readonly incomplete: boolean;
}

/** Whether policy `p` applies to a series: its tenants and its selector. */
export function policyMatches(
  p: CompiledPolicy,
  labels: readonly Label[],
  tenant: string | undefined,
): boolean {
  return matches(p, labels, tenant);
}

/** One policy's pass over a label set; what the stages say accumulates into the verdict. */
class Step implements ContainedStep {
  labels: Label[] = [];
  policy = 0;
  dryRun = false;
  /** Set by skip() or drop(): the policy's later stages do not run. */
  done = false;
  skipped = false;
  dropSlot = -1;
  readonly slots: number[] = [];
  readonly unusedPolicies: number[] = [];
  readonly unreadLabels: { policy: number; name: string; value: string }[] = [];
  aggregated = false;
  incompleteVerdict = false;
  relabeledBy = -1;
  aggregatedBy = -1;
  readonly tenant: string | undefined;
  readonly nowMs: number;
  #marks = [0, 0, 0];

  constructor(tenant: string | undefined, nowMs: number) {
    this.tenant = tenant;
    this.nowMs = nowMs;
  }

  begin(p: CompiledPolicy, labels: Label[]): void {
    this.labels = labels;
    this.policy = p.index;
    this.dryRun = p.dryRun;
    this.done = false;
    this.skipped = false;
    this.dropSlot = -1;
    this.#marks = [this.slots.length, this.unusedPolicies.length, this.unreadLabels.length];
  }

  skip(): void {
    // A policy that does not apply counts nothing, whatever its earlier stages said.
    this.slots.length = this.#marks[0]!;
    this.unusedPolicies.length = this.#marks[1]!;
    this.unreadLabels.length = this.#marks[2]!;
    this.skipped = true;
    this.done = true;
  }

  drop(slot: number): void {
    this.dropSlot = slot;
    this.done = true;
  }

  count(slot: number): void {
    this.slots.push(slot);
  }

  rewrite(labels: Label[]): void {
    this.labels = labels;
    if (!this.dryRun) this.relabeledBy = this.policy;
  }

  aggregate(labels: Label[]): void {
    if (this.dryRun) return;
    this.labels = labels;
    this.aggregated = true;
    this.aggregatedBy = this.policy;
  }

  unused(): void {
    this.unusedPolicies.push(this.policy);
  }

  unread(name: string, value: string): void {
    this.unreadLabels.push({ policy: this.policy, name, value });
  }

  incomplete(): void {
    this.incompleteVerdict = true;
  }
}

/**
 * Runs every policy's label stages on `input` (sorted by name, as remote-write requires). Within
 * a policy, once a stage drops the series its later stages do not run. A dryRun policy's verdict
 * is counted but does not change what the next policy sees. `nowMs` decides which unused
 * exemptions are still live; the verdict holds until the next one expires.
 */
export function evaluate(
  pipeline: Pipeline,
  input: readonly Label[],
  tenant: string | undefined,
  nowMs: number = Date.now(),
): Verdict {
  let labels: Label[] = input as Label[];
  let changed = false;
  const seriesPolicies: number[] = [];
  const step = new Step(tenant, nowMs);
  for (const p of pipeline.policies) {
    step.begin(p, labels);
    for (const b of p.labelStages) {
      b.stage.apply(b.compiled, step);
      if (step.done) break;
    }
    if (step.skipped) continue;
    if (step.dropSlot >= 0) {
      step.slots.push(step.dropSlot);
      if (!p.dryRun)
        return {
          labels: null,
          changed: true,
          slots: step.slots,
          seriesPolicies,
          unused: step.unusedPolicies,
          aggregated: false,
          relabeledBy: step.relabeledBy,
          aggregatedBy: step.aggregatedBy,
          unread: step.unreadLabels,
          incomplete: step.incompleteVerdict,
        };
      continue;
    }
    if (p.hasSeriesStage) seriesPolicies.push(p.index);
    const out = step.labels;
    if (!p.dryRun && out !== labels) {
      labels = out;
      changed = changed || !sameLabels(out, input);
    }
  }
  return {
    labels,
    changed,
    slots: step.slots,
    seriesPolicies,
    unused: step.unusedPolicies,
    aggregated: step.aggregated && changed,
    relabeledBy: step.relabeledBy,
    aggregatedBy: step.aggregatedBy,
    unread: step.unreadLabels,
    incomplete: step.incompleteVerdict,
  };
}
