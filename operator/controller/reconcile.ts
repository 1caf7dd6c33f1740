// Reconciles one proxy instance in two steps, which the controller runs from two queues:
//
//   renderInstance   the MetricPolicies that select the instance, validated and rendered into the
//                    ConfigMaps its proxies mount (one per shard); only shards whose content
//                    drifted from the live ones are written. Fast, so an edit reaches the proxies
//                    within seconds however many statuses are waiting.
//   reconcileStatus  one policy's status, from the instance's last render and the last reading of
//                    its proxies; written only when something a user can see changed (statusChanged),
//                    with an Event only on a transition (statusEvents).
//
// Level-triggered: both read the current state from the watch caches and converge, whatever queued
// them, so they are safe to run any number of times. reconcileInstance runs both in one go, for
// callers that reconcile an instance as a whole.

import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { MetricReadsT, MetricUsageSpecT } from '../../crds/metric-policy.js';
import { ConfigError, parseConfigFile, parsePolicyFile } from '../../policy/load.js';
import { parseReplicas } from '../../policy/replicas.js';
import { validatePolicies } from '../../policy/validate.js';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import {
  CONFIG_HASH_ANNOTATION,
  isRenderedKey,
  proxyConfigHash,
  REPLICAS_KEY,
  renderedGenerations,
  renderPolicyYaml,
  renderProxyConfigMaps,
  shardKey,
  shardName,
  shardOf,
  shardProblem,
  USAGE_KEY,
} from '../render/configmap.js';
import { INSTANCE_LABEL, instanceProblem, policyId, selectInstance } from '../render/instance.js';
import {
  type Acceptance,
  computeStatus,
  DEGRADED,
  offenderLine,
  READY,
  setCondition,
  statusChange,
  statusChanged,
} from '../status/conditions.js';
import { type PolicyEvent, statusEvents } from '../status/events.js';
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
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

/** What an Event is recorded on: a MetricPolicy, or a ConfigMap the operator renders. */
export interface EventTarget {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly uid?: string | undefined;
    readonly resourceVersion?: string | undefined;
  };
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
  /**
   * Records a Kubernetes Event; best effort and asynchronous (operator/controller/recorder.ts), so it
   * resolves at once, even when the Event is never written.
   */
  recordEvent(target: EventTarget, event: PolicyEvent): void;
}

/**
 * Validations and rendered documents, by policy uid and generation: the spec of a generation never
 * changes, so a render of thousands of policies validates and renders only those edited since.
 * Owned by the controller; `retain` forgets the policies no longer rendered.
 */
export class RenderCache {
  readonly #verdicts = new Map<string, Acceptance>();
  readonly #yaml = new Map<string, string>();

  verdict(policy: MetricPolicy): Acceptance {
    return memo(this.#verdicts, policy, validatePolicy);
  }

  yaml(policy: MetricPolicy): string {
    return memo(this.#yaml, policy, renderPolicyYaml);
  }

  /** Keeps only the entries of `policies`, as they are now. */
  retain(policies: readonly MetricPolicy[]): void {
    const keep = new Set(policies.map(cacheKey));
    for (const map of [this.#verdicts, this.#yaml] as const)
      for (const k of map.keys()) if (!keep.has(k)) map.delete(k);
  }
}

function cacheKey(policy: MetricPolicy): string {
  return `${policy.metadata.uid ?? policyId(policy)}@${policy.metadata.generation}`;
}

function memo<T>(map: Map<string, T>, policy: MetricPolicy, make: (p: MetricPolicy) => T): T {
  // Only objects the API server numbered: a policy without a uid (a test fixture) is never cached.
  if (policy.metadata.uid === undefined) return make(policy);
  const key = cacheKey(policy);
  let value = map.get(key);
  if (value === undefined) {
    value = make(policy);
    map.set(key, value);
  }
  return value;
}

export interface ReconcileContext {
  readonly cluster: Cluster;
  /** Where the ConfigMaps live: the proxies' namespace. */
  readonly namespace: string;
  readonly operatorVersion: string;
  readonly now: () => Date;
  /**
   * The proxies of an instance, polled now, or why they are not looked at. Called by
   * reconcileInstance once per reconcile of an instance that has policies.
   */
  readonly observe: (instance: string) => Promise<ProxyObservation>;
  /** The directory the proxies mount the ConfigMaps at, their `--config`: it is in the hash they report. */
  readonly proxyConfigPath: string;
  /** Resolves when one more status write may be made (the write rate limit). */
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
  /** ConfigMaps the configuration is split over (--config-shards); default 1. */
  readonly shards?: number;
  readonly cache?: RenderCache;
  /**
   * How many proxies of the instance the last look discovered, rendered for their fallback share
   * of each limit (README "Limits across replicas"); undefined while not known (none discovered
   * yet, or discovery off): the count rendered before stays.
   */
  readonly replicas?: (instance: string) => number | undefined;
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

/** An instance as its last render left it: what statuses are computed from. */
export interface InstanceRender {
  readonly instance: string;
  /** By policy id: the generation judged and the verdict, for every policy of the instance. */
  readonly verdicts: ReadonlyMap<string, { readonly generation: number; readonly accepted: Acceptance }>;
  /** The hash the proxies report once they load what is rendered; '' for an invalid instance. */
  readonly renderedHash: string;
  /** The generation of each policy in force in the live ConfigMaps, by policy id. */
  readonly generations: Readonly<Record<string, number>>;
  readonly usageSpec: MetricUsageSpecT | undefined;
  readonly usageProblems: readonly string[];
  /** Why a policy's shard could not be written, by policy id; the live shard stays in force. */
  readonly undeliverable: ReadonlyMap<string, string>;
  /** written: a ConfigMap was applied; skipped: all were up to date; none: the instance is invalid. */
  readonly configMap: 'written' | 'skipped' | 'none';
  /** ConfigMaps applied. */
  readonly applies: number;
  /** Shards that could not be written: the ConfigMap and why. */
  readonly problems: readonly { readonly configMap: string; readonly message: string }[];
  /** The replica count rendered for the proxies (ReconcileContext.replicas); undefined: none. */
  readonly replicas?: number | undefined;
  /**
   * The generations of earlier renders of the instance, by the hash the proxies report for them
   * (the controller keeps a few): a proxy still running one of them runs what it holds.
   */
  readonly earlier?: ReadonlyMap<string, Readonly<Record<string, number>>>;
  /**
   * The generations each shard's policies file holds, by the sha256 of its text: this render's
   * shards as in force, and (the controller adds them) those of earlier renders.
   */
  readonly shardGenerations?: ReadonlyMap<string, Readonly<Record<string, number>>>;
  /** The path a proxy reads the policy's shard at (the proxies' --config and the shard's key). */
  readonly shardFile?: (id: string) => string;
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
 * Converges one instance: its render, then every policy's status, one after another. Throws when a
 * write fails; the caller retries with backoff, and since nothing here depends on what an earlier
 * run did, a retry picks up where this one stopped.
 */
export async function reconcileInstance(ctx: ReconcileContext, instance: string): Promise<ReconcileResult> {
  const render = await renderInstance(ctx, instance);
  const policies = instancePolicies(ctx.cluster, instance);
  // An invalid instance has no proxies to ask: every policy of it is rejected, whatever they run.
  const observation: ProxyObservation =
    render.configMap !== 'none' && policies.length > 0
      ? await ctx.observe(instance)
      : { observed: false, reason: 'ProxiesNotObserved', message: '' };
  let statusWrites = 0;
  let events = 0;
  for (const policy of policies) {
    const r = await reconcileStatus(ctx, policy, render, observation);
    if (r.written) statusWrites++;
    events += r.events;
  }
  const rejected = [...render.verdicts.values()].filter((v) => !v.accepted.ok).length;
  return {
    configMap: render.configMap,
    accepted: render.verdicts.size - rejected,
    rejected,
    statusWrites,
    events,
  };
}

/** The policies that select `instance` and are not being deleted. */
export function instancePolicies(cluster: Pick<Cluster, 'policies'>, instance: string): MetricPolicy[] {
  return cluster
    .policies()
    .filter((p) => p.metadata.deletionTimestamp === undefined && selectInstance(p) === instance);
}

/**
 * Validates and renders the instance's policies and writes the shards that drifted. A shard too
 * large for the API server is not written: the live one stays in force, and `problems` and
 * `undeliverable` say why, for the statuses and an Event. Throws when a write fails.
 */
export async function renderInstance(ctx: ReconcileContext, instance: string): Promise<InstanceRender> {
  const policies = instancePolicies(ctx.cluster, instance);
  const badInstance = instanceProblem(instance);
  const verdict = (p: MetricPolicy): Acceptance =>
    badInstance === undefined
      ? (ctx.cache?.verdict(p) ?? validatePolicy(p))
      : {
          ok: false,
          reason: 'InvalidSpec',
          message: `spec.proxySelector.matchLabels["${INSTANCE_LABEL}"]: ${badInstance}`,
        };
  const verdicts = new Map(
    policies.map((p) => [policyId(p), { generation: p.metadata.generation, accepted: verdict(p) }] as const),
  );
  const base = {
    instance,
    verdicts,
    usageSpec: undefined,
    usageProblems: [],
    undeliverable: new Map<string, string>(),
    problems: [],
  };
  if (badInstance !== undefined)
    return { ...base, renderedHash: '', generations: {}, configMap: 'none', applies: 0 };

  const shards = ctx.shards ?? 1;
  const live = Array.from({ length: shards }, (_, i) => ctx.cluster.configMap(shardName(instance, i)));
  const rendered: MetricPolicy[] = [];
  for (const p of policies) {
    const kept = verdicts.get(policyId(p))!.accepted.ok ? p : lastAccepted(live, p, shards);
    if (kept !== undefined) rendered.push(kept);
  }
  let usage: MetricUsageSpecT | string | undefined;
  let usageSpec: MetricUsageSpecT | undefined;
  let usageProblems: readonly string[] = [];
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
      usage = live[0]?.data?.[USAGE_KEY];
      usageSpec = usage === undefined ? undefined : liveUsage(usage);
    }
  }
  const discovered = ctx.replicas?.(instance);
  const liveReplicas = live[0]?.data?.[REPLICAS_KEY];
  const replicas = discovered ?? liveReplicas;
  const cache = ctx.cache;
  const desired = renderProxyConfigMaps({
    instance,
    namespace: ctx.namespace,
    policies: rendered,
    operatorVersion: ctx.operatorVersion,
    usage,
    shards,
    replicas,
    ...(cache === undefined ? {} : { policyYaml: (p: MetricPolicy) => cache.yaml(p) }),
  });
  cache?.retain([...policies, ...rendered]);

  // What the proxies will load: each shard as written, or as it stays when it cannot be.
  const inForce: Pick<ConfigMap, 'data'>[] = [];
  const generations: Record<string, number> = {};
  const shardGenerations = new Map<string, Readonly<Record<string, number>>>();
  const undeliverable = new Map<string, string>();
  const problems: { configMap: string; message: string }[] = [];
  let applies = 0;
  for (const [i, cm] of desired.entries()) {
    const problem = shardProblem(cm);
    const now = live[i];
    if (problem !== undefined) {
      problems.push({ configMap: cm.metadata.name, message: problem });
      for (const id of Object.keys(renderedGenerations(cm))) undeliverable.set(id, problem);
      inForce.push({ data: liveRendered(now) });
      const held = now === undefined ? {} : renderedGenerations(now);
      Object.assign(generations, held);
      const text = now?.data?.[shardKey(i)];
      if (text !== undefined) shardGenerations.set(sha256(text), held);
      continue;
    }
    if (needsApply(cm, now)) {
      await ctx.cluster.applyConfigMap(cm);
      applies++;
    }
    inForce.push(cm);
    const held = renderedGenerations(cm);
    Object.assign(generations, held);
    shardGenerations.set(sha256(cm.data[shardKey(i)] ?? ''), held);
  }
  // Shards beyond the count (it was lowered) are emptied, so no policy is loaded twice.
  for (let i = shards; ; i++) {
    const stale = ctx.cluster.configMap(shardName(instance, i));
    if (stale === undefined) break;
    const empty = renderProxyConfigMaps({
      instance,
      namespace: ctx.namespace,
      policies: [],
      operatorVersion: ctx.operatorVersion,
      shards: i + 1,
    })[i]!;
    if (needsApply(empty, stale)) {
      await ctx.cluster.applyConfigMap(empty);
      applies++;
    }
  }
  return {
    ...base,
    usageSpec,
    usageProblems,
    undeliverable,
    problems,
    generations,
    renderedHash: proxyConfigHash(inForce, ctx.proxyConfigPath),
    shardGenerations,
    shardFile: (id: string) => posix.join(ctx.proxyConfigPath, shardKey(shardOf(id, shards))),
    configMap: applies > 0 ? 'written' : 'skipped',
    applies,
    replicas: discovered ?? liveCount(liveReplicas),
  };
}

/** The count of a live replicas key, or undefined when there is none or it does not read. */
function liveCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseReplicas(text);
  } catch {
    return undefined;
  }
}

/** The keys of a live shard that the operator renders, as they stand. */
function liveRendered(live: LiveConfigMap | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(live?.data ?? {}).filter(([k]) => isRenderedKey(k)));
}

/** The status `policy` should have, from its instance's render and the last look at its proxies. */
export function desiredStatus(
  policy: MetricPolicy,
  render: InstanceRender,
  observation: ProxyObservation,
  now: Date,
): MetricPolicyStatus | undefined {
  const id = policyId(policy);
  const judged = render.verdicts.get(id);
  // Not rendered yet, or an older generation was: the render that is queued will tell.
  if (judged === undefined || judged.generation !== policy.metadata.generation) return undefined;
  const { accepted } = judged;
  const undeliverable = render.undeliverable.get(id);
  const generation = policy.metadata.generation;
  const holds = (hash: string) =>
    (hash === render.renderedHash && render.generations[id] === generation) ||
    render.earlier?.get(hash)?.[id] === generation;
  const { shardFile, shardGenerations } = render;
  const file = shardFile?.(id);
  const holdsFiles =
    file === undefined || shardGenerations === undefined
      ? undefined
      : (files: Readonly<Record<string, string>>) => {
          const h = files[file];
          return h !== undefined && shardGenerations.get(h)?.[id] === generation;
        };
  // The hash named in status stays while it still holds this generation: an edit of another
  // policy changes the instance's hash, and must not rewrite every status.
  const named = policy.status?.proxies?.configHash;
  const stable =
    named !== undefined && policy.status?.observedGeneration === generation && holds(named)
      ? named
      : undefined;
  const input = {
    policy,
    accepted,
    renderedHash: render.renderedHash,
    renderedGenerations: render.generations,
    now,
    holds,
    ...(holdsFiles === undefined ? {} : { holdsFiles }),
    ...(stable === undefined ? {} : { configHash: stable }),
    ...(undeliverable === undefined ? {} : { undeliverable }),
  };
  // Whether what the proxies drop is known from this reading: some proxy answered with its report.
  const reported =
    observation.observed && observation.reported !== false && observation.proxies.some((p) => p.reachable);
  let next: MetricPolicyStatus;
  if (observation.observed) {
    next = computeStatus({ ...input, proxies: observation.proxies, ...policyDrops(observation, id) });
  } else {
    next = statusWithoutProxies(
      computeStatus({ ...input, proxies: [], topOffenders: [] }),
      policy,
      now,
      observation,
    );
  }
  // The proxies could not be asked: what they last told stays, marked as such.
  if (!reported && accepted.ok) next = withStaleOffenders(next, policy.status);
  const unused = accepted.ok
    ? unusedStatus({
        policy,
        usage: render.usageSpec,
        problems: render.usageProblems,
        reports: observation.observed ? (observation.unused?.get(id) ?? []) : undefined,
      })
    : undefined;
  if (unused !== undefined) next.unused = unused;
  // What is read and what it costs, for the policies that judge usage, from the proxies that record reads.
  if (
    accepted.ok &&
    policy.spec.unused !== undefined &&
    observation.observed &&
    (observation.usage?.length ?? 0) > 0
  )
    next.usage = usageStatus(observation.usage ?? []);
  return next;
}

/**
 * Writes the policy's status when it changed in something a user can see, and records the Events
 * of its transitions. Throws when the write fails (a 409 when the policy changed since it was read).
 */
export async function reconcileStatus(
  ctx: Pick<ReconcileContext, 'cluster' | 'now' | 'writeLimit'>,
  policy: MetricPolicy,
  render: InstanceRender,
  observation: ProxyObservation,
  options: { readonly hold?: (next: MetricPolicyStatus) => boolean } = {},
): Promise<{ written: boolean; events: number; change?: string }> {
  const next = desiredStatus(policy, render, observation, ctx.now());
  if (next === undefined || !statusChanged(policy.status, next) || options.hold?.(next) === true)
    return { written: false, events: 0 };
  await ctx.writeLimit();
  await ctx.cluster.writePolicyStatus(policy, next);
  const events = statusEvents(policy, next);
  for (const event of events) ctx.cluster.recordEvent(policy, event);
  return { written: true, events: events.length, change: statusChange(policy.status, next) ?? 'other' };
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
  const stale = Object.keys(live.data ?? {}).some((k) => isRenderedKey(k) && desired.data[k] === undefined);
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
  shards: readonly (LiveConfigMap | undefined)[],
  policy: MetricPolicy,
  count = shards.length,
): MetricPolicy | undefined {
  const shard = shardOf(policyId(policy), count);
  const live = shards[shard];
  const key = shardKey(shard);
  const text = live?.data?.[key];
  if (live === undefined || text === undefined) return undefined;
  if (createHash('sha256').update(text).digest('hex') !== live.metadata.annotations?.[CONFIG_HASH_ANNOTATION])
    return undefined;
  const generation = renderedGenerations(live)[policyId(policy)];
  if (generation === undefined) return undefined;
  let docs: ReturnType<typeof parsePolicyFile>;
  try {
    docs = parsePolicyFile(key, text);
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
    limitsFillPercent: _fill,
    limits: _limits,
    limitsSummary: _summary,
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
    // A configuration that cannot be written is known without asking any proxy.
    conditions: conditions.map((c) =>
      (c.type === READY || c.type === DEGRADED) && c.reason !== 'ConfigTooLarge' ? unknown(c.type) : c,
    ),
  };
}

/**
 * `next` with the drops `previous` reported, marked stale: while no proxy answers, the last known
 * offenders are better than none, as long as the status says they are old.
 */
export function withStaleOffenders(
  next: MetricPolicyStatus,
  previous: MetricPolicyStatus | undefined,
): MetricPolicyStatus {
  const { topOffenders, droppedSamplesPerSecond, limitsFillPercent, limits, limitsSummary } = previous ?? {};
  if (topOffenders === undefined || topOffenders.length === 0) {
    const { offendersStale: _s, ...rest } = next;
    return rest;
  }
  return {
    ...next,
    topOffenders,
    topOffender: `${offenderLine(topOffenders[0]!)} (stale)`,
    ...(droppedSamplesPerSecond === undefined ? {} : { droppedSamplesPerSecond }),
    ...(limitsFillPercent === undefined ? {} : { limitsFillPercent }),
    ...(limits === undefined ? {} : { limits }),
    ...(limitsSummary === undefined ? {} : { limitsSummary }),
    offendersStale: true,
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
