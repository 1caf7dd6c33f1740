// The operator's controller metrics under controller-runtime's names and labels
// (sigs.k8s.io/controller-runtime pkg/internal/controller/metrics and pkg/metrics/workqueue.go,
// which re-registers client-go's workqueue metrics), so that dashboards and alerts written for
// Go operators read this one as they are. The label `controller` (and the work queue's `name`)
// is the controller's name.
//
// The reconcile time is what a worker spends between taking a key from the queue and finishing
// it, which here is exactly one reconcileInstance: the workers do nothing else.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { QueueMetrics } from '../controller/queue.js';

/** The name controller-runtime would give the MetricPolicy controller (its Kind, lower-case). */
export const CONTROLLER_NAME = 'metricpolicy';

/** controller-runtime's buckets for controller_runtime_reconcile_time_seconds. */
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5,
  1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
/** client-go's buckets for the work queue latencies: prometheus.ExponentialBuckets(10e-9, 10, 12). */
const QUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => Number((1e-8 * 10 ** i).toPrecision(1)));

export interface RuntimeMetricsOptions {
  readonly registry: Registry;
  /** Keys waiting in the queue, read at scrape time. */
  readonly depth: () => number;
  /** The workers the controller runs (controller_runtime_max_concurrent_reconciles). */
  readonly workers: number;
  /** Milliseconds, monotonic; replaceable for tests. */
  readonly now?: () => number;
}

export interface RuntimeMetrics {
  /** Give to the WorkQueue (QueueOptions.metrics). */
  readonly queue: QueueMetrics<string>;
  /** One reconcile finished, with its result. */
  reconciled(result: 'success' | 'error'): void;
}

export function registerRuntimeMetrics(options: RuntimeMetricsOptions): RuntimeMetrics {
  const { registry, depth, workers } = options;
  const now = options.now ?? (() => performance.now());
  const controller = CONTROLLER_NAME;
  const c = { controller };
  const q = { controller, name: controller };
  const registers = [registry];

  const reconciles = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'],
    registers,
  });
  // controller-runtime's results; this controller never requeues from a reconcile.
  for (const result of ['success', 'error', 'requeue', 'requeue_after']) reconciles.inc({ ...c, result }, 0);
  const errors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'],
    registers,
  });
  errors.inc(c, 0);
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'],
    buckets: RECONCILE_BUCKETS,
    registers,
  });
  reconcileTime.zero(c);
  new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Maximum number of concurrent reconciles per controller',
    labelNames: ['controller'],
    registers,
  }).set(c, workers);

  /** When each key began waiting, and when each key being processed was handed to its worker. */
  const waitingSince = new Map<string, number>();
  const processingSince = new Map<string, number>();
  new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Number of currently used workers per controller',
    labelNames: ['controller'],
    registers,
    collect() {
      this.set(c, processingSince.size);
    },
  });
  new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue',
    labelNames: ['controller', 'name'],
    registers,
    collect() {
      this.set(q, depth());
    },
  });
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['controller', 'name'],
    registers,
  });
  adds.inc(q, 0);
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['controller', 'name'],
    registers,
  });
  retries.inc(q, 0);
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['controller', 'name'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  queueDuration.zero(q);
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['controller', 'name'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  workDuration.zero(q);
  new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help:
      'How many seconds of work has been done that is in progress and hasn\u2019t been observed by ' +
      'work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads ' +
      'by observing the rate at which this increases.',
    labelNames: ['controller', 'name'],
    registers,
    collect() {
      const t = now();
      let total = 0;
      for (const since of processingSince.values()) total += t - since;
      this.set(q, total / 1000);
    },
  });
  new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running.',
    labelNames: ['controller', 'name'],
    registers,
    collect() {
      const t = now();
      let longest = 0;
      for (const since of processingSince.values()) longest = Math.max(longest, t - since);
      this.set(q, longest / 1000);
    },
  });

  return {
    queue: {
      added(key) {
        adds.inc(q);
        if (!waitingSince.has(key)) waitingSince.set(key, now());
      },
      started(key) {
        const t = now();
        const since = waitingSince.get(key);
        if (since !== undefined) queueDuration.observe(q, (t - since) / 1000);
        waitingSince.delete(key);
        processingSince.set(key, t);
      },
      finished(key) {
        const since = processingSince.get(key);
        if (since === undefined) return;
        const seconds = (now() - since) / 1000;
        workDuration.observe(q, seconds);
        reconcileTime.observe(c, seconds);
        processingSince.delete(key);
      },
      retried() {
        retries.inc(q);
      },
    },
    reconciled(result) {
      reconciles.inc({ ...c, result });
      if (result === 'error') errors.inc(c);
    },
  };
}
