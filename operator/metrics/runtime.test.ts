import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { WorkQueue } from '../controller/queue.js';
import { CONTROLLER_NAME, registerRuntimeMetrics } from './runtime.js';

/** The value of `name`'s series whose labels include `labels`; histograms by their _count/_sum. */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = name.replace(/_(count|sum|bucket)$/, '');
  const metric = await registry.getSingleMetric(base)?.get();
  if (metric === undefined) throw new Error(`${name} is not registered`);
  const series = metric.values.filter(
    (v) =>
      ((v as { metricName?: string }).metricName ?? metric.name) === name &&
      Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l),
  );
  if (series.length !== 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${series.length} series`);
  return series[0]!.value;
}

function setup() {
  const registry = new Registry();
  let t = 0;
  const clock = { advance: (ms: number) => (t += ms) };
  let queue: WorkQueue<string> | undefined;
  const metrics = registerRuntimeMetrics({
    registry,
    depth: () => queue?.length ?? 0,
    workers: 3,
    now: () => t,
  });
  queue = new WorkQueue<string>({ metrics: metrics.queue, baseDelayMs: 1_000_000 });
  return { registry, queue, metrics, clock };
}

const q = { controller: CONTROLLER_NAME, name: CONTROLLER_NAME };

describe('controller-runtime metrics', () => {
  it('counts adds once per key waiting, as client-go does, and reports the depth', async () => {
    const { registry, queue } = setup();
    queue.add('a');
    queue.add('a');
    queue.add('b');
    expect(await value(registry, 'workqueue_adds_total', q)).toBe(2);
    expect(await value(registry, 'workqueue_depth', q)).toBe(2);
    const key = await queue.get();
    expect(await value(registry, 'workqueue_depth', q)).toBe(1);
    // Added while processed: counted now, queued again by done(), not counted twice.
    queue.add(key!);
    queue.done(key!);
    expect(await value(registry, 'workqueue_adds_total', q)).toBe(3);
    expect(await value(registry, 'workqueue_depth', q)).toBe(2);
  });

  it('observes the time waiting and the time working, and the work in progress', async () => {
    const { registry, queue, clock } = setup();
    queue.add('a');
    clock.advance(250);
    await queue.get();
    expect(await value(registry, 'workqueue_queue_duration_seconds_sum', q)).toBeCloseTo(0.25);
    expect(await value(registry, 'controller_runtime_active_workers', { controller: CONTROLLER_NAME })).toBe(
      1,
    );
    clock.advance(2_000);
    expect(await value(registry, 'workqueue_unfinished_work_seconds', q)).toBeCloseTo(2);
    expect(await value(registry, 'workqueue_longest_running_processor_seconds', q)).toBeCloseTo(2);
    queue.done('a');
    expect(await value(registry, 'workqueue_work_duration_seconds_sum', q)).toBeCloseTo(2);
    expect(await value(registry, 'workqueue_work_duration_seconds_count', q)).toBe(1);
    const c = { controller: CONTROLLER_NAME };
    expect(await value(registry, 'controller_runtime_reconcile_time_seconds_count', c)).toBe(1);
    expect(
      await value(registry, 'controller_runtime_reconcile_time_seconds_bucket', { ...c, le: '2.5' }),
    ).toBe(1);
    expect(
      await value(registry, 'controller_runtime_reconcile_time_seconds_bucket', { ...c, le: '1.75' }),
    ).toBe(0);
    expect(await value(registry, 'workqueue_unfinished_work_seconds', q)).toBe(0);
    expect(await value(registry, 'controller_runtime_active_workers', c)).toBe(0);
  });

  it('counts retries and reconcile results under controller-runtime\u2019s labels', async () => {
    const { registry, queue, metrics } = setup();
    queue.addRateLimited('a');
    queue.addRateLimited('a');
    expect(await value(registry, 'workqueue_retries_total', q)).toBe(2);
    metrics.reconciled('success');
    metrics.reconciled('error');
    metrics.reconciled('error');
    const c = { controller: CONTROLLER_NAME };
    expect(await value(registry, 'controller_runtime_reconcile_total', { ...c, result: 'success' })).toBe(1);
    expect(await value(registry, 'controller_runtime_reconcile_total', { ...c, result: 'error' })).toBe(2);
    expect(await value(registry, 'controller_runtime_reconcile_total', { ...c, result: 'requeue' })).toBe(0);
    expect(await value(registry, 'controller_runtime_reconcile_errors_total', c)).toBe(2);
    expect(await value(registry, 'controller_runtime_max_concurrent_reconciles', c)).toBe(3);
    await queue.shutDown();
  });

  it('uses client-go\u2019s queue latency buckets, 10 ns to 1000 s', async () => {
    const { registry } = setup();
    const text = await registry.metrics();
    const les = [...text.matchAll(/^workqueue_queue_duration_seconds_bucket\{le="([^"]+)"/gm)].map(
      (m) => m[1],
    );
    expect(les).toEqual([
      '1e-8',
      '1e-7',
      '0.000001',
      '0.00001',
      '0.0001',
      '0.001',
      '0.01',
      '0.1',
      '1',
      '10',
      '100',
      '1000',
      '+Inf',
    ]);
  });
});
