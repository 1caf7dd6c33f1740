import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { MetricPolicy } from '../api/types.js';
import { registerConditionMetrics } from './conditions.js';

function policy(name: string, conditions: [string, string][], deleting = false): MetricPolicy {
  return {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: {
      name,
      namespace: 'team-a',
      generation: 1,
      ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: {},
    status: {
      conditions: conditions.map(([type, status]) => ({
        type,
        status: status as 'True' | 'False' | 'Unknown',
        reason: 'R',
        message: '',
        lastTransitionTime: '2026-01-01T00:00:00Z',
        observedGeneration: 1,
      })),
    },
  };
}

describe('cardinal_operator_policy_condition', () => {
  it('is 1 for the status each condition has and 0 for the others, read at every scrape', async () => {
    const registry = new Registry();
    let policies = [
      policy('bad', [['Accepted', 'False']]),
      policy('ok', [
        ['Accepted', 'True'],
        ['Degraded', 'Unknown'],
      ]),
      policy('gone', [['Accepted', 'True']], true),
    ];
    registerConditionMetrics({ registry, policies: () => policies });
    const lines = async () =>
      (await registry.metrics())
        .split('\n')
        .filter((l) => l.startsWith('cardinal_operator_policy_condition{'));
    expect(await lines()).toEqual([
      'cardinal_operator_policy_condition{policy="team-a/bad",type="Accepted",status="True"} 0',
      'cardinal_operator_policy_condition{policy="team-a/bad",type="Accepted",status="False"} 1',
      'cardinal_operator_policy_condition{policy="team-a/bad",type="Accepted",status="Unknown"} 0',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Accepted",status="True"} 1',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Accepted",status="False"} 0',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Accepted",status="Unknown"} 0',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Degraded",status="True"} 0',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Degraded",status="False"} 0',
      'cardinal_operator_policy_condition{policy="team-a/ok",type="Degraded",status="Unknown"} 1',
    ]);
    // A deleted policy's series go with it.
    policies = [policy('ok', [['Accepted', 'True']])];
    expect(await lines()).toHaveLength(3);
  });
});
