// Watches the usage sources of the cluster: PrometheusRules (when the API server serves them) and
// the ConfigMaps holding Grafana dashboards. Keeps what each object reads, parsed once per
// resourceVersion, and calls `onChange` when any of it changed, so the controller re-renders every
// instance whose policies use spec.unused: a new dashboard reaches the proxies in one reconcile.
//
// A cluster without prometheus-operator is no error: discovery is asked whether
// monitoring.coreos.com/v1 prometheusrules is served, and asked again every `recheckMs` until it
// is, so installing the CRD later starts the watch without a restart.

import type { Logger } from 'pino';
import type { LiveConfigMap, UsageView } from '../controller/reconcile.js';
import { KubeClient } from '../kube/client.js';
import { Informer, Watch } from '../kube/informer.js';
import { dashboardSources, type PrometheusRuleObject, ruleSource } from './objects.js';
import { computeUsage, mergeUsage, type Usage, usageSpec } from './usage.js';

export interface UsageWatchOptions {
  readonly kube: KubeClient;
  readonly logger: Logger;
  /** Label selector of dashboard ConfigMaps, such as grafana_dashboard=1. */
  readonly dashboardSelector: string;
  /** Where dashboards are looked for; empty: every namespace. */
  readonly dashboardNamespaces: readonly string[];
  /** Whether PrometheusRules are read at all. */
  readonly prometheusRules: boolean;
  /** How often discovery is asked again while PrometheusRules are not served. */
  readonly recheckMs: number;
  readonly onChange: () => void;
}

interface Part {
  readonly version: string;
  readonly usage: Usage;
}

export class UsageWatcher {
  readonly #options: UsageWatchOptions;
  readonly #watch: Watch;
  readonly #dashboards: Informer<LiveConfigMap>[];
  #rules: Informer<PrometheusRuleObject> | undefined;
  /** By `kind namespace/name`. */
  readonly #parts = new Map<string, Part>();
  #usage: Usage | undefined;
  #view: UsageView | undefined;
  #recheck: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: UsageWatchOptions) {
    this.#options = options;
    const { kube, logger, dashboardSelector } = options;
    this.#watch = new Watch(kube.config);
    const namespaces = options.dashboardNamespaces.length === 0 ? [undefined] : options.dashboardNamespaces;
    this.#dashboards = namespaces.map(
      (ns) =>
        new Informer<LiveConfigMap>({
          name: `dashboards${ns === undefined ? '' : `-${ns}`}`,
          watch: this.#watch,
          path: ns === undefined ? KubeClient.allConfigMapsPath : KubeClient.configMapsPath(ns),
          list: () => kube.listConfigMapsBySelector(ns, dashboardSelector),
          labelSelector: dashboardSelector,
          onEvent: (cm, type) => this.#changed('Dashboard', cm, type),
          logger,
        }),
    );
  }

  /**
   * Starts the watches; `onChange` is called once every started one has listed completely. Until
   * then `view()` is undefined and the reconcile keeps the usage it rendered before: a partial
   * usage would make a drop policy drop what the missing part reads.
   */
  async start(): Promise<void> {
    await this.#startRules();
    await Promise.all(this.#dashboards.map((i) => i.start()));
    Promise.all([...this.#dashboards.map((i) => i.hasSynced), this.#rules?.hasSynced])
      .then(() => this.#options.onChange())
      .catch(() => {});
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#recheck);
    await Promise.all([...this.#dashboards.map((i) => i.stop()), this.#rules?.stop()]);
  }

  /** True once every started watch listed completely. */
  get synced(): boolean {
    return this.#dashboards.every((i) => i.synced) && (this.#rules?.synced ?? true);
  }

  /** What the cluster reads, or undefined until synced. */
  usage(): Usage | undefined {
    if (!this.synced) return undefined;
    if (this.#usage === undefined) {
      const keys = [...this.#parts.keys()].sort();
      this.#usage = mergeUsage(keys.map((k) => this.#parts.get(k)!.usage));
      this.#view = undefined;
    }
    return this.#usage;
  }

  /**
   * The usage as rendered, or undefined until synced. The same object until a source changes, so
   * its YAML is rendered once per change, not once per reconcile.
   */
  view(): UsageView | undefined {
    const usage = this.usage();
    if (usage === undefined) return undefined;
    this.#view ??= {
      spec: usageSpec(usage),
      problems:
        usage.problemCount > usage.problems.length
          ? [...usage.problems, `and ${usage.problemCount - usage.problems.length} more`]
          : usage.problems,
    };
    return this.#view;
  }

  async #startRules(): Promise<void> {
    const { kube, logger, prometheusRules, recheckMs } = this.#options;
    if (!prometheusRules || this.#stopped) return;
    let served = false;
    try {
      served = await kube.servesPrometheusRules();
    } catch (err) {
      logger.warn({ err }, 'asking API discovery for prometheusrules failed; asking again later');
    }
    if (!served) {
      logger.info(
        { recheckMs },
        'monitoring.coreos.com/v1 prometheusrules is not served; rules are not read',
      );
      this.#recheck = setTimeout(() => {
        this.#startRules().catch((err: unknown) => logger.warn({ err }, 'starting the rules watch failed'));
      }, recheckMs);
      return;
    }
    const rules = new Informer<PrometheusRuleObject>({
      name: 'prometheusrules',
      watch: this.#watch,
      path: KubeClient.prometheusRulesPath,
      list: () => kube.listPrometheusRules(),
      onEvent: (rule, type) => this.#changed('PrometheusRule', rule, type),
      logger,
    });
    this.#rules = rules;
    await rules.start();
    // Started after the first sync: once it has listed, the new usage must be rendered.
    rules.hasSynced.then(() => this.#options.onChange()).catch(() => {});
  }

  #changed(
    kind: 'Dashboard' | 'PrometheusRule',
    obj: { metadata: { name?: string; namespace?: string; resourceVersion?: string } },
    type: 'add' | 'update' | 'delete',
  ): void {
    const key = `${kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name ?? ''}`;
    const version = obj.metadata.resourceVersion ?? '';
    if (type === 'delete') {
      if (!this.#parts.delete(key)) return;
    } else {
      if (this.#parts.get(key)?.version === version) return;
      const sources =
        kind === 'PrometheusRule'
          ? [ruleSource(obj as PrometheusRuleObject)]
          : dashboardSources(obj as LiveConfigMap);
      this.#parts.set(key, { version, usage: computeUsage(sources) });
    }
    this.#usage = undefined;
    this.#view = undefined;
    if (this.synced) this.#options.onChange();
  }
}
