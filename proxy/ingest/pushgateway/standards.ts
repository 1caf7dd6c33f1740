// The MetricPolicy standards, explained to the pusher. Remote-write senders cannot read a reason
// per series, so there the engine only drops or counts; a push is answered by a person or a job
// log, so each pushed series that violates an enforced standard becomes a problem with its line.

import type { Label } from '../../codec/types.js';
import type { Reason } from '../../pipeline/compile.js';
import type { PolicyEngine } from '../../pipeline/engine.js';
import { evaluate } from '../../pipeline/evaluate.js';
import type { PolicyStats } from '../../stats/policy-stats.js';
import type { MetricFamily, Problem } from '../exposition/index.js';

const STANDARDS_TEXT: Partial<Record<Reason, string>> = {
  metric_name: 'the metric name does not match metricNamePattern',
  label_name: 'a label name does not match labelNamePattern',
  required_label: 'a required label is missing or empty',
  forbidden_label: 'it carries a forbidden label',
  max_labels: 'it has more labels than maxLabels',
  label_name_length: 'a label name is longer than maxLabelNameLength',
  label_value_length: 'a label value is longer than maxLabelValueLength',
};

export interface StandardsFindings {
  /** Violations of enforced standards with `onViolation: drop`: they fail the push. */
  readonly rejected: Problem[];
  /** Violations that are only reported (`onViolation: report`, or a dryRun policy). */
  readonly reported: Problem[];
  /** Counts the rejected series in the policy counters, for a push refused as a whole. */
  count(stats: PolicyStats): void;
}

export function standardsProblems(
  engine: PolicyEngine,
  families: readonly MetricFamily[],
  /** storedLabelSets(families, key): the label set of each sample, in order. */
  stored: readonly Label[][],
  tenant: string | undefined,
): StandardsFindings {
  const pipeline = engine.pipeline;
  const rejected: Problem[] = [];
  const reported: Problem[] = [];
  const hits: { slot: number; name: string }[] = [];
  if (!pipeline.policies.some((p) => p.standards !== undefined)) {
    return { rejected, reported, count: () => {} };
  }
  let i = 0;
  for (const f of families) {
    for (const s of f.samples) {
      const verdict = evaluate(pipeline, stored[i++]!, tenant);
      for (const k of verdict.slots) {
        const slot = pipeline.slots[k]!;
        const text = STANDARDS_TEXT[slot.reason];
        if (text === undefined) continue;
        const problem: Problem = {
          line: s.line,
          message: `series ${s.name} violates the standards of policy ${slot.policy}: ${text}`,
          rule: `standards/${slot.reason}`,
        };
        if (slot.action === 'dropped' && slot.mode === 'enforce') {
          rejected.push(problem);
          hits.push({ slot: k, name: s.name });
        } else {
          reported.push(problem);
        }
      }
    }
  }
  return {
    rejected,
    reported,
    count(stats) {
      for (const h of hits) stats.slot(h.slot, engine.interner.internString(h.name), 1);
    },
  };
}
