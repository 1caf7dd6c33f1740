// The MetricPolicy controller: watches MetricPolicies and the ConfigMaps it renders, and turns
// every event into the key of the proxy instance it concerns. Workers take keys from the queue and
// run reconcileInstance; an event never carries state into a reconcile (level-triggered).

import type { Logger } from 'pino';
import type { MetricPolicy } from '../api/types.js';
import { KubeClient, MANAGED_BY_SELECTOR, statusCode } from '../kube/client.js';
import { Informer, Watch } from '../kube/informer.js';
import { configMapName, INSTANCE_LABEL, policyId, selectInstance } from '../render/instance.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { type Cluster, type LiveConfigMap, type ReconcileContext, reconcileInstance } from './reconcile.js';

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
}

export class MetricPolicyController {
  readonly queue: WorkQueue<string>;
  readonly #options: ControllerOptions;
  readonly #policies: Informer<MetricPolicy>;
  readonly #configMaps: Informer<LiveConfigMap>;
  /** The instance each policy was last seen selecting, so that moving it re-renders both. */
  readonly #instanceOf = new Map<string, string>();
  readonly #workers: Promise<void>[] = [];
  #started = false;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.queue = options.queue ?? new WorkQueue<string>();
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
  }

  /** True once both caches hold a complete list and the workers run. */
  get ready(): boolean {
    return this.#started && this.#policies.synced && this.#configMaps.synced && !this.queue.shuttingDown;
  }

  /**
   * Starts the watches, waits until both caches are complete (a reconcile on a partial cache would
   * drop policies from the ConfigMap), then starts the workers.
   */
  async start(): Promise<void> {
    await Promise.all([this.#policies.start(), this.#configMaps.start()]);
    await Promise.all([this.#policies.hasSynced, this.#configMaps.hasSynced]);
    const ctx: ReconcileContext = {
      cluster: this.#cluster(),
      namespace: this.#options.namespace,
      operatorVersion: this.#options.operatorVersion,
      now: () => new Date(),
    };
    for (let i = 0; i < (this.#options.workers ?? 2); i++) this.#workers.push(this.#work(ctx));
    this.#started = true;
    this.#options.logger.info(
      { policies: this.#policies.list().length, configMaps: this.#configMaps.list().length },
      'caches synced; reconciling',
    );
  }

  /** Stops the watches, lets the workers finish the keys already queued, and waits for them. */
  async stop(): Promise<void> {
    await Promise.all([this.#policies.stop(), this.#configMaps.stop()]);
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
    };
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
        const wrote = result.configMap === 'written' || result.statusWrites > 0;
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
