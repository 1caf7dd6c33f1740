// The drop stage (spec.drop): metric names dropped outright, by anchored RE2 pattern.

import { MetricPolicySpec } from '../../../crds/metric-policy.js';
import { type AnchoredRegex, compileAnchored } from '../../../policy/regex.js';
import type { LabelStage } from '../stage.js';
import { metricName } from './labels.js';

export type CompiledDrop = readonly { readonly re: AnchoredRegex; readonly slot: number }[];

export const dropStage: LabelStage<readonly string[] | undefined, CompiledDrop> = {
  kind: 'label',
  name: 'drop',
  schema: MetricPolicySpec.properties.drop,
  reasons: ['metric_dropped'],
  compile(spec, ctx) {
    if (spec === undefined || spec.length === 0) return undefined;
    return spec.map((pattern, i) => ({
      re: ctx.at(`drop[${i}]`, () => compileAnchored(pattern)),
      slot: ctx.slot(`drop[${i}]`, 'metric_dropped', 'dropped'),
    }));
  },
  apply(rules, step) {
    const name = metricName(step.labels);
    for (const d of rules) {
      if (d.re.matches(name)) {
        step.drop(d.slot);
        return;
      }
    }
  },
};
