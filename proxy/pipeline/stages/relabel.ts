// The relabel stage (spec.relabel): Prometheus relabel_configs, with Prometheus' semantics
// (policy/relabel.ts, checked against real Prometheus 2 and 3). A relabel that drops the
// series drops it; one that changes its labels rewrites it, and later stages see the result.

import { MetricPolicySpec, type RelabelConfigT } from '../../../crds/metric-policy.js';
import { compileRelabel, type RelabelProgram, relabel } from '../../../policy/relabel.js';
import type { Label } from '../../codec/types.js';
import type { LabelStage } from '../stage.js';

export interface CompiledRelabel {
  readonly program: RelabelProgram;
  readonly dropSlot: number;
  readonly rewriteSlot: number;
}

export function sameLabels(a: readonly Label[], b: readonly Label[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (a[i]!.name !== b[i]!.name || a[i]!.value !== b[i]!.value) return false;
  return true;
}

export const relabelStage: LabelStage<readonly RelabelConfigT[] | undefined, CompiledRelabel> = {
  kind: 'label',
  name: 'relabel',
  schema: MetricPolicySpec.properties.relabel,
  reasons: ['relabel_dropped', 'relabel_rewritten'],
  rewrites: true,
  compile(spec, ctx) {
    const program =
      spec === undefined || spec.length === 0
        ? undefined
        : ctx.at('relabel', () => compileRelabel([...spec]));
    // Every policy has the relabel counters, at 0 without relabel rules, as the dashboard lists them.
    const dropSlot = ctx.slot('relabel', 'relabel_dropped', 'dropped');
    const rewriteSlot = ctx.slot('relabel', 'relabel_rewritten', 'rewritten');
    return program === undefined ? undefined : { program, dropSlot, rewriteSlot };
  },
  apply(c, step) {
    const out = relabel(c.program, step.labels);
    if (out === null) step.drop(c.dropSlot);
    else if (!sameLabels(out, step.labels)) {
      step.count(c.rewriteSlot);
      step.rewrite(out);
    }
  },
};
