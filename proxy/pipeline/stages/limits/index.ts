// The limits stage (spec.limits): series per metric, label values per label and series per tenant,
// over a sliding window. The only series stage in-tree: whether a series is admitted depends on
// what came before it, so it runs after the cached verdict, on the series as every policy's label
// stages left it (runtime.ts), with its state local or shared through proxy/limits/store.ts. A
// series over a limit is dropped, or, with onExceed overflow, rewritten onto one overflow series
// per metric (overflow.ts).

import { type LimitsT, MetricPolicySpec } from '../../../../crds/metric-policy.js';
import { type AnchoredRegex, compileAnchored } from '../../../../policy/regex.js';
import { parseDuration } from '../../../../policy/validate.js';
import type { SeriesStage } from '../../stage.js';

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

export const limitsStage: SeriesStage<LimitsT | undefined, CompiledLimits> = {
  kind: 'series',
  name: 'limits',
  schema: MetricPolicySpec.properties.limits,
  reasons: ['series_limit', 'label_values_limit', 'tenant_series_limit'],
  compile(l, ctx) {
    if (l === undefined) return undefined;
    return {
      windowMs: ctx.at('limits.window', () => parseDuration(l.window ?? '1h')),
      perMetric: (l.perMetric ?? []).map((m, i) => ({
        metric: ctx.at(`limits.perMetric[${i}].metric`, () => compileAnchored(m.metric)),
        maxSeries: m.maxSeries,
        overflow: m.onExceed === 'overflow',
        overflowLabel: m.overflowLabel,
        slot: ctx.slot(
          m.name ?? `limits.perMetric[${i}]`,
          'series_limit',
          m.onExceed === 'overflow' ? 'rewritten' : 'dropped',
        ),
      })),
      perLabel: (l.perLabel ?? []).map((m, i) => ({
        metric:
          m.metric === undefined
            ? undefined
            : ctx.at(`limits.perLabel[${i}].metric`, () => compileAnchored(m.metric!)),
        label: m.label,
        maxValues: m.maxValues,
        overflow: m.onExceed === 'overflow',
        slot: ctx.slot(
          m.name ?? `limits.perLabel[${i}]`,
          'label_values_limit',
          m.onExceed === 'overflow' ? 'rewritten' : 'dropped',
        ),
      })),
      perTenantMaxSeries: l.perTenantMaxSeries,
      tenantSlot: ctx.slot('limits.perTenantMaxSeries', 'tenant_series_limit', 'dropped'),
      key: `${ctx.policy}\0${JSON.stringify(l)}`,
    };
  },
};
