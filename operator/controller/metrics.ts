import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { MetricPolicy } from '../api/types.js';
import { registerConditionMetrics } from '../metrics/conditions.js';
import { registerRuntimeMetrics } from '../metrics/runtime.js';
import type { PolicyEvent } from '../status/events.js';
import type { QueueMetrics } from './queue.js';

/** The operator's own metrics; every label has a small, fixed set of values. */
export interface OperatorMetrics {
  readonly registry: Registry;
  /** For the WorkQueue: workqueue_* under client-go's names (operator/metrics/runtime.ts). */
  readonly queue: QueueMetrics<string>;
  reconciled(result: 'success' | 'error'): void;
  configMapApply(outcome: 'written' | 'skipped'): void;
  /** `change`: the first field the write changed (statusChange). */
  statusWrites(count: number, change?: string): void;
  events(reason: PolicyEvent['reason']): void;
  /** A write the API server refused with 429 (priority and fairness); it is retried. */
  throttled(verb: string, resource: string): void;
  /** Whether this replica holds the Lease and reconciles. */
  leader(leading: boolean): void;
}

export interface OperatorMetricsOptions {
  /** The controller's workers; default 2, the controller's default. */
  readonly workers?: number;
  /** The policies whose conditions are exported, read at scrape time: none unless given. */
  readonly policies?: () => readonly MetricPolicy[];
}

/** `queueDepth` is read at scrape time. */
export function createOperatorMetrics(
  version: string,
  queueDepth: () => number,
  options: OperatorMetricsOptions = {},
): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const runtime = registerRuntimeMetrics({ registry, depth: queueDepth, workers: options.workers ?? 2 });
  registerConditionMetrics({ registry, policies: options.policies ?? (() => []) });
  new Gauge({
    name: 'cardinal_operator_build_info',
    help: 'Always 1; the version label names the running operator.',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version }, 1);
  const reconciles = new Counter({
    name: 'cardinal_operator_reconciles_total',
    help: 'Reconciles of a proxy instance, by result.',
    labelNames: ['result'],
    registers: [registry],
  });
  const applies = new Counter({
    name: 'cardinal_operator_configmap_applies_total',
    help: 'ConfigMap applies a reconcile made (written) or skipped because the live one was up to date (skipped).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const statuses = new Counter({
    name: 'cardinal_operator_status_writes_total',
    help: 'MetricPolicy status writes, by the first field each changed (created: the first status).',
    labelNames: ['change'],
    registers: [registry],
  });
  const events = new Counter({
    name: 'cardinal_operator_events_total',
    help: 'Kubernetes Events recorded on MetricPolicies, by reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const throttled = new Counter({
    name: 'cardinal_operator_api_throttled_total',
    help: 'Writes the API server refused with 429 Too Many Requests (priority and fairness), each retried after its Retry-After, by verb and resource.',
    labelNames: ['verb', 'resource'],
    registers: [registry],
  });
  new Gauge({
    name: 'cardinal_operator_queue_depth',
    help: 'Proxy instances waiting to be reconciled.',
    registers: [registry],
    collect() {
      this.set(queueDepth());
    },
  });
  for (const result of ['success', 'error']) reconciles.inc({ result }, 0);
  for (const outcome of ['written', 'skipped']) applies.inc({ outcome }, 0);
  for (const reason of ['Accepted', 'Rejected', 'Degraded', 'ConfigTooLarge']) events.inc({ reason }, 0);
  const leader = new Gauge({
    name: 'cardinal_operator_leader',
    help: '1 while this replica holds the Lease and reconciles, 0 while it stands by.',
    registers: [registry],
  });
  return {
    registry,
    queue: runtime.queue,
    leader: (leading) => leader.set(leading ? 1 : 0),
    reconciled: (result) => {
      reconciles.inc({ result });
      runtime.reconciled(result);
    },
    configMapApply: (outcome) => applies.inc({ outcome }),
    statusWrites: (count, change = 'other') => statuses.inc({ change }, count),
    events: (reason) => events.inc({ reason }),
    throttled: (verb, resource) => throttled.inc({ verb, resource }),
  };
}
