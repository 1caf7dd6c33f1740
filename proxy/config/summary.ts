// What a loaded configuration holds, for people: each policy with its mode and how many rules of
// each kind it has, in the order the policies apply. GET /api/v1/status/config and the web pages
// show it.

import type { ValidatedPolicy } from '../../policy/validate.js';
import { orderPolicies } from '../pipeline/compile.js';

export interface PolicySummary {
  /** `namespace/name`, or `name`: the `policy` label of counters. */
  readonly id: string;
  readonly name: string;
  readonly namespace: string | null;
  readonly source: string;
  readonly mode: 'enforce' | 'dryRun';
  readonly priority: number;
  readonly selector: string | null;
  readonly tenants: readonly string[] | null;
  /** Rules per stage; a stage that is not configured counts 0. */
  readonly rules: {
    readonly relabel: number;
    readonly drop: number;
    readonly standards: number;
    readonly limits: number;
    readonly unused: number;
  };
}

export function summarizePolicies(policies: readonly ValidatedPolicy[]): PolicySummary[] {
  return orderPolicies(policies).map((p) => {
    const s = p.spec;
    const standards = s.standards ?? {};
    const standardRules = [
      standards.metricNamePattern,
      standards.labelNamePattern,
      standards.maxLabels,
      standards.maxLabelNameLength,
      standards.maxLabelValueLength,
    ].filter((r) => r !== undefined).length;
    return {
      id: p.namespace ? `${p.namespace}/${p.name}` : p.name,
      name: p.name,
      namespace: p.namespace ?? null,
      source: p.source,
      mode: s.mode ?? 'enforce',
      priority: s.priority ?? 0,
      selector: s.match?.selector ?? null,
      tenants: s.match?.tenants ?? null,
      rules: {
        relabel: s.relabel?.length ?? 0,
        drop: s.drop?.length ?? 0,
        standards:
          standardRules + (standards.requiredLabels?.length ?? 0) + (standards.forbiddenLabels?.length ?? 0),
        limits:
          (s.limits?.perMetric?.length ?? 0) +
          (s.limits?.perLabel?.length ?? 0) +
          (s.limits?.perTenantMaxSeries === undefined ? 0 : 1),
        unused: s.unused === undefined ? 0 : 1 + (s.unused.labels === undefined ? 0 : 1),
      },
    };
  });
}
