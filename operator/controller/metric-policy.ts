// The MetricPolicy controller: watches MetricPolicies and the ConfigMaps it renders, and turns
// every event into the key of the proxy instance it concerns. Workers take keys from the queue and
// run reconcileInstance; an event never carries state into a reconcile (level-triggered).
//
// The proxies change without any watch event, so while proxy discovery is configured a timer
// queues every instance that has policies each --status-interval (controller-runtime's periodic
// resync, or RequeueAfter); the reconcile then polls the instance's proxies itself. Each instance
// keeps one ProxyPoller across reconciles, which is what turns the proxies' drop counters into
// rates.

import type { Logger } from 'pino';
import type { MetricReadsT } from '../../crds/metric-policy.js';
import type { MetricPolicy } from '../api/types.js';
import { KubeClient, MANAGED_BY_SELECTOR, statusCode } from '../kube/client.js';
import { Informer, Watch } from '../kube/informer.js';
import { listProxyEndpoints } from '../proxies/discovery.js';
import type { ProxyEndpoint } from '../proxies/endpoints.js';
import { ProxyPoller } from '../proxies/poll.js';
import { type ProxySource, proxyServiceName, unobserved } from '../proxies/source.js';
import { configMapName, INSTANCE_LABEL, policyId, selectInstance } from '../render/instance.js';
import { buildEvent } from '../status/events.js';
import { observationOf, type ProxyObservation } from '../status/observation.js';
import { metricReads, type ProxyUsageReport } from '../usage/reads.js';
import { UsageWatcher } from '../usage/watch.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { TokenBucket } from './ratelimit.js';
import { type Cluster, type LiveConfigMap, type ReconcileContext, reconcileInstance } from './reconcile.js';

/** Drops listed per proxy and poll: enough that a policy missing from the list dropped nothing. */
const TOP_LIMIT = 200;

export interface ControllerOptions {
  readonly kube: KubeClient;
  /** Where the ConfigMaps live. */
  readonly namespace: string;
  readonly operatorVersion: string;
  readonly logger: Logger;
  readonly metrics: OperatorMetrics;
  /** Instances reconciled at once; one key is never reconciled twice at once. Default 2. */
  readonly workers?: number;
  readonly queue?: WorkQueue<string>;
  /** Where the proxies of each instance are found (operator/proxies/source.ts). */
  readonly proxies: ProxySource;
  /** The proxies' `--config`, where they mount the ConfigMap. */
  readonly proxyConfigPath: string;
  readonly proxyTimeoutMs: number;
  /** HTTPS for the polls (operator/controller/options.ts proxyTls). */
  readonly proxyTls?: { readonly caFile: string; readonly serverName: string | undefined } | undefined;
  /** The proxies' admin credential (operator/controller/options.ts proxyBearerTokenFile). */
  readonly proxyBearerTokenFile?: string | undefined;
  /** How often every instance is reconciled again to refresh statuses from its proxies. */
  readonly statusIntervalMs: number;
  /** Status writes and Events per second over all policies, and the burst above it. */
  readonly statusWriteQps: number;
  readonly statusWriteBurst: number;
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

export class MetricPolicyController {
  readonly queue: WorkQueue<string>;
  readonly #options: ControllerOptions;
  readonly #policies: Informer<MetricPolicy>;
  readonly #configMaps: Informer<LiveConfigMap>;
  readonly #usage: UsageWatcher | undefined;
  /** The instance each policy was last seen selecting, so that moving it re-renders both. */
  readonly #instanceOf = new Map<string, string>();
  readonly #workers: Promise<void>[] = [];
  /** One poller per instance, kept across reconciles for the rates; dropped with the instance's last policy. */
  readonly #pollers = new Map<string, ProxyPoller>();
  /** What each instance's read paths saw read, as of its last poll; rendered into usage.yaml. */
  readonly #reads = new Map<string, { json: string; reads: MetricReadsT | undefined }>();
  readonly #writeLimit: TokenBucket;
  #refresh: NodeJS.Timeout | undefined;
  #eventSequence = 0;
  #started = false;
  #synced = false;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.queue = options.queue ?? new WorkQueue<string>();
    this.#writeLimit = new TokenBucket({ qps: options.statusWriteQps, burst: options.statusWriteBurst });
    const { kube, namespace, logger } = options;
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
      observe: (instance) => this.#observe(instance),
      proxyConfigPath: this.#options.proxyConfigPath,
      writeLimit: () => this.#writeLimit.take(),
      ...(this.#usage === undefined ? {} : { usage: () => this.#usage?.view() }),
      reads: (instance) => {
        const r = this.#reads.get(instance);
        return r === undefined ? 'notPolled' : r.reads;
      },
    };
    for (let i = 0; i < (this.#options.workers ?? 2); i++) this.#workers.push(this.#work(ctx));
    // Without discovery a status depends on the watched objects only, which the watches cover.
    if (this.#options.proxies.kind !== 'none') {
      this.#refresh = setInterval(() => this.#refreshAll(), this.#options.statusIntervalMs);
    }
    // A replica that just became leader reconciles everything once, whatever was queued before.
    this.#refreshAll();
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
    clearInterval(this.#refresh);
    // Statuses and Events are not worth delaying shutdown for; the next start writes them.
    this.#writeLimit.close();
    await Promise.all([this.#policies.stop(), this.#configMaps.stop(), this.#usage?.stop()]);
    await this.queue.shutDown();
    await Promise.all(this.#workers);
  }

  #cluster(): Cluster {
    const { kube, namespace } = this.#options;
    return {
      policies: () => this.#policies.list(),
      configMap: (name) => this.#configMaps.get(name, namespace),
      applyConfigMap: (configMap) => kube.applyConfigMap(configMap),
      writePolicyStatus: (policy, status) => kube.writePolicyStatus(policy, status),
      recordEvent: async (policy, event) => {
        // Events are best effort, as client-go's recorder makes them: a lost one must not fail,
        // and so repeat, the reconcile that the status already recorded.
        const body = buildEvent(policy, event, {
          now: new Date(),
          instance: this.#options.identity,
          sequence: this.#eventSequence++ % 1_000_000,
        });
        try {
          await kube.createEvent(body);
          this.#options.metrics.events(event.reason);
        } catch (err) {
          this.#options.logger.warn(
            { err, policy: policyId(policy), reason: event.reason },
            'recording an event failed',
          );
        }
      },
    };
  }

  /** Queues every instance that has policies, and forgets the pollers of those that have none. */
  #refreshAll(): void {
    const instances = new Set(
      this.#policies
        .list()
        .filter((p) => p.metadata.deletionTimestamp === undefined)
        .map(selectInstance),
    );
    for (const instance of this.#pollers.keys()) if (!instances.has(instance)) this.#pollers.delete(instance);
    for (const instance of this.#reads.keys()) if (!instances.has(instance)) this.#reads.delete(instance);
    for (const instance of instances) this.queue.add(instance);
  }

  /** The proxies of `instance`, polled now; never rejects. */
  async #observe(instance: string): Promise<ProxyObservation> {
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
    const round = await poller.poll(endpoints);
    for (const p of round.polls) {
      if (p.reason !== undefined)
        logger.debug({ instance, endpoint: p.endpoint, reason: p.reason }, 'poll failed');
    }
    this.#readsPolled(instance, round.usage);
    return observationOf(round);
  }

  /**
   * Keeps what the instance's read paths saw read; when it changed, the instance is queued again,
   * so the next reconcile renders it into usage.yaml (this one rendered before it polled).
   */
  #readsPolled(instance: string, reports: readonly ProxyUsageReport[]): void {
    const reads = metricReads(reports);
    const before = this.#reads.get(instance);
    const json = JSON.stringify(reads ?? null);
    if (before?.json === json) return;
    this.#reads.set(instance, { json, reads });
    this.queue.add(instance);
  }

  #onPolicy(policy: MetricPolicy, type: 'add' | 'update' | 'delete'): void {
    const id = policyId(policy);
    const instance = selectInstance(policy);
    const before = this.#instanceOf.get(id);
    if (before !== undefined && before !== instance) this.queue.add(before);
    if (type === 'delete') this.#instanceOf.delete(id);
    else this.#instanceOf.set(id, instance);
    this.queue.add(instance);
  }

  /** What the cluster reads changed: every instance with a spec.unused policy renders it again. */
  #onUsage(): void {
    const instances = new Set(
      this.#policies
        .list()
        .filter((p) => p.spec.unused !== undefined && p.metadata.deletionTimestamp === undefined)
        .map(selectInstance),
    );
    for (const instance of instances) this.queue.add(instance);
  }

  /** A change to a rendered ConfigMap, by hand or by deletion, is put right by its instance's reconcile. */
  #onConfigMap(configMap: LiveConfigMap): void {
    const instance = configMap.metadata.labels?.[INSTANCE_LABEL];
    if (instance !== undefined && configMap.metadata.name === configMapName(instance))
      this.queue.add(instance);
  }

  async #work(ctx: ReconcileContext): Promise<void> {
    const { logger, metrics } = this.#options;
    for (;;) {
      const instance = await this.queue.get();
      if (instance === undefined) return;
      const started = performance.now();
      try {
        const result = await reconcileInstance(ctx, instance);
        this.queue.forget(instance);
        metrics.reconciled('success');
        if (result.configMap !== 'none') metrics.configMapApply(result.configMap);
        metrics.statusWrites(result.statusWrites);
        const wrote = result.configMap === 'written' || result.statusWrites > 0 || result.events > 0;
        logger[wrote ? 'info' : 'debug'](
          { instance, ...result, ms: Math.round(performance.now() - started) },
          'reconciled',
        );
      } catch (err) {
        metrics.reconciled('error');
        const retryInMs = this.queue.addRateLimited(instance);
        // A conflict means the cache was behind a write; the retry reads the newer object.
        const level = statusCode(err) === 409 ? 'debug' : 'warn';
        logger[level]({ instance, err, retryInMs }, 'reconcile failed; retrying');
      } finally {
        this.queue.done(instance);
      }
    }
  }
}
