// The worker's end of `--workers N` (proxy/workers/primary.ts): who it is and its channel to the
// primary. A worker runs the proxy as one process would, with these differences, all in
// proxy/main.ts: its configuration comes from the primary; its reloads go through the primary;
// its limits are decided with the other workers' (the primary's store, or Redis); its durable
// queue is `<queue.dir>/worker-<index>`; /metrics answers for every worker.

import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Gauge, type Registry } from 'prom-client';
import { countersOf, type MetricsJson } from './carry.js';
import { readCpuQuota, workersFor } from './cgroup.js';
import { WORKER_COUNT_ENV, WORKER_INDEX_ENV } from './primary.js';
import { Rpc } from './rpc.js';

export interface WorkerContext {
  readonly index: number;
  readonly count: number;
  readonly rpc: Rpc;
}

/** --workers, or without it the CPU quota of the cgroup, rounded up, at most the CPU count. */
export function defaultWorkers(flag: number | undefined): number {
  if (flag !== undefined) return flag;
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  };
  return workersFor(readCpuQuota(read), availableParallelism());
}

/** This process's worker context when the primary forked it; undefined in a single process. */
export function joinPrimary(): WorkerContext | undefined {
  if (!cluster.isWorker) return undefined;
  const index = Number(process.env[WORKER_INDEX_ENV] ?? '0');
  const count = Number(process.env[WORKER_COUNT_ENV] ?? '1');
  const rpc = new Rpc((m) => process.send?.(m));
  process.on('message', (m: unknown) => rpc.receive(m));
  process.on('disconnect', () => rpc.close('the primary is gone'));
  return { index, count, rpc };
}

/**
 * The worker's share of what /metrics reports: its registry as JSON, and its resident memory; and
 * its counters alone, which the primary collects every few seconds (proxy/workers/carry.ts).
 */
export function serveMetrics(ctx: WorkerContext, registry: Registry): void {
  new Gauge({
    name: 'cardinal_proxy_worker_resident_memory_bytes',
    help: 'Resident memory of each worker process (--workers).',
    labelNames: ['worker'],
    registers: [registry],
    collect() {
      this.set({ worker: String(ctx.index) }, process.memoryUsage.rss());
    },
  });
  ctx.rpc.handle('metrics.collect', () => registry.getMetricsAsJSON());
  // The primary's periodic collection, so a restarted worker's counters go on from these.
  ctx.rpc.handle('metrics.counters', () => countersOf(registry));
}

/**
 * Counters by name for the whole proxy, as the merged /metrics counts them (the pages' counters):
 * asked of the primary, or this worker's own when it does not answer.
 */
export function wholeProxyCounters(
  ctx: WorkerContext,
  registry: Registry,
): (names: readonly string[]) => Promise<MetricsJson> {
  return (names) =>
    ctx.rpc
      .call<MetricsJson>('metrics.counters.merged', names, 10_000)
      .catch(() => countersOf(registry, names));
}
