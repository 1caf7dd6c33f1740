// The standards stage (spec.standards): naming and shape rules a series must follow (metric and
// label name patterns, required and forbidden labels, label count and lengths); a violation is
// reported, or dropped. The first violated rule counts, in the order standardsViolation checks.

import { MetricPolicySpec, type StandardsT } from '../../../crds/metric-policy.js';
import { type AnchoredRegex, compileAnchored } from '../../../policy/regex.js';
import type { Label } from '../../codec/types.js';
import type { LabelStage } from '../stage.js';
import { labelValue } from './labels.js';

export interface CompiledStandards {
  readonly metricName: AnchoredRegex | undefined;
  readonly labelName: AnchoredRegex | undefined;
  readonly required: readonly string[];
  readonly forbidden: ReadonlySet<string>;
  readonly maxLabels: number;
  readonly maxNameLength: number;
  readonly maxValueLength: number;
  readonly drop: boolean;
  /** Counter slot per reason. */
  readonly slots: Readonly<Record<string, number>>;
}

/** The reasons of the standards stage, with the field of the rule each counts. */
export const STANDARDS_RULES = [
  ['metric_name', 'metricNamePattern'],
  ['label_name', 'labelNamePattern'],
  ['required_label', 'requiredLabels'],
  ['forbidden_label', 'forbiddenLabels'],
  ['max_labels', 'maxLabels'],
  ['label_name_length', 'maxLabelNameLength'],
  ['label_value_length', 'maxLabelValueLength'],
] as const;

export type StandardsReason = (typeof STANDARDS_RULES)[number][0];

/** The first standards rule a label set violates, or undefined. */
export function standardsViolation(
  s: CompiledStandards,
  labels: readonly Label[],
): StandardsReason | undefined {
  const name = labelValue(labels, '__name__');
  if (s.metricName !== undefined && !s.metricName.matches(name)) return 'metric_name';
  if (labels.length > s.maxLabels) return 'max_labels';
  for (const l of labels) {
    if (l.name !== '__name__' && s.labelName !== undefined && !s.labelName.matches(l.name))
      return 'label_name';
    if (s.forbidden.has(l.name)) return 'forbidden_label';
    if (Buffer.byteLength(l.name) > s.maxNameLength) return 'label_name_length';
    if (Buffer.byteLength(l.value) > s.maxValueLength) return 'label_value_length';
  }
  for (const r of s.required) if (labelValue(labels, r) === '') return 'required_label';
  return undefined;
}

export const standardsStage: LabelStage<StandardsT | undefined, CompiledStandards> = {
  kind: 'label',
  name: 'standards',
  schema: MetricPolicySpec.properties.standards,
  reasons: STANDARDS_RULES.map(([reason]) => reason),
  compile(s, ctx) {
    if (s === undefined) return undefined;
    const at = (field: string, fn: () => AnchoredRegex) => ctx.at(`standards.${field}`, fn);
    const drop = s.onViolation === 'drop';
    const slots: Record<string, number> = {};
    for (const [reason, rule] of STANDARDS_RULES)
      slots[reason] = ctx.slot(`standards.${rule}`, reason, drop ? 'dropped' : 'reported');
    return {
      metricName:
        s.metricNamePattern === undefined
          ? undefined
          : at('metricNamePattern', () => compileAnchored(s.metricNamePattern!)),
      labelName:
        s.labelNamePattern === undefined
          ? undefined
          : at('labelNamePattern', () => compileAnchored(s.labelNamePattern!)),
      required: s.requiredLabels ?? [],
      forbidden: new Set(s.forbiddenLabels ?? []),
      maxLabels: s.maxLabels ?? Number.POSITIVE_INFINITY,
      maxNameLength: s.maxLabelNameLength ?? Number.POSITIVE_INFINITY,
      maxValueLength: s.maxLabelValueLength ?? Number.POSITIVE_INFINITY,
      drop,
      slots,
    };
  },
  apply(s, step) {
    const violation = standardsViolation(s, step.labels);
    if (violation === undefined) return;
    const slot = s.slots[violation]!;
    if (s.drop) step.drop(slot);
    else step.count(slot);
  },
};
