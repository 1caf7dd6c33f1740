import { describe, expect, it } from 'vitest';
import { validatePolicies } from '../../policy/validate.js';
import { compilePipeline } from '../pipeline/compile.js';
import { summarizePolicies } from './summary.js';

const policies = validatePolicies([
  {
    name: 'b',
    namespace: 'team',
    source: 'b.yaml:1',
    spec: {
      priority: 2,
      mode: 'dryRun',
      match: { selector: '{job="api"}', tenants: ['t1'] },
      relabel: [{ action: 'labeldrop', regex: 'pod' }],
      drop: ['a', 'b'],
      standards: { metricNamePattern: '[a-z_]+', requiredLabels: ['job', 'team'], maxLabels: 20 },
      limits: {
        perMetric: [
          { name: 'api-cap', metric: 'http_.*', maxSeries: 10 },
          { metric: 'x', maxSeries: 1 },
        ],
        perLabel: [{ label: 'path', maxValues: 5 }],
        perTenantMaxSeries: 100,
      },
      unused: { action: 'report', labels: 'report' },
    },
  },
  { name: 'a', namespace: undefined, source: 'a.yaml:1', spec: { priority: 1 } },
]);

describe('summarizePolicies', () => {
  it('lists each policy in the order they apply, with its mode and rule counts per stage', () => {
    expect(summarizePolicies(policies)).toEqual([
      {
        id: 'a',
        name: 'a',
        namespace: null,
        source: 'a.yaml:1',
        mode: 'enforce',
        priority: 1,
        selector: null,
        tenants: null,
        rules: { relabel: 0, drop: 0, standards: 0, limits: 0, unused: 0 },
      },
      {
        id: 'team/b',
        name: 'b',
        namespace: 'team',
        source: 'b.yaml:1',
        mode: 'dryRun',
        priority: 2,
        selector: '{job="api"}',
        tenants: ['t1'],
        rules: { relabel: 1, drop: 2, standards: 4, limits: 4, unused: 2 },
      },
    ]);
  });

  it('a named limit rule is the rule label of its counter; an unnamed one keeps its position', () => {
    const rules = compilePipeline(policies)
      .slots.filter((s) => s.reason === 'series_limit')
      .map((s) => s.rule);
    expect(rules).toEqual(['api-cap', 'limits.perMetric[1]']);
  });
});
