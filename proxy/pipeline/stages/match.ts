// The match stage (spec.match): which series a policy applies to, by tenant and by selector. First
// of a policy's stages; a series it does not match passes the policy untouched and uncounted.

import { MetricPolicySpec, type MetricPolicySpecT } from '../../../crds/metric-policy.js';
import { type Matcher, matchesLabels, parseSelector } from '../../../policy/selector.js';
import type { Label } from '../../codec/types.js';
import type { LabelStage } from '../stage.js';

export interface CompiledMatch {
  readonly matchers: readonly Matcher[] | undefined;
  readonly tenants: ReadonlySet<string> | undefined;
}

function get(labels: readonly Label[], name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}

/** Whether a policy's match applies to a series: its tenants and its selector. */
export function matches(m: CompiledMatch, labels: readonly Label[], tenant: string | undefined): boolean {
  if (m.tenants !== undefined && (tenant === undefined || !m.tenants.has(tenant))) return false;
  return m.matchers === undefined || matchesLabels(m.matchers, (name) => get(labels, name));
}

export const matchStage: LabelStage<MetricPolicySpecT['match'], CompiledMatch> = {
  kind: 'label',
  name: 'match',
  schema: MetricPolicySpec.properties.match,
  reasons: [],
  compile(spec, ctx) {
    if (spec === undefined) return undefined;
    const matchers = spec.selector
      ? ctx.at('match.selector', () => parseSelector(spec.selector!)).matchers
      : undefined;
    const tenants = spec.tenants ? new Set(spec.tenants) : undefined;
    return matchers === undefined && tenants === undefined ? undefined : { matchers, tenants };
  },
  apply(compiled, step) {
    if (!matches(compiled, step.labels, step.tenant)) step.skip();
  },
};
