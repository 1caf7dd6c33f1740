// cardinal_operator_policy_condition: one series per MetricPolicy, condition type and status, 1 for
// the status the condition has and 0 for the other two, read from the watch cache at scrape time
// (the shape of kube-state-metrics' *_status_condition gauges). Alerts select `== 1` on the status
// they care about, and a policy that loses a condition loses its series with it.
//
// The policy is named `namespace/name`, as the proxies' `policy` label names it; a `namespace`
// label would clash with the target's own on scrape (it would become exported_namespace).
//
// Only the leader reports: standbys hold the same cache, and every replica reporting would count
// each policy once per replica.

import { Gauge, type Registry } from 'prom-client';
import type { MetricPolicy } from '../api/types.js';

const STATUSES = ['True', 'False', 'Unknown'] as const;

export interface ConditionMetricsOptions {
  readonly registry: Registry;
  /** The policies to report: the watch cache while this replica leads, none otherwise. */
  readonly policies: () => readonly MetricPolicy[];
}

export function registerConditionMetrics(options: ConditionMetricsOptions): void {
  const { policies } = options;
  new Gauge({
    name: 'cardinal_operator_policy_condition',
    help: 'The conditions of each MetricPolicy: 1 for the status a condition has, 0 for the others.',
    labelNames: ['policy', 'type', 'status'],
    registers: [options.registry],
    collect() {
      this.reset();
      for (const p of policies()) {
        if (p.metadata.deletionTimestamp !== undefined) continue;
        for (const condition of p.status?.conditions ?? []) {
          for (const status of STATUSES) {
            this.set(
              { policy: `${p.metadata.namespace}/${p.metadata.name}`, type: condition.type, status },
              condition.status === status ? 1 : 0,
            );
          }
        }
      }
    },
  });
}
