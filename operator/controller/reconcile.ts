// Reconciles one proxy instance: the MetricPolicies that select it, the ConfigMap its proxies
// mount, and each policy's status. Level-triggered: it reads the current state from the watch
// caches and converges, whatever event queued it, so it is safe to run any number of times. It
// writes only what differs: the ConfigMap when its rendered content drifted from the live one, a
// status when statusEqual says it changed.

import { createHash } from 'node:crypto';
import { ConfigError, parsePolicyFile } from '../../proxy/config/load.js';
import { validatePolicies } from '../../proxy/config/validate.js';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import {
  CONFIG_HASH_ANNOTATION,
  CONFIG_KEY,
  renderedGenerations,
  renderProxyConfigMap,
} from '../render/configmap.js';
import {
  configMapName,
  INSTANCE_LABEL,
  instanceProblem,
  policyId,
  selectInstance,
} from '../render/instance.js';
import {
  type Acceptance,
  computeStatus,
  DEGRADED,
  READY,
  setCondition,
  statusEqual,
} from '../status/conditions.js';

/** A ConfigMap as read back from the API server: whatever anyone wrote into it. */
export interface LiveConfigMap {
  metadata: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

/** What a reconcile reads (from the watch caches) and writes (to the API server). */
export interface Cluster {
  /** Every MetricPolicy, in every namespace, as last seen. */
  policies(): readonly MetricPolicy[];
  /** The ConfigMap named `name` in the operator's namespace, as last seen. */
  configMap(name: string): LiveConfigMap | undefined;
  /** Server-side apply of the whole ConfigMap the operator owns. */
  applyConfigMap(configMap: ConfigMap): Promise<void>;
  /** Writes `status` over the policy's status; the write fails when `policy` is no longer current. */
  writePolicyStatus(policy: MetricPolicy, status: MetricPolicyStatus): Promise<void>;
}

export interface ReconcileContext {
  readonly cluster: Cluster;
  /** Where the ConfigMaps live: the proxies' namespace. */
  readonly namespace: string;
  readonly operatorVersion: string;
  readonly now: () => Date;
}

export interface ReconcileResult {
  /** written: the ConfigMap was applied; skipped: it was up to date; none: the instance is invalid. */
  readonly configMap: 'written' | 'skipped' | 'none';
  readonly accepted: number;
  readonly rejected: number;
  readonly statusWrites: number;
}

/**
 * Converges one instance. Throws when a write fails; the caller retries with backoff, and since
 * nothing here depends on what an earlier run did, a retry picks up where this one stopped.
 */
export async function reconcileInstance(ctx: ReconcileContext, instance: string): Promise<ReconcileResult> {
  const policies = ctx.cluster
    .policies()
    .filter((p) => p.metadata.deletionTimestamp === undefined && selectInstance(p) === instance);
  const badInstance = instanceProblem(instance);
  const verdicts = policies.map((policy) => ({
    policy,
    accepted:
      badInstance === undefined
        ? validatePolicy(policy)
        : ({
            ok: false,
            reason: 'InvalidSpec',
            message: `spec.proxySelector.matchLabels["${INSTANCE_LABEL}"]: ${badInstance}`,
          } as const),
  }));

  let configMap: ReconcileResult['configMap'] = 'none';
  let generations: Record<string, number> = {};
  let renderedHash = '';
  if (badInstance === undefined) {
    const name = configMapName(instance);
    const live = ctx.cluster.configMap(name);
    const rendered: MetricPolicy[] = [];
    for (const { policy, accepted } of verdicts) {
      const kept = accepted.ok ? policy : lastAccepted(live, policy);
      if (kept !== undefined) rendered.push(kept);
    }
    // What the proxy will load must pass the proxy's validation as one configuration; each policy
    // did alone, so a failure here is a bug, and the live ConfigMap is better left as it is.
    validatePolicies(rendered.map(toDocument));
    const desired = renderProxyConfigMap({
      instance,
      namespace: ctx.namespace,
      policies: rendered,
      operatorVersion: ctx.operatorVersion,
    });
    if (needsApply(desired, live)) {
      await ctx.cluster.applyConfigMap(desired);
      configMap = 'written';
    } else {
      configMap = 'skipped';
    }
    generations = renderedGenerations(desired);
    renderedHash = desired.metadata.annotations[CONFIG_HASH_ANNOTATION] ?? '';
  }

  let statusWrites = 0;
  for (const { policy, accepted } of verdicts) {
    const now = ctx.now();
    const next = statusWithoutProxies(
      computeStatus({
        policy,
        accepted,
        proxies: [],
        renderedHash,
        renderedGenerations: generations,
        topOffenders: [],
        now,
      }),
      policy,
      now,
    );
    if (statusEqual(policy.status, next)) continue;
    await ctx.cluster.writePolicyStatus(policy, next);
    statusWrites++;
  }
  const rejected = verdicts.filter((v) => !v.accepted.ok).length;
  return { configMap, accepted: verdicts.length - rejected, rejected, statusWrites };
}

/**
 * Whether the live ConfigMap differs from the desired one in anything the operator owns: a data key
 * it writes, a label or an annotation it sets. Keys and labels others added are theirs, as
 * server-side apply sees it, and do not count.
 */
export function needsApply(desired: ConfigMap, live: LiveConfigMap | undefined): boolean {
  if (live === undefined) return true;
  const differs = (want: Record<string, string>, have: Record<string, string> | undefined) =>
    Object.entries(want).some(([k, v]) => have?.[k] !== v);
  return (
    differs(desired.data, live.data) ||
    differs(desired.metadata.labels, live.metadata.labels) ||
    differs(desired.metadata.annotations, live.metadata.annotations)
  );
}

/** Whether the proxy would accept the policy's spec, and why not: validatePolicies, one policy alone. */
export function validatePolicy(policy: MetricPolicy): Acceptance {
  const doc = toDocument(policy);
  try {
    validatePolicies([doc]);
    return { ok: true };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The validator names the source on every line; in the policy's own status that is noise.
    const prefix = `${doc.source}: `;
    const message = err.message
      .split('\n')
      .map((line) => (line.startsWith(prefix) ? line.slice(prefix.length) : line))
      .join('\n');
    return { ok: false, reason: 'InvalidSpec', message };
  }
}

function toDocument(policy: MetricPolicy) {
  return {
    name: policy.metadata.name,
    namespace: policy.metadata.namespace,
    source: policyId(policy),
    spec: policy.spec,
  };
}

/**
 * The generation of `policy` the live ConfigMap holds, so that a rejected edit leaves the last
 * accepted generation in force, as a proxy keeps its last good configuration. Only a ConfigMap
 * whose data still matches its hash annotation is trusted: a hand-edited one holds nothing the
 * operator accepted.
 */
export function lastAccepted(
  live: LiveConfigMap | undefined,
  policy: MetricPolicy,
): MetricPolicy | undefined {
  const text = live?.data?.[CONFIG_KEY];
  if (live === undefined || text === undefined) return undefined;
  if (createHash('sha256').update(text).digest('hex') !== live.metadata.annotations?.[CONFIG_HASH_ANNOTATION])
    return undefined;
  const generation = renderedGenerations(live)[policyId(policy)];
  if (generation === undefined) return undefined;
  let docs: ReturnType<typeof parsePolicyFile>;
  try {
    docs = parsePolicyFile(CONFIG_KEY, text);
  } catch {
    return undefined;
  }
  const doc = docs.find((d) => d.name === policy.metadata.name && d.namespace === policy.metadata.namespace);
  if (doc === undefined) return undefined;
  const kept: MetricPolicy = {
    apiVersion: policy.apiVersion,
    kind: policy.kind,
    metadata: { name: policy.metadata.name, namespace: policy.metadata.namespace, generation },
    spec: doc.spec as MetricPolicy['spec'],
  };
  // It passed when it was rendered; an operator upgrade with a stricter validator may disagree.
  return validatePolicy(kept).ok && selectInstance(kept) === selectInstance(policy) ? kept : undefined;
}

/** Why Ready and Degraded are Unknown while the operator does not look at the proxies. */
export const PROXIES_NOT_OBSERVED =
  'This operator version does not discover proxies yet, so whether they run this generation is not known.';

/**
 * The status without what only proxy discovery can tell: computeStatus, given no proxies, would
 * say Ready=False NoProxies, which claims the operator looked. While the policy is accepted, Ready
 * and Degraded are Unknown (reason ProxiesNotObserved), and the proxies and topOffenders fields
 * are left out. A rejected policy keeps computeStatus's NotAccepted conditions, which are true
 * whatever the proxies do.
 */
export function statusWithoutProxies(
  status: MetricPolicyStatus,
  policy: MetricPolicy,
  now: Date,
): MetricPolicyStatus {
  const { proxies: _proxies, topOffenders: _topOffenders, ...rest } = status;
  const conditions = status.conditions ?? [];
  const accepted = conditions.find((c) => c.type === 'Accepted')?.status === 'True';
  if (!accepted) return rest;
  const previous = policy.status?.conditions ?? [];
  const unknown = (type: string) => {
    const [c] = setCondition(
      previous.filter((p) => p.type === type),
      {
        type,
        status: 'Unknown',
        reason: 'ProxiesNotObserved',
        message: PROXIES_NOT_OBSERVED,
        observedGeneration: policy.metadata.generation,
      },
      now,
    );
    return c!;
  };
  return {
    ...rest,
    conditions: conditions.map((c) => (c.type === READY || c.type === DEGRADED ? unknown(c.type) : c)),
  };
}
