#!/usr/bin/env node
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadTlsPair, type TlsPair, watchTlsPair } from '../lib/tls.js';
import { readVersion } from '../lib/version.js';
import { watchConfig } from '../lib/watch.js';
import type { LoadedConfig } from '../policy/load.js';
import { readReplicas } from '../policy/replicas.js';
import { createAuthMetrics } from './auth/metrics.js';
import { REDACT } from './auth/redact.js';
import { CredentialStore } from './auth/store.js';
import { parseProxyOptions, shortUsage, UsageError, usage } from './config/flags.js';
import { ConfigLoader, type ValidatedConfig } from './config/loader.js';
import { type PolicySummary, summarizePolicies } from './config/summary.js';
import { Forwarder } from './forward/client.js';
import { PushForwarder } from './forward/pushgateway.js';
import { parseRetryOn } from './forward/retry.js';
import { tuneGarbageCollection } from './gc.js';
import { RedisLimitStore } from './limits/redis.js';
import type { LimitStore, ReplicaCount } from './limits/store.js';
import { createLogger } from './logging.js';
import { compilePipeline, type Pipeline } from './pipeline/compile.js';
import { PolicyEngine } from './pipeline/engine.js';
import { openStagePlugins, type StagePlugins } from './pipeline/plugins/load.js';
import { ReadUpstream } from './query/http.js';
import { UpstreamNames, unionKnown } from './query/known-names.js';
import { createQueryMetrics, recorderGauges } from './query/metrics.js';
import { orphanedStateFiles, type UsageQuery, UsageService } from './query/usage.js';
import { DeadLetters, describeLetter } from './queue/dead-letter.js';
import { Drain } from './queue/drain.js';
import { createQueueMetrics, type QueueMetrics, type QueueName } from './queue/metrics.js';
import { PushDrain } from './queue/push.js';
import { DiskQueue } from './queue/queue.js';
import { orphanedDirs, takeOverOrphans } from './queue/takeover.js';
import { DropTally } from './queue/tally.js';
import { buildServer, type ConfigStatus } from './server.js';
import { LIMITS_PER_POLICY, limitsReport } from './stats/limits.js';
import { createProxyMetrics } from './stats/metrics.js';
import { Offenders } from './stats/offenders.js';
import { PolicyStats } from './stats/policy-stats.js';
import { UnusedStats } from './stats/unused.js';
import { History } from './web/history.js';
import { policyTotals } from './web/pages.js';
import { type ApplyRequest, type ReloadResult, runPrimary } from './workers/primary.js';
import { type QueueApi, wholeProxyQueueApi } from './workers/queues.js';
import { serveStatsParts, wholeProxyStats } from './workers/stats.js';
import { WorkerLimitStore } from './workers/store.js';
import { defaultWorkers, joinPrimary, serveMetrics, wholeProxyCounters } from './workers/worker.js';

async function main(): Promise<number> {
  tuneGarbageCollection(process.execArgv);
  let options: ReturnType<typeof parseProxyOptions>;
  try {
    options = parseProxyOptions(process.argv.slice(2), process.env, { terminal: process.stdout.isTTY });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`cardinal-proxy: ${err.message}\n${shortUsage}`);
      return 2;
    }
    throw err;
  }
  if (options === 'help') {
    process.stdout.write(usage);
    return 0;
  }
  const version = readVersion();
  if (options === 'version') {
    process.stdout.write(`cardinal-proxy ${version} (node ${process.version})\n`);
    return 0;
  }

  // --workers N: this process is the primary of N workers (proxy/workers/primary.ts), or one of
  // them, or with N = 1 the whole proxy.
  const worker = joinPrimary();
  const logger = createLogger(options.logFormat, {
    level: options.logLevel,
    base: { component: 'proxy', ...(worker === undefined ? {} : { worker: worker.index }) },
    redact: REDACT,
  });
  if (worker === undefined) {
    const workers = defaultWorkers(options.workers);
    if (workers > 1) return runPrimary(options, workers, logger);
  }
  const metrics = createProxyMetrics(version);
  if (worker !== undefined) serveMetrics(worker, metrics.registry);

  // Stage plugins (--stage.plugin) load once, at start-up; policies name them in spec.stages.
  let plugins: StagePlugins | undefined;
  try {
    plugins = await openStagePlugins(options.stagePlugins, {
      timeoutMs: options.stagePluginTimeoutMs,
      registry: metrics.registry,
      log: (stage, kind, err, suppressed) =>
        logger.error(
          { stage, kind, suppressed, err: kind === 'error' ? err : undefined },
          kind === 'timeout'
            ? 'stage plugins ran out of their time budget; the rest of the request ran without them'
            : 'a stage plugin threw; the series went on as the stages before it left them',
        ),
    });
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    logger.fatal(err.message);
    return 1;
  }
  if (plugins !== undefined) logger.info({ stages: [...plugins.byName.keys()] }, 'stage plugins loaded');

  // A configuration version is loaded, validated completely and compiled before it is used.
  // The loader keeps each file's check, so a reload parses only the files that changed.
  const loader = new ConfigLoader(options.configPath);
  // A worker runs the version the primary validated, the one every worker runs.
  const load = async (): Promise<{
    config: LoadedConfig;
    fileHashes: Readonly<Record<string, string>>;
    pipeline: Pipeline;
    summary: PolicySummary[];
  }> => {
    const v =
      worker === undefined
        ? loader.loadNow()
        : await worker.rpc.call<ValidatedConfig>('config.get', undefined, 60_000);
    return {
      config: v.config,
      fileHashes: v.fileHashes,
      pipeline: compilePipeline(v.policies, v.usage, plugins),
      summary: summarizePolicies(v.policies),
    };
  };
  let config: LoadedConfig;
  let fileHashes: Readonly<Record<string, string>>;
  let pipeline: Pipeline;
  let summary: PolicySummary[];
  try {
    ({ config, fileHashes, pipeline, summary } = await load());
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    logger.fatal({ path: options.configPath }, `configuration rejected:\n${err.message}`);
    return 1;
  }
  // Credentials are loaded, validated and reloaded on their own: a bad Secret keeps the running
  // credentials without holding back a policy change, and the other way round.
  const authMetrics = createAuthMetrics(metrics.registry);
  let credentials: CredentialStore | undefined;
  if (options.auth.credentialsPath !== undefined) {
    try {
      credentials = new CredentialStore(options.auth.credentialsPath, { metrics: authMetrics, logger });
    } catch (err) {
      logger.fatal({ path: options.auth.credentialsPath }, (err as Error).message);
      return 1;
    }
  }
  const policyStats = new PolicyStats(metrics.registry);
  policyStats.setPipeline(pipeline);
  // The replica count of the fallback share: the operator's, rendered next to the policies, read
  // again at every reload; `--limits.replicas` without it.
  let replicas: ReplicaCount = { count: options.limitsReplicas, source: 'flag' };
  const readReplicaCount = (): void => {
    const read = readReplicas(options.configPath);
    if (read.kind === 'invalid') {
      logger.warn({ file: read.file }, `ignoring the replica count: ${read.message}`);
      return;
    }
    const next: ReplicaCount =
      read.kind === 'count'
        ? { count: read.count, source: 'operator' }
        : { count: options.limitsReplicas, source: 'flag' };
    if (next.count !== replicas.count || next.source !== replicas.source) {
      if (options.limitsStore !== undefined)
        logger.info({ replicas: next.count, from: next.source }, 'replicas sharing the limits');
      replicas = next;
    }
  };
  readReplicaCount();
  // The workers of one proxy share its limits like replicas: each falls back to limit / (replicas × workers).
  const workerCount = worker?.count ?? 1;
  let limitStore: LimitStore | undefined;
  let redisStore: RedisLimitStore | undefined;
  if (options.limitsStore === undefined && worker !== undefined) {
    limitStore = new WorkerLimitStore({
      rpc: worker.rpc,
      timeoutMs: 2000,
      flushIntervalMs: 1000,
      maxPendingTouches: options.engine.maxTrackedSeries,
      replicas: () => replicas.count * workerCount,
      registry: metrics.registry,
    });
  }
  if (options.limitsStore !== undefined) {
    const ls = options.limitsStore;
    let password: string | undefined;
    try {
      password = ls.passwordFile === undefined ? undefined : readFileSync(ls.passwordFile, 'utf8').trim();
    } catch (err) {
      logger.fatal(
        { path: ls.passwordFile },
        `reading the limit store's password failed: ${(err as Error).message}`,
      );
      return 1;
    }
    redisStore = new RedisLimitStore({
      url: ls.url,
      password,
      prefix: ls.prefix,
      timeoutMs: ls.timeoutMs,
      connectTimeoutMs: ls.connectTimeoutMs,
      retryIntervalMs: ls.retryIntervalMs,
      flushIntervalMs: ls.flushIntervalMs,
      maxPendingTouches: options.engine.maxTrackedSeries,
      replicas: () => ({ ...replicas, count: replicas.count * workerCount }),
      registry: metrics.registry,
      logger,
    });
    limitStore = redisStore;
  }
  const engine = new PolicyEngine(
    pipeline,
    { ...options.engine, replicaLabel: { name: options.replica.label, value: options.replica.name } },
    policyStats,
    limitStore === undefined
      ? undefined
      : {
          store: limitStore,
          get replicas() {
            return replicas.count * workerCount;
          },
        },
  );
  const offenders = new Offenders(engine, options.stats);
  // A worker's gauges come from the primary's merge of every worker's counts.
  if (worker === undefined) offenders.register(metrics.registry);
  const unused = new UnusedStats(engine.interner, pipeline, options.stats);
  policyStats.observe({
    slot: offenders.hooks.slot,
    forwarded: offenders.hooks.forwarded,
    newSeries: (metric, labels, nowMs) => offenders.newSeries(metric, labels, nowMs),
    ...unused.hooks,
  });
  metrics.configReload(true, config.hash);
  const status: ConfigStatus = {
    hash: config.hash,
    loadedAt: new Date(),
    files: config.files,
    fileHashes,
    policies: config.policies.length,
    policyDetails: summary,
    lastError: undefined,
  };

  // SIGHUP and POST /-/reload reload both the credentials and the policies.
  // In a worker both go through the primary, which swaps every worker (config.apply below).
  const reload = async (): Promise<ConfigStatus> => {
    if (worker !== undefined) return reloadThroughPrimary(true);
    credentials?.reload();
    return reloadPolicies();
  };
  const reloadThroughPrimary = async (withCredentials: boolean): Promise<ConfigStatus> => {
    await worker!.rpc.call<ReloadResult>('config.reload', withCredentials, 120_000);
    return status;
  };
  // Validates the new configuration completely before it replaces the old one; a failed load
  // leaves the running configuration in force and says why.
  // Reloads run one after another, each reading the files as they are when it starts, so a slow
  // load can never replace a newer one.
  let reloads: Promise<unknown> = Promise.resolve();
  const reloadPolicies = (given?: ApplyRequest): Promise<ConfigStatus> => {
    const run = () => reloadPoliciesNow(given);
    const next = reloads.then(run, run);
    reloads = next;
    return next;
  };
  const reloadPoliciesNow = async (given?: ApplyRequest): Promise<ConfigStatus> => {
    // Whatever the policies' fate: the count is not part of them.
    readReplicaCount();
    try {
      // Read and validated off the event loop (a worker is given what the primary validated);
      // only an actual change is compiled here.
      if (given !== undefined && 'error' in given) throw new Error(given.error);
      const validated = given?.validated ?? (await loader.load());
      const next = validated.config;
      if (next.hash !== status.hash) {
        const nextPipeline = compilePipeline(validated.policies, validated.usage, plugins);
        logger.info(
          { hash: next.hash, policies: next.policies.length, ...(given === undefined ? loader.stats : {}) },
          'configuration loaded',
        );
        // Node runs one request's synchronous pipeline at a time, so swapping here is atomic
        // between requests: each request runs wholly on the old or wholly on the new version.
        policyStats.setPipeline(nextPipeline);
        engine.setPipeline(nextPipeline);
        offenders.setPipeline(nextPipeline);
        unused.setPipeline(nextPipeline);
      }
      config = next;
      Object.assign(status, {
        hash: next.hash,
        loadedAt: new Date(),
        files: next.files,
        fileHashes: validated.fileHashes,
        policies: next.policies.length,
        policyDetails: summarizePolicies(validated.policies),
        lastError: undefined,
      });
      metrics.configReload(true, next.hash);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      logger.error(
        { path: options.configPath },
        `configuration rejected, keeping ${status.hash.slice(0, 12)}: ${message}`,
      );
      status.lastError = { message, at: new Date() };
      metrics.configReload(false, status.hash);
    }
    return status;
  };
  worker?.rpc.handle('config.apply', async (arg) => {
    const request = arg as ApplyRequest;
    if (request.credentials) credentials?.reload();
    const s = await reloadPolicies(request);
    return s.hash;
  });

  const forwarder = new Forwarder({
    url: options.upstreamUrl,
    retry: options.retry,
    attemptTimeoutMs: options.attemptTimeoutMs,
    connections: options.upstreamConnections,
    bearerTokenFile: options.upstreamBearerTokenFile,
    userAgent: `cardinal-proxy/${version}`,
    metrics,
  });

  const pushForwarder =
    options.push.url === undefined
      ? undefined
      : new PushForwarder({
          url: options.push.url,
          retry: options.retry,
          attemptTimeoutMs: options.attemptTimeoutMs,
          connections: 8,
          userAgent: `cardinal-proxy/${version}`,
          metrics,
        });
  let tls: TlsPair | undefined;
  if (options.tls !== undefined) {
    try {
      tls = loadTlsPair(options.tls);
    } catch (err) {
      logger.fatal((err as Error).message);
      return 1;
    }
  }
  // The durable queues: opened (and recovered) before the server accepts anything; one for the
  // remote-write upstream in --queue.dir, one for the Pushgateway in its `pushgateway` directory.
  let queue: DiskQueue | undefined;
  let drain: Drain | undefined;
  let pushQueue: DiskQueue | undefined;
  let pushDrain: PushDrain | undefined;
  let deadLetters: DeadLetters | undefined;
  let rwTarget: { queueMetrics: QueueMetrics; tally: DropTally } | undefined;
  let pushTarget: { queueMetrics: QueueMetrics; tally: DropTally } | undefined;
  let takeover: Promise<void> | undefined;
  const stopTakeover = new AbortController();
  const tallies = new Map<QueueName, DropTally>();
  if (options.queue !== undefined) {
    const q = options.queue;
    // One queue per worker, each owned by one process, found again by the worker of that index.
    const queueDir = worker === undefined ? q.dir : join(q.dir, `worker-${worker.index}`);
    const queueMetricsFor = createQueueMetrics(metrics.registry);
    const openQueue = async (name: QueueName, dir: string) => {
      await mkdir(dir, { recursive: true });
      // Drops are tallied in the queue directory, so their counters survive restarts.
      const tally = new DropTally(dir, logger);
      tallies.set(name, tally);
      const named = queueMetricsFor(name);
      const queueMetrics = tally.wrap(named);
      const opened = await DiskQueue.open({
        dir,
        maxBytes: q.maxBytes,
        segmentMaxBytes: q.segmentMaxBytes,
        fullPolicy: q.fullPolicy,
        fullCode: q.fullStatus === 429 ? 'QUEUE_FULL' : 'QUEUE_FULL_UNAVAILABLE',
        metrics: queueMetrics,
        logger,
      });
      named.observe(() => opened.gauges());
      return { opened, queueMetrics, tally };
    };
    try {
      const rw = await openQueue('remote_write', queueDir);
      rwTarget = rw;
      queue = rw.opened;
      deadLetters = await DeadLetters.open({
        dir: join(queueDir, 'dead-letter'),
        maxBytes: q.deadLetterMaxBytes,
        metrics: rw.queueMetrics,
        logger,
      });
      drain = new Drain({
        queue,
        forwarder,
        batch: { maxSamples: q.batchMaxSamples, maxBytes: q.batchMaxBytes, maxWaitMs: q.batchMaxWaitMs },
        retry: options.retry,
        retryable: parseRetryOn(q.retryOn),
        metrics: rw.queueMetrics,
        logger,
        deadLetters,
        maxRetryAgeMs: q.maxRetryAgeMs,
        maxRetryAttempts: q.maxRetryAttempts,
      });
      if (pushForwarder !== undefined) {
        const push = await openQueue('pushgateway', join(queueDir, 'pushgateway'));
        pushTarget = push;
        pushQueue = push.opened;
        pushDrain = new PushDrain({
          queue: pushQueue,
          forwarder: pushForwarder,
          metrics: push.queueMetrics,
          logger,
          retry: options.retry,
        });
      }
    } catch (err) {
      logger.fatal({ dir: queueDir }, `opening the queue failed: ${(err as Error).message}`);
      return 1;
    }
    drain.start();
    pushDrain?.start();
    // Directories left by a larger (or smaller) number of workers: moved into this queue
    // (proxy/queue/takeover.ts), in the background, stopped at shutdown.
    const orphans = orphanedDirs(await readdir(q.dir), worker);
    if (orphans.length > 0) {
      logger.info(
        { dirs: orphans.map((d) => join(q.dir, d)) },
        'taking over queue directories no process owns',
      );
      takeover = takeOverOrphans({
        root: q.dir,
        orphans,
        remoteWrite: { queue, metrics: rwTarget!.queueMetrics, tally: rwTarget!.tally, deadLetters },
        pushgateway:
          pushQueue === undefined || pushTarget === undefined
            ? undefined
            : { queue: pushQueue, metrics: pushTarget.queueMetrics, tally: pushTarget.tally },
        segmentMaxBytes: q.segmentMaxBytes,
        logger,
        signal: stopTakeover.signal,
      }).then(
        () => undefined,
        (err: unknown) =>
          logger.error({ err }, 'taking over a queue directory failed; it stays for the next start'),
      );
    }
  }
  const asIngestQueue = (dq: DiskQueue | undefined) =>
    dq === undefined || options.queue === undefined
      ? undefined
      : { append: dq.append.bind(dq), retryAfterSeconds: options.queue.fullRetryAfterSeconds };
  const ingestQueue = asIngestQueue(queue);
  const queueStatus = (name: QueueName, dq: DiskQueue | undefined) => {
    if (dq === undefined) return undefined;
    const dropped = tallies.get(name)?.counts ?? {};
    const letters = name === 'remote_write' ? deadLetters?.list() : undefined;
    return {
      ...dq.gauges(),
      // Kept in the queue directory: these do not reset on restart.
      dropped,
      outOfOrder: dropped.out_of_order ?? { records: 0, samples: 0 },
      deadLetters:
        letters === undefined
          ? null
          : {
              count: letters.length,
              bytes: deadLetters?.bytes ?? 0,
              retrying: letters.filter((l) => l.state.status === 'retrying').length,
              dead: letters.filter((l) => l.state.status === 'dead').length,
            },
    };
  };
  const localQueueApi: QueueApi | undefined =
    queue === undefined || deadLetters === undefined
      ? undefined
      : {
          status: () => ({
            queues: {
              remote_write: queueStatus('remote_write', queue)!,
              ...(pushQueue === undefined ? {} : { pushgateway: queueStatus('pushgateway', pushQueue)! }),
            },
          }),
          deadLetters: () => ({ deadLetters: (deadLetters?.list() ?? []).map(describeLetter) }),
          // Back into the queue, in their order, as new records; each leaves the dead letters
          // once it is durably queued again.
          requeue: async (ids: readonly number[] | 'all') => {
            const dl = deadLetters!;
            const chosen = ids === 'all' ? dl.list() : ids.flatMap((id) => dl.get(id) ?? []);
            for (const l of chosen) {
              await queue!.append({ ...l.entry, enqueuedAtMs: Date.now() });
              await dl.remove(l.id);
            }
            logger.info({ requeued: chosen.length }, 'dead letters put back into the queue');
            return chosen.length;
          },
        };
  // A worker's routes answer for every worker's queue (proxy/workers/queues.ts).
  const queueApi =
    localQueueApi === undefined || worker === undefined
      ? localQueueApi
      : wholeProxyQueueApi(worker, localQueueApi);

  // The read path and usage statistics (--query.upstream, --query.log-file).
  const q = options.query;
  const readUpstream =
    q?.upstream === undefined ? undefined : new ReadUpstream(q.upstream, q.connections, q.timeoutMs);
  const upstreamNames =
    readUpstream === undefined || q === undefined
      ? undefined
      : new UpstreamNames({
          upstream: readUpstream,
          refreshMs: q.namesRefreshMs,
          timeoutMs: q.timeoutMs,
          maxBytes: 64 << 20,
          logger,
        });
  let usageOrNone: UsageService | undefined;
  if (q !== undefined) {
    // Read counts of workers that no longer run (N was lowered, or one process runs now).
    const takeOverStates =
      q.stateFile === undefined
        ? []
        : orphanedStateFiles(
            q.stateFile,
            await readdir(dirname(q.stateFile)).catch(() => []),
            worker === undefined ? undefined : { index: worker.index, count: worker.count },
          );
    const names = upstreamNames;
    const known = unionKnown([
      offenders.knownNames(),
      { generation: () => names?.generation ?? 0, names: () => names?.names ?? [] },
    ]);
    try {
      usageOrNone = new UsageService({
        recorder: {
          maxMetrics: q.maxMetrics,
          maxReaders: q.maxReaders,
          readersPerMetric: q.readersPerMetric,
        },
        // Each worker keeps its own read counts; the query log is tailed by worker 0 alone.
        stateFile:
          worker === undefined || q.stateFile === undefined
            ? q.stateFile
            : `${q.stateFile}.worker-${worker.index}`,
        takeOver: takeOverStates,
        saveIntervalMs: q.saveIntervalMs,
        queryLog:
          q.logFile === undefined || (worker?.index ?? 0) !== 0
            ? undefined
            : { path: q.logFile, pollMs: q.logPollMs },
        known,
        upstreamNamesKnown: () => names?.fetched ?? false,
        logger,
      });
    } catch (err) {
      logger.fatal({ path: q.stateFile }, `reading the usage state failed: ${(err as Error).message}`);
      return 1;
    }
  }
  const usageService = usageOrNone;
  const queryMetrics =
    usageService === undefined
      ? undefined
      : createQueryMetrics(
          metrics.registry,
          // A worker's gauges come from the primary's merge of every worker's reads.
          worker === undefined ? recorderGauges(() => usageService.recorder) : undefined,
          options.stats.exposeTop,
        );
  // The statistics reports: this process's own, or with --workers N the whole proxy's, which the
  // primary merges from every worker's part.
  const usageReport =
    usageService === undefined
      ? undefined
      : (query: UsageQuery) =>
          usageService.report(
            query,
            { lookup: offenders.ingest(Date.now()), largest: (n) => offenders.largest(n) },
            readUpstream !== undefined,
          );
  const own = {
    topOffenders: (limit: number) => offenders.report(limit),
    unused: (limit: number) => unused.report(limit),
    usage: usageReport,
    limits: (perPolicy: number) => limitsReport(engine, Date.now(), perPolicy),
  };
  if (worker !== undefined) {
    serveStatsParts(worker, {
      offenders,
      unused,
      limits: own.limits,
      usage:
        usageService === undefined
          ? undefined
          : { service: usageService, readPath: readUpstream !== undefined },
    });
  }
  const reports = worker === undefined ? own : wholeProxyStats(worker, own);

  // What the pages show over time, sampled from the side; in every worker at the same wall-clock
  // times, so that their samples share one merge.
  const history = new History({
    intervalMs: options.stats.sampleIntervalMs,
    windowMs: options.stats.windowMs,
    topMetrics: 20,
  });
  // The pages' counters: with --workers N every worker's, summed as /metrics sums them.
  const counters = worker === undefined ? undefined : wholeProxyCounters(worker, metrics.registry);
  const sampleHistory = async () => {
    const at = Date.now();
    const [totals, top] = await Promise.all([policyTotals({ counters, metrics }), reports.topOffenders(20)]);
    history.record(at, totals, top);
  };
  let historyTimer: NodeJS.Timeout | undefined;
  const startHistory = (): void => {
    void sampleHistory();
    historyTimer = setInterval(() => void sampleHistory(), history.options.intervalMs);
    historyTimer.unref();
  };
  if (worker === undefined) startHistory();
  else {
    historyTimer = setTimeout(
      startHistory,
      history.options.intervalMs - (Date.now() % history.options.intervalMs),
    );
    historyTimer.unref();
  }

  let ready = false;
  const app = buildServer({
    logger,
    metrics,
    forwarder,
    maxRequestBytes: options.maxRequestBytes,
    maxDecodedBytes: options.maxDecodedBytes,
    maxInflightRequests: options.maxInflightRequests,
    maxInflightBytes: options.maxInflightBytes,
    upstreamProtocol: options.upstreamProtocol,
    engine,
    policyStats,
    topOffenders: reports.topOffenders,
    limits: () => reports.limits(LIMITS_PER_POLICY),
    unused: reports.unused,
    reportDroppedAsWritten: options.reportDroppedAsWritten,
    queue: ingestQueue,
    checks: options.ingest,
    queueApi,
    configStatus: () => status,
    // A full queue in reject mode refuses everything; readiness says so, so that a load balancer
    // sends senders to a replica with room.
    ready: () => ready && !(queue?.refusing ?? false) && !(pushQueue?.refusing ?? false),
    reload,
    push:
      pushForwarder === undefined
        ? undefined
        : { forwarder: pushForwarder, lintMode: options.push.lintMode, queue: asIngestQueue(pushQueue) },
    tls,
    limitsStore: limitStore === undefined ? undefined : () => limitStore.status(),
    metricsText:
      worker === undefined ? undefined : () => worker.rpc.call<string>('metrics.text', undefined, 10_000),
    query:
      reports.usage === undefined ||
      usageService === undefined ||
      queryMetrics === undefined ||
      q === undefined
        ? undefined
        : {
            upstream: readUpstream,
            readPath: {
              upstream: q.upstream ?? '',
              timeoutMs: q.timeoutMs,
              connections: q.connections,
              record: (reads, reader, nowMs) => usageService.record(reads, reader, nowMs),
              metrics: queryMetrics,
            },
            report: reports.usage,
            maxLimit: Math.max(1000, q.maxMetrics),
          },
    auth:
      credentials === undefined
        ? undefined
        : {
            store: credentials,
            tenantHeaderMode: options.auth.tenantHeaderMode,
            metrics: authMetrics,
            status: () => credentials.status,
          },
    metricsAuth: options.auth.metricsAuth,
    reloadMinIntervalMs: options.reloadMinIntervalMs,
    web: {
      version,
      plugins,
      upstreamUrl: options.upstreamUrl,
      configStatus: () => status,
      engine,
      policyStats,
      metrics,
      history,
      topOffenders: reports.topOffenders,
      unused: reports.unused,
      limits: reports.limits,
      counters,
      queues:
        worker !== undefined && queueApi !== undefined && localQueueApi !== undefined
          ? // Every worker's queues; this worker's own when the primary does not answer.
            async () => (await Promise.resolve(queueApi.status()).catch(() => localQueueApi.status())).queues
          : () => ({
              ...(queue === undefined ? {} : { remote_write: queue.gauges() }),
              ...(pushQueue === undefined ? {} : { pushgateway: pushQueue.gauges() }),
            }),
      ready: () => ready,
    },
  });

  if (options.upstreamIsDefault) {
    logger.warn(`no --upstream given; forwarding to the default ${options.upstreamUrl}`);
  }
  if (redisStore !== undefined && !(await redisStore.waitReady(options.limitsStore!.connectTimeoutMs))) {
    logger.warn(
      { store: redisStore.status().url },
      `limit store not answering yet; enforcing each limit / ${replicas.count * workerCount} locally until it does`,
    );
  }
  await app.listen({ host: options.listenHost, port: options.listenPort });
  if (usageService !== undefined && queryMetrics !== undefined) usageService.start(queryMetrics);
  upstreamNames?.start();
  // A worker is ready once every worker has started (the primary answers then), so /-/ready
  // answering means the whole proxy serves.
  if (worker !== undefined) await worker.rpc.call('worker.ready', undefined, 600_000);
  ready = true;
  logger.info(
    {
      version,
      upstream: options.upstreamUrl,
      pushgateway: options.push.url ?? null,
      tls: options.tls !== undefined,
      queue: options.queue?.dir ?? null,
      queryUpstream: options.query?.upstream ?? null,
      queryLog: options.query?.logFile ?? null,
      config: options.configPath ?? null,
      credentials: options.auth.credentialsPath ?? null,
      tenants: credentials?.credentials.tenants.length ?? null,
      policies: config.policies.length,
      limitsStore: limitStore?.status().url ?? null,
    },
    'cardinal-proxy started',
  );

  // A worker's configuration changes come from the primary, which watches the files and takes SIGHUP.
  process.on('SIGHUP', () => {
    if (worker === undefined) void reload();
  });
  const watch =
    options.configPath === undefined || worker !== undefined
      ? undefined
      : watchConfig(options.configPath, () => void reloadPolicies(), {
          onError: (err: unknown) =>
            logger.warn({ err }, 'watching the configuration failed; SIGHUP and POST /-/reload still reload'),
        });

  const tlsWatch =
    options.tls === undefined
      ? undefined
      : watchTlsPair(
          options.tls,
          (pair) => {
            (app.server as unknown as import('node:tls').Server).setSecureContext(pair);
            logger.info('TLS certificate reloaded');
          },
          (err) => logger.error({ err }, 'TLS certificate not reloaded; the running one stays in force'),
        );

  credentials?.watch({
    onError: (err: unknown) =>
      logger.warn({ err }, 'watching the credentials failed; SIGHUP and POST /-/reload still reload'),
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      ready = false;
      // What is not moved yet stays in its directory for the next start.
      stopTakeover.abort();
      watch?.close();
      // The first sample's timeout or the interval after it.
      clearInterval(historyTimer);
      tlsWatch?.close();
      credentials?.close();
      logger.info({ signal }, 'shutting down: finishing in-flight requests');
      const stopBy = Date.now() + options.shutdownTimeoutMs;
      // After the timeout, retry loops are cut short (their senders get 503) so the process ends.
      const closeForwarders = () =>
        Promise.all([forwarder.close(), pushForwarder?.close(), readUpstream?.close()]);
      upstreamNames?.close();
      const timer = setTimeout(() => void closeForwarders(), options.shutdownTimeoutMs);
      // With a queue, the drain loop keeps delivering until the queue is empty or most of the
      // timeout is spent; what is left stays on disk for the next start.
      app
        .close()
        .then(() =>
          Promise.all([
            drain?.close(Math.max(0, stopBy - 1000 - Date.now())),
            pushDrain?.close(Math.max(0, stopBy - 1000 - Date.now())),
          ]),
        )
        .then(() => takeover)
        .then(() =>
          Promise.all([
            queue?.close(),
            pushQueue?.close(),
            limitStore?.close(),
            usageService?.close(),
            ...[...tallies.values()].map((t) => t.flush()),
          ]),
        )
        .then(closeForwarders)
        .then(
          () => {
            clearTimeout(timer);
            logger.info('stopped');
            resolve(0);
          },
          (err: unknown) => {
            logger.error({ err }, 'error while shutting down');
            resolve(1);
          },
        );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // A worker whose primary is gone stops as on SIGTERM.
    if (worker !== undefined) process.on('disconnect', () => stop('SIGTERM'));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // A worker's channel to the primary would keep it running: closing it lets it end.
    if (cluster.isWorker && process.connected) process.disconnect();
  },
  (err: unknown) => {
    process.stderr.write(
      `cardinal-proxy: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
