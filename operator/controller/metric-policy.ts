// The MetricPolicy controller: watches MetricPolicies and the ConfigMaps it renders, and works
// from two queues, so that a user's edit never waits behind a thousand statuses:
//
//   instances  an event that changes what a proxy instance runs (a spec edit: a new generation; a
//              policy added, deleted or moved; a rendered ConfigMap changed by someone else)
//              queues the instance, and renderInstance writes the shards that drifted.
//   statuses   each policy's status, computed from its instance's last render and the last
//              reading of its proxies and written when something visible changed. Several workers
//              (--status-workers) write at once, paced by the API server's priority and fairness
//              (and a token bucket with --status-write-qps), so one slow or conflicting write holds
//              up no other; an edited policy goes first.
//
// The operator's own status writes queue nothing: an update event whose generation, instance and
// deletion state are as before is a status change (controller-runtime's GenerationChangedPredicate).
//
// The proxies change without any watch event. Each --status-interval a timer polls every
// instance's proxies (one ProxyPoller per instance, kept across rounds, which is what turns the
// proxies' drop counters into rates over one interval) and queues its policies' statuses. After a
// render the proxies are looked at every LOOK_INTERVAL_MS until they run it, so Ready follows an
// edit within seconds; those looks keep the rates of the last interval.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { MetricReadsT } from '../../crds/metric-policy.js';
import type { MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import { KubeClient, MANAGED_BY_SELECTOR, statusCode } from '../kube/client.js';
import { Informer, Watch } from '../kube/informer.js';
import { listProxyEndpoints } from '../proxies/discovery.js';
import type { ProxyEndpoint } from '../proxies/endpoints.js';
import { ProxyPoller } from '../proxies/poll.js';
import { type ProxySource, proxyServiceName, unobserved } from '../proxies/source.js';
import { configMapName, INSTANCE_LABEL, policyId, selectInstance } from '../render/instance.js';
import { DEGRADED, READY } from '../status/conditions.js';
import { observationOf, type ProxyObservation } from '../status/observation.js';
import { metricReads, type ProxyUsageReport } from '../usage/reads.js';
import { UsageWatcher } from '../usage/watch.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { RateLimiterClosedError, TokenBucket } from './ratelimit.js';
import {
  type Cluster,
  type InstanceRender,
  type LiveConfigMap,
  type ReconcileContext,
  RenderCache,
  reconcileStatus,
  renderInstance,
} from './reconcile.js';
import { EventRecorder } from './recorder.js';

/** Drops listed per proxy and poll: enough that a policy missing from the list dropped nothing. */
const TOP_LIMIT = 200;
/** How often the proxies are looked at after a render, until they run it, and for how long. */
const LOOK_INTERVAL_MS = 500;
/**
 * Five minutes: a proxy loading thousands of policies on a busy node can take minutes, and while
 * the look runs, a status that would say Pending only until the proxies have loaded is not
 * written (a look asks for the config status and limits only, so it costs little).
 */
const LOOK_ROUNDS = 600;
/**
 * How long an instance renders after the last event that queued it, and at most after the first:
 * a `kubectl apply` of a thousand policies arrives as a thousand watch events over seconds, and a
 * render per burst (or per RENDER_MAX_DELAY_MS of one) writes each shard, and makes every proxy
 * reload, a few times instead of once per policy.
 */
const RENDER_DELAY_MS = 300;
const RENDER_MAX_DELAY_MS = 2_000;

export interface ControllerOptions {
  readonly kube: KubeClient;
  /** Where the ConfigMaps live. */
  readonly namespace: string;
  readonly operatorVersion: string;
  readonly logger: Logger;
  readonly metrics: OperatorMetrics;
  /** Instances rendered at once; one key is never rendered twice at once. Default 2. */
  readonly workers?: number;
  /** Status writes in flight at once: the bound on the operator's open status writes. Default 8. */
  readonly statusWorkers?: number;
  /** The instance queue (its depth is a metric). */
  readonly queue?: WorkQueue<string>;
  /** Where the proxies of each instance are found (operator/proxies/source.ts). */
  readonly proxies: ProxySource;
  /** The proxies' `--config`, where they mount the ConfigMaps. */
  readonly proxyConfigPath: string;
  readonly proxyTimeoutMs: number;
  /** HTTPS for the polls (operator/controller/options.ts proxyTls). */
  readonly proxyTls?: { readonly caFile: string; readonly serverName: string | undefined } | undefined;
  /** The proxies' admin credential (operator/controller/options.ts proxyBearerTokenFile). */
  readonly proxyBearerTokenFile?: string | undefined;
  /** How often the proxies are polled and every status refreshed; the window of the rates. */
  readonly statusIntervalMs: number;
  /** Status writes per second over all policies (0: no limit), and the burst above it; Events get a bucket of their own alike. */
  readonly statusWriteQps: number;
  readonly statusWriteBurst: number;
  /** ConfigMaps an instance's configuration is split over (--config-shards). Default 1. */
  readonly configShards?: number;
  /** Names this replica in its Events (reportingInstance); the pod's host name. */
  readonly identity: string;
  /** Usage sources for spec.unused (PrometheusRules, dashboards); undefined: not watched. */
  readonly usage?:
    | {
        readonly dashboardSelector: string;
        readonly dashboardNamespaces: readonly string[];
        readonly prometheusRules: boolean;
      }
    | undefined;
}

/** What the controller knows of one instance between reconciles. */
interface InstanceState {
  render: InstanceRender | undefined;
  /** The last reading of the instance's proxies; undefined until the first. */
  observation: ProxyObservation | undefined;
  /** A look loop runs (lookSoon); `again` asks it to go on after a newer render. */
  looking: boolean;
  again: boolean;
  /** The generations of the last renders before `render`, by hash (InstanceRender.earlier). */
  readonly earlier: Map<string, Readonly<Record<string, number>>>;
  /** The generations of each shard's file, by the sha256 of its text, over the last renders. */
  readonly shards: Map<string, Readonly<Record<string, number>>>;
}

/** Earlier renders remembered per instance: proxies a few renders behind still count as running what they hold. */
const EARLIER_RENDERS = 32;

export class MetricPolicyController {
  /** The instance queue. */
  readonly queue: WorkQueue<string>;
  /** The status queue, by policy id. */
  readonly statuses = new WorkQueue<string>();
  readonly #options: ControllerOptions;
  readonly #policies: Informer<MetricPolicy>;
  readonly #configMaps: Informer<LiveConfigMap>;
  readonly #usage: UsageWatcher | undefined;
  /** What each policy was last seen as: the predicate that tells a spec change from a status write. */
  readonly #seen = new Map<string, { instance: string; generation: number; deleting: boolean }>();
  readonly #workers: Promise<void>[] = [];
  /** One poller per instance, kept across rounds for the rates; dropped with the instance's last policy. */
  readonly #pollers = new Map<string, ProxyPoller>();
  readonly #instances = new Map<string, InstanceState>();
  /** The proxies each instance's last look discovered, rendered for their fallback share. */
  readonly #replicas = new Map<string, number>();
  /** What each instance's read paths saw read, as of its last rate round; rendered into usage.yaml. */
  readonly #reads = new Map<string, { json: string; reads: MetricReadsT | undefined }>();
  readonly #writeLimit: TokenBucket;
  readonly #recorder: EventRecorder;
  readonly #cache = new RenderCache();
  readonly #renderTimers = new Map<string, { timer: NodeJS.Timeout; first: number }>();
  #refresh: NodeJS.Timeout | undefined;
  #started = false;
  #synced = false;
  #stopping = false;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.queue = options.queue ?? new WorkQueue<string>();
    this.#writeLimit = new TokenBucket({ qps: options.statusWriteQps, burst: options.statusWriteBurst });
    const { kube, namespace, logger } = options;
    this.#recorder = new EventRecorder({
      sink: kube,
      identity: options.identity,
      qps: options.statusWriteQps,
      burst: options.statusWriteBurst,
      logger,
      written: (reason) => options.metrics.events(reason),
    });
    const watch = new Watch(kube.config);
    this.#policies = new Informer<MetricPolicy>({
      name: 'metricpolicies',
      watch,
      path: KubeClient.policiesPath,
      list: () => kube.listPolicies(),
      onEvent: (policy, type) => this.#onPolicy(policy, type),
      logger,
    });
    this.#configMaps = new Informer<LiveConfigMap>({
      name: 'configmaps',
      watch,
      path: KubeClient.configMapsPath(namespace),
      list: () => kube.listConfigMaps(namespace, MANAGED_BY_SELECTOR),
      labelSelector: MANAGED_BY_SELECTOR,
      onEvent: (configMap) => this.#onConfigMap(configMap),
      logger,
    });
    this.#usage =
      options.usage === undefined
        ? undefined
        : new UsageWatcher({
            kube,
            logger,
            ...options.usage,
            recheckMs: options.statusIntervalMs,
            onChange: () => this.#onUsage(),
          });
  }

  /**
   * True once both caches hold a complete list. A standby replica is ready too: its caches are
   * warm, so it can take over the moment it acquires the Lease.
   */
  get ready(): boolean {
    return this.#synced && this.#policies.synced && this.#configMaps.synced && !this.queue.shuttingDown;
  }

  /** Every MetricPolicy in the watch cache, as last seen. */
  policies(): readonly MetricPolicy[] {
    return this.#policies.list();
  }

  /** Whether this replica runs the workers (it leads, or leader election is off). */
  get leading(): boolean {
    return this.#started;
  }

  /**
   * Starts the watches and waits until both caches are complete (a reconcile on a partial cache
   * would drop policies from the ConfigMap). Events queue instances from then on; nothing is
   * written until `lead`.
   */
  async startCaches(): Promise<void> {
    await Promise.all([this.#policies.start(), this.#configMaps.start(), this.#usage?.start()]);
    await Promise.all([this.#policies.hasSynced, this.#configMaps.hasSynced]);
    this.#synced = true;
  }

  /** Starts the workers: reconciles and writes begin. Call once, when leading. */
  lead(): void {
    if (this.#started) return;
    const ctx: ReconcileContext = {
      cluster: this.#cluster(),
      namespace: this.#options.namespace,
      operatorVersion: this.#options.operatorVersion,
      now: () => new Date(),
      observe: (instance) => this.#observe(instance, true),
      proxyConfigPath: this.#options.proxyConfigPath,
      writeLimit: () => this.#writeLimit.take(),
      shards: this.#options.configShards ?? 1,
      cache: this.#cache,
      replicas: (instance) => this.#replicas.get(instance),
      ...(this.#usage === undefined ? {} : { usage: () => this.#usage?.view() }),
      reads: (instance) => {
        const r = this.#reads.get(instance);
        return r === undefined ? 'notPolled' : r.reads;
      },
    };
    for (let i = 0; i < (this.#options.workers ?? 2); i++) this.#workers.push(this.#renderWork(ctx));
    for (let i = 0; i < (this.#options.statusWorkers ?? 8); i++) this.#workers.push(this.#statusWork(ctx));
    // Without discovery a status depends on the watched objects only, which the watches cover.
    if (this.#options.proxies.kind !== 'none') {
      this.#refresh = setInterval(() => this.#refreshAll(), this.#options.statusIntervalMs);
    }
    // A replica that just became leader renders everything once, whatever was queued before.
    for (const instance of this.#liveInstances()) this.queue.add(instance);
    this.#started = true;
    this.#options.logger.info(
      { policies: this.#policies.list().length, configMaps: this.#configMaps.list().length },
      'caches synced; reconciling',
    );
  }

  /** Without leader election: the caches, then the workers. */
  async start(): Promise<void> {
    await this.startCaches();
    this.lead();
  }

  /** Stops the watches, lets the workers finish the keys already queued, and waits for them. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#refresh);
    for (const due of this.#renderTimers.values()) clearTimeout(due.timer);
    // Statuses and Events are not worth delaying shutdown for; the next start writes them.
    this.#writeLimit.close();
    await this.#recorder.close();
    await Promise.all([this.#policies.stop(), this.#configMaps.stop(), this.#usage?.stop()]);
    await Promise.all([this.queue.shutDown(), this.statuses.shutDown()]);
    await Promise.all(this.#workers);
  }

  #cluster(): Cluster {
    const { kube, namespace } = this.#options;
    return {
      policies: () => this.#policies.list(),
      configMap: (name) => this.#configMaps.get(name, namespace),
      applyConfigMap: (configMap) => kube.applyConfigMap(configMap),
      writePolicyStatus: (policy, status) => kube.writePolicyStatus(policy, status),
      recordEvent: (target, event) => this.#recorder.record(target, event),
    };
  }

  /** The instances that have policies. */
  #liveInstances(): Set<string> {
    return new Set(
      this.#policies
        .list()
        .filter((p) => p.metadata.deletionTimestamp === undefined)
        .map(selectInstance),
    );
  }

  #state(instance: string): InstanceState {
    let st = this.#instances.get(instance);
    if (st === undefined) {
      st = {
        render: undefined,
        observation: undefined,
        looking: false,
        again: false,
        earlier: new Map(),
        shards: new Map(),
      };
      this.#instances.set(instance, st);
    }
    return st;
  }

  /**
   * Each status interval: polls the proxies of every instance that has policies, for rates one
   * interval apart, and queues its statuses; forgets the instances that have none.
   */
  #refreshAll(): void {
    const instances = this.#liveInstances();
    for (const instance of this.#pollers.keys()) if (!instances.has(instance)) this.#pollers.delete(instance);
    for (const instance of this.#instances.keys())
      if (!instances.has(instance)) this.#instances.delete(instance);
    for (const instance of this.#replicas.keys())
      if (!instances.has(instance)) this.#replicas.delete(instance);
    for (const instance of this.#reads.keys()) if (!instances.has(instance)) this.#reads.delete(instance);
    for (const instance of instances) {
      const st = this.#instances.get(instance);
      if (st?.render === undefined) continue;
      this.#observe(instance, true).then(
        (observation) => {
          st.observation = observation;
          this.#fanOut(instance);
        },
        (err: unknown) => this.#options.logger.error({ err, instance }, 'polling the proxies failed'),
      );
    }
  }

  /** Queues the status of every policy of the instance's last render; `first` ones go to the front. */
  #fanOut(instance: string, first?: ReadonlySet<string>): void {
    const render = this.#instances.get(instance)?.render;
    if (render === undefined) return;
    if (first !== undefined) for (const id of first) this.statuses.add(id, true);
    for (const id of render.verdicts.keys()) this.statuses.add(id);
  }

  /**
   * Looks at the instance's proxies now and every LOOK_INTERVAL_MS until every reachable one runs
   * the last render, queueing the statuses whenever what they run changed. The first look of an
   * instance is a rate round: it is the reading the next interval's rates are taken against.
   */
  #lookSoon(instance: string): void {
    const st = this.#state(instance);
    if (st.looking) {
      st.again = true;
      return;
    }
    st.looking = true;
    const loop = async () => {
      for (let round = 0; round < LOOK_ROUNDS && !this.#stopping; round++) {
        st.again = false;
        const observation = await this.#observe(instance, st.observation === undefined);
        const changed = round === 0 || !sameProxies(st.observation, observation);
        st.observation = observation;
        if (changed) this.#fanOut(instance);
        const hash = st.render?.renderedHash;
        const done =
          !observation.observed || observation.proxies.every((p) => !p.reachable || p.configHash === hash);
        if (done && !st.again) return;
        await sleep(LOOK_INTERVAL_MS);
      }
    };
    loop()
      .catch((err: unknown) => this.#options.logger.error({ err, instance }, 'looking at the proxies failed'))
      .finally(() => {
        st.looking = false;
      });
  }

  /** The proxies of `instance`, polled now; never rejects. `rates`: a rate round (ProxyPoller). */
  async #observe(instance: string, rates: boolean): Promise<ProxyObservation> {
    const { proxies: source, kube, namespace, logger } = this.#options;
    const why = unobserved(source, instance);
    if (why !== undefined) return { observed: false, ...why };
    // unobserved() answered for `none`.
    let endpoints: readonly ProxyEndpoint[] = [];
    if (source.kind === 'static') {
      endpoints = source.endpoints;
    } else if (source.kind === 'service') {
      let service = source.service;
      try {
        service = proxyServiceName(source.service, instance);
        endpoints = await listProxyEndpoints(kube.discovery, namespace, service);
      } catch (err) {
        logger.warn({ err, instance, service }, 'listing the proxies failed');
        return {
          observed: false,
          reason: 'DiscoveryFailed',
          message: `Listing the EndpointSlices of Service ${namespace}/${service} failed: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
    }
    this.#discovered(instance, endpoints.length);
    let poller = this.#pollers.get(instance);
    if (poller === undefined) {
      const tls = this.#options.proxyTls;
      poller = new ProxyPoller({
        timeoutMs: this.#options.proxyTimeoutMs,
        topLimit: TOP_LIMIT,
        bearerTokenFile: this.#options.proxyBearerTokenFile,
        tls:
          tls === undefined
            ? undefined
            : {
                caFile: tls.caFile,
                serverName:
                  tls.serverName ??
                  (source.kind === 'service'
                    ? `${proxyServiceName(source.service, instance)}.${namespace}.svc`
                    : undefined),
              },
      });
      this.#pollers.set(instance, poller);
    }
    const round = await poller.poll(endpoints, { rates });
    for (const p of round.polls) {
      if (p.reason !== undefined)
        logger.debug({ instance, endpoint: p.endpoint, reason: p.reason }, 'poll failed');
    }
    this.#readsPolled(instance, round.usage);
    return observationOf(round);
  }

  /**
   * The proxies of `instance` a look discovered: when the count differs from the one rendered, the
   * instance renders again, so the proxies' fallback share follows a scale-up or down. None
   * discovered (all gone, or not ready) changes nothing: the count rendered before stays.
   */
  #discovered(instance: string, count: number): void {
    if (count < 1 || this.#replicas.get(instance) === count) return;
    this.#replicas.set(instance, count);
    if (this.#instances.get(instance)?.render?.replicas !== count) this.#queueRender(instance);
  }

  /** Queues a render of `instance` RENDER_DELAY_MS from now, or sooner once RENDER_MAX_DELAY_MS passed since the first event. */
  #queueRender(instance: string): void {
    if (!this.#started) {
      // Before leading nothing renders; lead() queues every instance.
      return;
    }
    const now = performance.now();
    const due = this.#renderTimers.get(instance);
    const first = due?.first ?? now;
    if (due !== undefined) clearTimeout(due.timer);
    const delay = Math.max(0, Math.min(RENDER_DELAY_MS, first + RENDER_MAX_DELAY_MS - now));
    const timer = setTimeout(() => {
      this.#renderTimers.delete(instance);
      this.queue.add(instance);
    }, delay);
    this.#renderTimers.set(instance, { timer, first });
  }

  /**
   * Keeps what the instance's read paths saw read; when it changed, a render of the instance is
   * queued, so that it reaches usage.yaml (the render that led to this look ran before it).
   */
  #readsPolled(instance: string, reports: readonly ProxyUsageReport[]): void {
    const reads = metricReads(reports);
    const before = this.#reads.get(instance);
    const json = JSON.stringify(reads ?? null);
    if (before?.json === json) return;
    this.#reads.set(instance, { json, reads });
    this.#queueRender(instance);
  }

  #onPolicy(policy: MetricPolicy, type: 'add' | 'update' | 'delete'): void {
    const id = policyId(policy);
    const instance = selectInstance(policy);
    const before = this.#seen.get(id);
    if (before !== undefined && before.instance !== instance) this.#queueRender(before.instance);
    if (type === 'delete') {
      this.#seen.delete(id);
      this.#queueRender(instance);
      return;
    }
    const now = {
      instance,
      generation: policy.metadata.generation,
      deleting: policy.metadata.deletionTimestamp !== undefined,
    };
    this.#seen.set(id, now);
    // The predicate: same generation, instance and deletion state is a status write (ours, mostly),
    // which changes nothing a render or a status depends on.
    if (
      type === 'update' &&
      before !== undefined &&
      before.instance === now.instance &&
      before.generation === now.generation &&
      before.deleting === now.deleting
    )
      return;
    this.#queueRender(instance);
  }

  /** What the cluster reads changed: every instance with a spec.unused policy renders it again. */
  #onUsage(): void {
    const instances = new Set(
      this.#policies
        .list()
        .filter((p) => p.spec.unused !== undefined && p.metadata.deletionTimestamp === undefined)
        .map(selectInstance),
    );
    for (const instance of instances) this.#queueRender(instance);
  }

  /** A change to a rendered ConfigMap, by hand or by deletion, is put right by its instance's render. */
  #onConfigMap(configMap: LiveConfigMap): void {
    const instance = configMap.metadata.labels?.[INSTANCE_LABEL];
    if (instance !== undefined && configMap.metadata.name?.startsWith(configMapName(instance)))
      this.#queueRender(instance);
  }

  async #renderWork(ctx: ReconcileContext): Promise<void> {
    const { logger, metrics, namespace } = this.#options;
    for (;;) {
      const instance = await this.queue.get();
      if (instance === undefined) return;
      const started = performance.now();
      try {
        const render = await renderInstance(ctx, instance);
        this.queue.forget(instance);
        metrics.reconciled('success');
        if (render.configMap !== 'none') metrics.configMapApply(render.configMap);
        const st = this.#state(instance);
        const previous = st.render;
        if (previous !== undefined && previous.renderedHash !== render.renderedHash) {
          st.earlier.delete(previous.renderedHash);
          st.earlier.set(previous.renderedHash, previous.generations);
          while (st.earlier.size > EARLIER_RENDERS)
            st.earlier.delete(st.earlier.keys().next().value as string);
        }
        // Newest last, so the oldest are dropped first.
        for (const [hash, held] of render.shardGenerations ?? []) {
          st.shards.delete(hash);
          st.shards.set(hash, held);
        }
        const keep = EARLIER_RENDERS * (this.#options.configShards ?? 1);
        while (st.shards.size > keep) st.shards.delete(st.shards.keys().next().value as string);
        st.render = { ...render, earlier: st.earlier, shardGenerations: st.shards };
        for (const problem of render.problems) {
          const live = this.#configMaps.get(problem.configMap, namespace);
          ctx.cluster.recordEvent(
            {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: problem.configMap, namespace, uid: live?.metadata.uid },
            },
            { type: 'Warning', reason: 'ConfigTooLarge', message: problem.message },
          );
          logger.error({ instance, configMap: problem.configMap }, problem.message);
        }
        if (render.verdicts.size === 0) {
          this.#instances.delete(instance);
          this.#pollers.delete(instance);
        } else {
          // Edited and new policies first: their users are waiting for them.
          const edited = new Set<string>();
          for (const [id, v] of render.verdicts)
            if (previous?.verdicts.get(id)?.generation !== v.generation) edited.add(id);
          if (st.observation !== undefined) this.#fanOut(instance, edited);
          if (st.observation === undefined || previous?.renderedHash !== render.renderedHash)
            this.#lookSoon(instance);
        }
        logger[render.applies > 0 ? 'info' : 'debug'](
          {
            instance,
            applies: render.applies,
            policies: render.verdicts.size,
            ms: Math.round(performance.now() - started),
          },
          'rendered',
        );
      } catch (err) {
        metrics.reconciled('error');
        const retryInMs = this.queue.addRateLimited(instance);
        // A conflict means the cache was behind a write; the retry reads the newer object.
        const level = statusCode(err) === 409 ? 'debug' : 'warn';
        logger[level]({ instance, err, retryInMs }, 'render failed; retrying');
      } finally {
        this.queue.done(instance);
      }
    }
  }

  async #statusWork(ctx: ReconcileContext): Promise<void> {
    const { logger, metrics } = this.#options;
    for (;;) {
      const id = await this.statuses.get();
      if (id === undefined) return;
      try {
        const slash = id.indexOf('/');
        const policy = this.#policies.get(id.slice(slash + 1), id.slice(0, slash));
        const st = policy === undefined ? undefined : this.#instances.get(selectInstance(policy));
        // Gone, or its instance not rendered or looked at yet: that render or look queues it again.
        if (policy !== undefined && st?.render !== undefined && st.observation !== undefined) {
          const r = await reconcileStatus(ctx, policy, st.render, st.observation, {
            // While the proxies are loading a render, a status that would say Pending only
            // until they have is not written: the look that sees them done queues it again.
            hold: (next) => st.looking && loadingOnly(next),
          });
          if (r.written) metrics.statusWrites(1, r.change);
        }
        this.statuses.forget(id);
      } catch (err) {
        // Stopping: the next leader writes it.
        if (err instanceof RateLimiterClosedError) continue;
        const retryInMs = this.statuses.addRateLimited(id);
        // A conflict: the policy changed since the cache was read; the retry reads the newer one.
        const level = statusCode(err) === 409 ? 'debug' : 'warn';
        logger[level]({ policy: id, err, retryInMs }, 'status write failed; retrying');
      } finally {
        this.statuses.done(id);
      }
    }
  }
}

/** Whether `status` is Ready=False only because reachable proxies have not loaded the render yet. */
function loadingOnly(status: MetricPolicyStatus): boolean {
  const ready = status.conditions?.find((c) => c.type === READY);
  // A proxy that refused the configuration (Degraded) will not load it: that is news now.
  const degraded = status.conditions?.find((c) => c.type === DEGRADED);
  return (
    ready?.status === 'False' &&
    ready.reason === 'Pending' &&
    degraded?.status !== 'True' &&
    (status.proxies?.total ?? 0) > 0
  );
}

/** Whether two readings found the same proxies running the same configurations. */
function sameProxies(a: ProxyObservation | undefined, b: ProxyObservation): boolean {
  if (a === undefined || a.observed !== b.observed) return false;
  if (!a.observed || !b.observed)
    return !a.observed && !b.observed && a.reason === b.reason && a.message === b.message;
  return (
    a.proxies.length === b.proxies.length &&
    a.proxies.every((p, i) => {
      const q = b.proxies[i]!;
      return (
        p.endpoint === q.endpoint &&
        p.reachable === q.reachable &&
        p.configHash === q.configHash &&
        p.lastError === q.lastError
      );
    })
  );
}
