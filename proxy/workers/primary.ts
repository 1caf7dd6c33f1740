// `--workers N` (N > 1): the primary process. It serves no request itself; it
// - forks N worker processes (node:cluster) that share the one listener, each running the proxy
//   as one process would (proxy/main.ts), worker i with the durable queue in `<queue.dir>/worker-i`;
// - holds the configuration: it validates the files, gives each worker the same validated version
//   at start, and on SIGHUP, a file change or a worker's POST /-/reload validates again and swaps
//   it in every worker before answering, so all workers run one configuration hash;
// - holds the limits shared by the workers when no `--limits.store` is given (proxy/workers/store.ts);
// - answers /metrics for the whole proxy: every worker's registry, merged with prom-client's
//   aggregation (counters and histograms summed; gauges as each declares), plus its own;
//   a restarted worker's counters continue from its predecessor's (proxy/workers/carry.ts);
// - answers the durable queue's routes for every worker's queue (proxy/workers/queues.ts);
// - merges the workers' statistics (top offenders, unused, usage; proxy/workers/stats.ts);
// - restarts a worker that dies, counting it in cardinal_proxy_worker_restarts_total;
// - on SIGTERM or SIGINT stops every worker (each drains as one process does, within
//   --shutdown-timeout) and exits when all have.
// Worker processes rather than threads: the RE2 addon does not load in worker threads.

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import {
  AggregatorRegistry,
  Counter,
  collectDefaultMetrics,
  Gauge,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import { watchConfig } from '../../lib/watch.js';
import type { ProxyOptions } from '../config/flags.js';
import { ConfigLoader, transferable, type ValidatedConfig } from '../config/loader.js';
import { MemoryLimitStore } from '../limits/store.js';
import { CounterCarry, pollCounters } from './carry.js';
import { serveQueues } from './queues.js';
import { askEveryWorker, Rpc } from './rpc.js';
import { servePrimaryStats } from './stats.js';
import { serveLimits } from './store.js';

/** Environment of a worker: its index (kept across restarts) and how many there are. */
export const WORKER_INDEX_ENV = 'CARDINAL_WORKER_INDEX';
export const WORKER_COUNT_ENV = 'CARDINAL_WORKER_COUNT';

/** What a worker is given by the primary to apply: a validated version, or why there is none. */
export type ApplyRequest =
  | { readonly validated: ValidatedConfig; readonly credentials: boolean }
  | { readonly error: string; readonly credentials: boolean };

/** What the primary answers a worker's reload: the hash in force, and the error if it was kept. */
export interface ReloadResult {
  readonly hash: string;
  readonly error: string | undefined;
}

type Json = MetricObjectWithValues<MetricValue<string>>[];

interface Slot {
  readonly index: number;
  worker: Worker;
  rpc: Rpc;
  ready: boolean;
}

/** A worker that exits sooner than this after it was ready is restarted only after a pause. */
const RESTART_PAUSE_MS = 1000;
/** How often the primary collects the workers' counters: a crash loses what was counted since. */
const COUNTER_POLL_MS = 5000;

export async function runPrimary(options: ProxyOptions, workers: number, logger: Logger): Promise<number> {
  let current: ValidatedConfig;
  // Keeps each file's check, so a reload parses only the files that changed (config/loader.ts).
  const loader = new ConfigLoader(options.configPath);
  try {
    current = transferable(loader.loadNow());
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    logger.fatal({ path: options.configPath }, `configuration rejected:\n${err.message}`);
    return 1;
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cardinal_proxy_primary_' });
  new Gauge({
    name: 'cardinal_proxy_workers',
    help: 'Worker processes the proxy runs (--workers).',
    registers: [registry],
    aggregator: 'max',
  }).set(workers);
  const restarts = new Counter({
    name: 'cardinal_proxy_worker_restarts_total',
    help: 'Worker processes that died and were started again.',
    registers: [registry],
  });
  restarts.inc(0);

  const limits = options.limitsStore === undefined ? new MemoryLimitStore(workers) : undefined;
  const slots = new Map<number, Slot>();
  const live = () => [...slots.values()].filter((s) => s.ready && s.worker.isConnected());
  // The statistics APIs and the top-offender gauges, merged over the workers (proxy/workers/stats.ts).
  const stats = servePrimaryStats({
    workers,
    live,
    registry,
    exposeTop: options.stats.exposeTop,
    usageGauges: options.query !== undefined,
  });
  let stopping = false;
  let failed = false;

  // Counters stay monotonic across a worker's restart (proxy/workers/carry.ts).
  const carry = new CounterCarry();
  const stopPolling = pollCounters({ carry, live, intervalMs: COUNTER_POLL_MS });

  // Whole-proxy /metrics: each live worker's registry as JSON, and the primary's own.
  // Besides the merge, each worker's count of answered requests, so an uneven spread shows.
  // Every index, running or not: a worker being started again contributes what it had counted.
  const workerParts = async (op: 'metrics.collect' | 'metrics.counters') =>
    (await askEveryWorker<Json>(workers, live(), op, undefined, 5000)).map((a) =>
      carry.part(a.worker, 'answer' in a ? a.answer : undefined),
    );
  // The counters of the pages (proxy/web/pages.ts): summed over the workers as /metrics sums them.
  // Every counter is collected (the carry keeps what it last saw of each), the named ones merged.
  const mergedCounters = async (names: readonly string[]): Promise<Json> => {
    const parts = await workerParts('metrics.counters');
    return (await AggregatorRegistry.aggregate(
      parts.map((p) => p.filter((m) => names.includes(m.name))),
    ).getMetricsAsJSON()) as Json;
  };
  const metricsText = async (): Promise<string> => {
    const parts = await workerParts('metrics.collect');
    const perWorker = parts.map((part, i) => ({
      labels: { worker: String(i) },
      value: (part.find((m) => m.name === 'cardinal_proxy_requests_total')?.values ?? []).reduce(
        (sum, v) => sum + v.value,
        0,
      ),
    }));
    parts.push([
      {
        name: 'cardinal_proxy_worker_requests_total',
        help: 'Ingest requests each worker answered (the sum of its cardinal_proxy_requests_total).',
        type: 'counter',
        values: perWorker,
        aggregator: 'sum',
      } as unknown as Json[number],
    ]);
    parts.push((await registry.getMetricsAsJSON()) as Json);
    return AggregatorRegistry.aggregate(parts).metrics();
  };

  // One reload at a time, each reading the files as they are when it starts.
  let reloads: Promise<ReloadResult> = Promise.resolve({ hash: current.config.hash, error: undefined });
  const reload = (credentials: boolean): Promise<ReloadResult> => {
    const run = async (): Promise<ReloadResult> => {
      let request: ApplyRequest;
      try {
        const next = await loader.load();
        current = next;
        request = { validated: next, credentials };
      } catch (err) {
        request = { error: err instanceof Error ? err.message : String(err), credentials };
      }
      // Every worker swaps before the answer, so a reload's answer holds for all of them.
      await Promise.all(
        [...slots.values()]
          .filter((s) => s.worker.isConnected())
          .map((s) =>
            s.rpc.call('config.apply', request, 60_000).catch((err: unknown) => {
              logger.warn({ worker: s.index, err }, 'a worker did not apply the configuration');
            }),
          ),
      );
      return { hash: current.config.hash, error: 'error' in request ? request.error : undefined };
    };
    reloads = reloads.then(run, run);
    return reloads;
  };

  cluster.setupPrimary({ serialization: 'advanced' });

  let firstReady: () => void;
  let firstFailed: () => void;
  const allReady = new Promise<boolean>((resolve) => {
    firstReady = () => resolve(true);
    firstFailed = () => resolve(false);
  });

  const fork = (index: number): void => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index), [WORKER_COUNT_ENV]: String(workers) });
    const rpc = new Rpc((m) => worker.send(m));
    const slot: Slot = { index, worker, rpc, ready: false };
    slots.set(index, slot);
    rpc.handle('config.get', () => current);
    rpc.handle('config.reload', (arg) => reload(arg === true));
    rpc.handle('metrics.text', () => metricsText());
    rpc.handle('metrics.counters.merged', (names) => mergedCounters(names as readonly string[]));
    serveQueues(rpc, { workers, live });
    rpc.handle('worker.ready', async () => {
      slot.ready = true;
      if ([...slots.values()].every((s) => s.ready)) firstReady();
      await allReady;
    });
    if (limits !== undefined) serveLimits(rpc, limits);
    stats.attach(rpc);
    worker.on('message', (m: unknown) => rpc.receive(m));
    worker.on('exit', (code, signal) => {
      rpc.close('the worker exited');
      carry.died(index);
      if (slots.get(index)?.worker === worker) slots.delete(index);
      if (stopping) {
        if (code !== 0) failed = true;
        if (slots.size === 0) finish();
        return;
      }
      if (!slot.ready) {
        // It never came up: the next would fail the same way (a port in use, a queue it cannot open).
        logger.fatal({ worker: index, code, signal }, 'a worker failed to start; stopping');
        failed = true;
        firstFailed();
        stop('SIGTERM');
        return;
      }
      restarts.inc();
      logger.error({ worker: index, code, signal }, 'a worker died; starting it again');
      setTimeout(() => {
        if (!stopping) fork(index);
      }, RESTART_PAUSE_MS).unref();
    });
  };
  for (let i = 0; i < workers; i++) fork(i);

  let finish: () => void = () => {};
  const done = new Promise<number>((resolve) => {
    finish = () => {
      watch?.close();
      stopPolling();
      void limits?.close();
      logger.info('stopped');
      resolve(failed ? 1 : 0);
    };
  });
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers: slots.size }, 'shutting down: stopping every worker');
    if (slots.size === 0) {
      finish();
      return;
    }
    for (const s of slots.values()) s.worker.process.kill('SIGTERM');
    // Each worker bounds its own drain by --shutdown-timeout; this is the backstop.
    setTimeout(() => {
      for (const s of slots.values()) s.worker.process.kill('SIGKILL');
    }, options.shutdownTimeoutMs + 5000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void reload(true));

  const watch =
    options.configPath === undefined
      ? undefined
      : watchConfig(options.configPath, () => void reload(false), {
          onError: (err: unknown) =>
            logger.warn({ err }, 'watching the configuration failed; SIGHUP and POST /-/reload still reload'),
        });

  if (await allReady) logger.info({ workers, hash: current.config.hash }, 'all workers started');
  return done;
}
