import { describe, expect, it } from 'vitest';
import { MetricPolicySpec } from '../../../crds/metric-policy.js';
import { compilePipeline, ENGINE_REASONS } from '../compile.js';
import { STAGES } from './index.js';

describe('the in-tree stages', () => {
  it('each declares the spec field it is configured by as its schema fragment, and every spec field has a stage', () => {
    for (const { field, stage } of STAGES)
      expect(stage.schema, stage.name).toBe(MetricPolicySpec.properties[field]);
    const configured = new Set(STAGES.map((s) => s.field));
    // The fields that are not a stage's: the policy's own settings, read by the compiler and engine.
    const own = Object.keys(MetricPolicySpec.properties).filter((f) => !configured.has(f as never));
    // stages: the stage plugins' (proxy/pipeline/plugins/).
    expect(own.sort()).toEqual(['mode', 'onCollision', 'priority', 'proxySelector', 'stages']);
  });

  it('have unique names, label stages before series stages', () => {
    const names = STAGES.map((s) => s.stage.name);
    expect(new Set(names).size).toBe(names.length);
    const kinds = STAGES.map((s) => s.stage.kind);
    expect(kinds.lastIndexOf('label')).toBeLessThan(kinds.indexOf('series'));
  });

  it('count only under the reasons they declare', () => {
    const pipeline = compilePipeline([
      {
        name: 'all',
        namespace: 'ns',
        spec: {
          match: { selector: '{job="a"}', tenants: ['t'] },
          relabel: [{ action: 'labeldrop', regex: 'pod' }],
          drop: ['debug_.*'],
          unused: { action: 'report', metrics: ['up'], labels: 'report' },
          standards: { maxLabels: 10 },
          limits: {
            perMetric: [{ metric: '.*', maxSeries: 10 }],
            perLabel: [{ label: 'id', maxValues: 10 }],
            perTenantMaxSeries: 10,
          },
        },
      },
    ]);
    const declared = new Set<string>([...ENGINE_REASONS, ...STAGES.flatMap((s) => s.stage.reasons)]);
    expect(pipeline.slots.length).toBeGreaterThan(10);
    for (const s of pipeline.slots) expect(declared.has(s.reason), s.reason).toBe(true);
    // Every declared reason of a configured stage has its counter.
    expect(new Set(pipeline.slots.map((s) => s.reason))).toEqual(declared);
  });
});
