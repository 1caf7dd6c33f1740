// Reconciles one proxy instance: the MetricPolicies that select it, the ConfigMap its proxies
// mount, and each policy's status. Level-triggered: it reads the current state from the watch
// caches and the proxies and converges, whatever queued it, so it is safe to run any number of
// times. It writes only what differs: the ConfigMap when its rendered content drifted from the live
// one, a status when statusEqual says it changed, and an Event only on a transition.
//
// The proxies are polled here, in the reconcile, not in a loop of their own: the controller's
// refresh timer only queues every instance, so a status is always computed from one consistent
// reading of the caches and the proxies, and one instance is never polled by two workers at once.
// A reconcile queued by a watch event polls too, which is what shows a user's edit reaching the
// proxies without waiting for the next refresh.

import { createHash } from 'node:crypto';
import type { MetricReadsT, MetricUsageSpecT } from '../../crds/metric-policy.js';
import { ConfigError, parseConfigFile, parsePolicyFile } from '../../proxy/config/load.js';
import { validatePolicies } from '../../proxy/config/validate.js';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import {
  CONFIG_HASH_ANNOTATION,
  CONFIG_KEY,
  proxyConfigHash,
  RENDERED_KEYS,
  renderedGenerations,
  renderProxyConfigMap,
  USAGE_KEY,
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
import { acceptanceEvent, appliedEvents, type PolicyEvent } from '../status/events.js';
import { type ProxyObservation, policyDrops } from '../status/observation.js';
import { usageStatus } from '../usage/reads.js';
import { unusedStatus } from '../usage/status.js';

/** What the cluster reads, as the usage watch (operator/usage/watch.ts) last computed it. */
export interface UsageView {
  readonly spec: MetricUsageSpecT;
  /** Rules, panels or dashboards that could not be read, bounded. */
  readonly problems: readonly string[];
}

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
  /** Records a Kubernetes Event on the policy; best effort, so it resolves even when that fails. */
  recordEvent(policy: MetricPolicy, event: PolicyEvent): Promise<void>;
}

export interface ReconcileContext {
  readonly cluster: Cluster;
  /** Where the ConfigMaps live: the proxies' namespace. */
  readonly namespace: string;
  readonly operatorVersion: string;
  readonly now: () => Date;
  /**
   * The proxies of an instance, polled now, or why they are not looked at. Called once per
   * reconcile of an instance that has policies.
   */
  readonly observe: (instance: string) => Promise<ProxyObservation>;
  /** The directory the proxies mount the ConfigMap at, their `--config`: it is in the hash they report. */
  readonly proxyConfigPath: string;
  /** Resolves when one more status write or Event may be made (the write rate limit). */
  readonly writeLimit: () => Promise<void>;
  /**
   * What the cluster reads, for policies with spec.unused; undefined while the usage watches have
   * not listed everything (the live usage.yaml then stays as it is). Absent: usage is not watched.
   */
  readonly usage?: () => UsageView | undefined;
  /**
   * What the instance's read paths saw read, as of the last poll (operator/usage/reads.ts); it is
   * rendered into usage.yaml with the references. Undefined: no proxy records reads. `notPolled`:
   * the proxies were not polled yet, so whether anything was read is not known.
   */
  readonly reads?: (instance: string) => MetricReadsT | undefined | 'notPolled';
}

/** The usage spec with the reads, the same object while neither changed (its YAML is cached by it). */
const withReadsCache = new WeakMap<MetricUsageSpecT, { reads: MetricReadsT; spec: MetricUsageSpecT }>();
function withReads(spec: MetricUsageSpecT, reads: MetricReadsT | undefined): MetricUsageSpecT {
  if (reads === undefined) return spec;
  const hit = withReadsCache.get(spec);
  if (hit !== undefined && hit.reads === reads) return hit.spec;
  const combined = { ...spec, reads };
  withReadsCache.set(spec, { reads, spec: combined });
  return combined;
}

export interface ReconcileResult {
  /** written: the ConfigMap was applied; skipped: it was up to date; none: the instance is invalid. */
  readonly configMap: 'written' | 'skipped' | 'none';
  readonly accepted: number;
  readonly rejected: number;
  readonly statusWrites: number;
  readonly events: number;
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
  let usageSpec: MetricUsageSpecT | undefined;
  let usageProblems: readonly string[] = [];
  let events = 0;
  const record = async (policy: MetricPolicy, event: PolicyEvent) => {
    await ctx.writeLimit();
    await ctx.cluster.recordEvent(policy, event);
    events++;
  };
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
    let usage: MetricUsageSpecT | string | undefined;
    if (rendered.some((p) => p.spec.unused !== undefined)) {
      const view = ctx.usage?.();
      const reads = ctx.reads?.(instance);
      // A policy that judges by reads must not see a usage without them: what was read would be
      // dropped until the next render. Until the proxies were polled, the live usage.yaml stays.
      const waitForReads =
        reads === 'notPolled' && rendered.some((p) => p.spec.unused?.readWindow !== undefined);
      if (view !== undefined && !waitForReads) {
        usage = withReads(view.spec, reads === 'notPolled' ? undefined : reads);
        usageSpec = usage;
        usageProblems = view.problems;
      } else {
        // Not synced yet (or reads not polled yet): a partial usage would make a drop policy drop
        // what the rest reads.
        usage = live?.data?.[USAGE_KEY];
        usageSpec = usage === undefined ? undefined : liveUsage(usage);
      }
    }
    const desired = renderProxyConfigMap({
      instance,
      namespace: ctx.namespace,
      policies: rendered,
      operatorVersion: ctx.operatorVersion,
      usage,
    });
    generations = renderedGenerations(desired);
    if (needsApply(desired, live)) {
      await ctx.cluster.applyConfigMap(desired);
      configMap = 'written';
      // Recorded now rather than after the statuses: should a status write fail, the retry finds
      // the ConfigMap up to date and would not know to record them.
      const before = live === undefined ? {} : renderedGenerations(live);
      for (const { policy, event } of appliedEvents(policies, before, generations, desired.metadata))
        await record(policy, event);
    } else {
      configMap = 'skipped';
    }
    renderedHash = proxyConfigHash(desired, ctx.proxyConfigPath);
  }

  // An invalid instance has no proxies to ask: every policy of it is rejected, whatever they run.
  const observation: ProxyObservation =
    badInstance === undefined && verdicts.length > 0
      ? await ctx.observe(instance)
      : { observed: false, reason: 'ProxiesNotObserved', message: '' };

  let statusWrites = 0;
  for (const { policy, accepted } of verdicts) {
    const now = ctx.now();
    const input = {
      policy,
      accepted,
      renderedHash,
      renderedGenerations: generations,
      now,
    };
    const next = observation.observed
      ? computeStatus({
          ...input,
          proxies: observation.proxies,
          ...policyDrops(observation, policyId(policy)),
        })
      : statusWithoutProxies(
          computeStatus({ ...input, proxies: [], topOffenders: [] }),
          policy,
          now,
          observation,
        );
    const unused = accepted.ok
      ? unusedStatus({
          policy,
          usage: usageSpec,
          problems: usageProblems,
          reports: observation.observed ? (observation.unused?.get(policyId(policy)) ?? []) : undefined,
        })
      : undefined;
    if (unused !== undefined) next.unused = unused;
    // What is read and what it costs, for the policies that judge usage, from the proxies that record reads.
    if (
      accepted.ok &&
      policy.spec.unused !== undefined &&
      observation.observed &&
      (observation.usage?.length ?? 0) > 0
    ) {
      next.usage = usageStatus(observation.usage ?? []);
    }
    if (statusEqual(policy.status, next)) continue;
    await ctx.writeLimit();
    await ctx.cluster.writePolicyStatus(policy, next);
    statusWrites++;
    const event = acceptanceEvent(policy, next);
    if (event !== undefined) await record(policy, event);
  }
  const rejected = verdicts.filter((v) => !v.accepted.ok).length;
  return { configMap, accepted: verdicts.length - rejected, rejected, statusWrites, events };
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
  // A key the operator renders that is no longer rendered (usage.yaml once no policy uses it).
  const stale = RENDERED_KEYS.some((k) => desired.data[k] === undefined && live.data?.[k] !== undefined);
  return (
    stale ||
    differs(desired.data, live.data) ||
    differs(desired.metadata.labels, live.metadata.labels) ||
    differs(desired.metadata.annotations, live.metadata.annotations)
  );
}

/** The spec of a rendered usage.yaml, or undefined when it does not parse. */
function liveUsage(text: string): MetricUsageSpecT | undefined {
  try {
    return parseConfigFile(USAGE_KEY, text).usage[0]?.spec as MetricUsageSpecT | undefined;
  } catch {
    return undefined;
  }
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

/**
 * The status without what only the proxies can tell, when the operator did not look at them (no
 * discovery configured, or discovery failed): computeStatus, given no proxies, would say
 * Ready=False NoProxies, which claims the operator looked. While the policy is accepted, Ready and
 * Degraded are Unknown with `why`'s reason and message, and the proxies, topOffenders and drop
 * fields are left out. A rejected policy keeps computeStatus's NotAccepted conditions, which are
 * true whatever the proxies do.
 */
export function statusWithoutProxies(
  status: MetricPolicyStatus,
  policy: MetricPolicy,
  now: Date,
  why: { readonly reason: string; readonly message: string },
): MetricPolicyStatus {
  const {
    proxies: _proxies,
    topOffenders: _topOffenders,
    topOffender: _topOffender,
    droppedSamplesPerSecond: _dropped,
    ...rest
  } = status;
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
        reason: why.reason,
        message: why.message,
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
