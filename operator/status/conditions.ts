// A MetricPolicy's status, computed from what the operator knows: whether the policy was accepted,
// what was rendered, what each proxy reports. Pure: the reconcile loop gathers the inputs, calls
// computeStatus, and writes the result only when statusEqual says it changed.
//
// Conditions follow the Kubernetes API conventions ("Typical status properties"): a condition's
// lastTransitionTime is when its status last changed, and every condition names the generation it
// describes.

import {
  type Condition,
  type MetricPolicy,
  type MetricPolicyStatus,
  TOP_OFFENDERS_LIMIT,
  type TopOffender,
} from '../api/types.js';
import { policyId, selectInstance } from '../render/instance.js';
import { boundOffenders } from './offenders.js';

/**
 * True: the spec is valid and the policy is in its instance's rendered configuration.
 * False: the spec was rejected (reason InvalidSpec or Conflict, the message says why); the
 * configuration holds an earlier accepted generation, if any.
 * Unknown: the operator has not processed this generation yet.
 */
export const ACCEPTED = 'Accepted';
/**
 * True: every proxy of the policy's instance reports the configuration hash that holds this
 * policy's current generation.
 * False: some do not yet (reason Pending), the instance has no proxies (NoProxies), or the policy
 * is not accepted (NotAccepted).
 * Unknown: the proxies that answered are up to date, but some could not be reached
 * (ProxiesUnreachable).
 */
export const READY = 'Ready';
/**
 * True: the policy is accepted but something keeps it from working as intended: a proxy reports
 * that its last reload failed (ReloadFailed), or proxies cannot be reached (ProxiesUnreachable).
 * False: accepted and nothing is known to be wrong (AsExpected), or not accepted (NotAccepted;
 * Accepted says why).
 * Unknown: the operator has not processed this generation yet.
 */
export const DEGRADED = 'Degraded';

export type ConditionStatus = Condition['status'];

/** A condition to set: lastTransitionTime is setCondition's to decide. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'>;

/** Why a policy was rejected: InvalidSpec for a spec the proxy would refuse, Conflict for a clash with another policy. */
export type Acceptance = { ok: true } | { ok: false; reason: 'InvalidSpec' | 'Conflict'; message: string };

/** What the operator learnt from one proxy of the policy's instance. */
export interface ProxyReport {
  readonly endpoint: string;
  readonly reachable: boolean;
  /** The hash at GET /api/v1/status/config; absent when unreachable. */
  readonly configHash?: string;
  /** The proxy's last failed reload, which left its previous configuration in force. */
  readonly lastError?: string;
  /** The sha256 of each file it runs, by path; absent from a proxy that predates them. */
  readonly fileHashes?: Readonly<Record<string, string>>;
  /** Why it could not be reached; absent when reachable. */
  readonly reason?: string;
}

export interface StatusInput {
  /** The policy as last read; its status supplies the transition times to keep. */
  readonly policy: MetricPolicy;
  readonly accepted: Acceptance;
  /** Every proxy of the policy's instance. */
  readonly proxies: readonly ProxyReport[];
  /**
   * The hash the proxies report once they load the latest rendering of the instance's ConfigMap
   * (proxyConfigHash in operator/render/configmap.ts), not the ConfigMap's own annotation.
   */
  readonly renderedHash: string;
  /** The generations in that rendering, by policy id (renderedGenerations of the ConfigMap). */
  readonly renderedGenerations: Readonly<Record<string, number>>;
  /**
   * Whether a configuration hash a proxy reports holds this policy's generation: by default only
   * renderedHash does; the controller also knows the hashes of the renders before it, so a policy
   * is Ready as soon as the proxies run any configuration with its generation, and stays Ready,
   * unwritten, when an edit of another policy changes the instance's hash.
   */
  readonly holds?: (hash: string) => boolean;
  /**
   * Whether the files a proxy runs hold this generation in the policy's own shard, whatever the
   * other shards hold: the kubelet updates each ConfigMap of a projected volume on its own, so
   * while shards change a proxy may run a set the operator never rendered as a whole, and a
   * policy whose shard it runs is in force all the same. Absent: only `holds` counts.
   */
  readonly holdsFiles?: (fileHashes: Readonly<Record<string, string>>) => boolean;
  /** The hash status.proxies names; default renderedHash (the caller keeps an earlier one that still holds). */
  readonly configHash?: string;
  /** This policy's offenders (aggregateOffenders); bounded to TOP_OFFENDERS_LIMIT and sorted here. */
  readonly topOffenders: readonly TopOffender[];
  /** This policy's drop rate over every metric; absent when not known. */
  readonly droppedSamplesPerSecond?: number;
  /** How full the policy's fullest limit is, in %; absent when not known. */
  readonly limitsFillPercent?: number;
  /** Its limits in use and their line (operator/status/limits.ts limitsStatus); absent when not known. */
  readonly limits?: MetricPolicyStatus['limits'];
  readonly limitsSummary?: string;
  /**
   * Why the policy's part of the configuration cannot be delivered (a shard too large for the API
   * server); the live ConfigMap stays in force.
   */
  readonly undeliverable?: string;
  readonly now: Date;
}

/** Condition messages are for people; a proxy's error can be long, the API allows 32768. */
const MAX_MESSAGE = 1024;
/** How many endpoints a message names before it only counts. */
const MAX_NAMED = 3;

/**
 * Sets one condition in a list and returns the new list; the input is not changed. A condition of
 * the same type is replaced where it stands, keeping its lastTransitionTime when the status is the
 * same, and taking `now` when it changed; a new type is appended with `now`.
 */
export function setCondition(
  conditions: readonly Condition[],
  next: ConditionUpdate,
  now: Date,
): Condition[] {
  const i = conditions.findIndex((c) => c.type === next.type);
  const old = conditions[i];
  const lastTransitionTime =
    old !== undefined && old.status === next.status ? old.lastTransitionTime : rfc3339(now);
  const condition: Condition = { ...next, message: truncate(next.message), lastTransitionTime };
  return old === undefined ? [...conditions, condition] : conditions.map((c, j) => (j === i ? condition : c));
}

/** The status the policy should have. Holds exactly the Accepted, Ready and Degraded conditions, in that order. */
export function computeStatus(input: StatusInput): MetricPolicyStatus {
  const { policy, proxies } = input;
  const runs = runsOf(input);
  const generation = policy.metadata.generation;
  const previous = policy.status?.conditions ?? [];
  const updates = [accepted(input), ready(input), degraded(input)];
  const conditions = updates.map((u) => {
    const [c] = setCondition(
      previous.filter((p) => p.type === u.type),
      { ...u, observedGeneration: generation },
      input.now,
    );
    return c!;
  });
  const topOffenders = boundOffenders(input.topOffenders, TOP_OFFENDERS_LIMIT);
  const first = topOffenders[0];
  const why = notReadyReason(conditions);
  return {
    observedGeneration: generation,
    conditions,
    ...(why === undefined ? {} : { reason: why }),
    proxies: {
      ready: proxies.filter((p) => p.reachable && runs(p)).length,
      total: proxies.length,
      configHash: input.configHash ?? input.renderedHash,
    },
    topOffenders,
    ...(input.droppedSamplesPerSecond === undefined
      ? {}
      : { droppedSamplesPerSecond: input.droppedSamplesPerSecond }),
    ...(first === undefined ? {} : { topOffender: offenderLine(first) }),
    ...(input.limitsFillPercent === undefined ? {} : { limitsFillPercent: input.limitsFillPercent }),
    ...(input.limits === undefined ? {} : { limits: input.limits }),
    ...(input.limitsSummary === undefined ? {} : { limitsSummary: input.limitsSummary }),
  };
}

/**
 * The Reason printer column: why the policy is not Ready, or what degrades it. The rejection's
 * reason when not accepted, else Ready's reason when Ready is not True, else Degraded's when True;
 * undefined when all is well.
 */
export function notReadyReason(conditions: readonly Condition[]): string | undefined {
  const of = (type: string) => conditions.find((c) => c.type === type);
  const accepted = of(ACCEPTED);
  if (accepted?.status === 'False') return accepted.reason;
  const ready = of(READY);
  if (ready !== undefined && ready.status !== 'True') return ready.reason;
  const degraded = of(DEGRADED);
  if (degraded?.status === 'True') return degraded.reason;
  return undefined;
}

type Update = Omit<ConditionUpdate, 'observedGeneration'>;

function holdsOf(input: StatusInput): (hash: string) => boolean {
  return input.holds ?? ((hash) => hash === input.renderedHash);
}

/** Whether a proxy runs this policy's generation: by its hash (holds) or by its shard's file (holdsFiles). */
function runsOf(input: StatusInput): (p: ProxyReport) => boolean {
  const holds = holdsOf(input);
  const files = input.holdsFiles;
  return (p) =>
    (p.configHash !== undefined && holds(p.configHash)) ||
    (files !== undefined && p.fileHashes !== undefined && files(p.fileHashes));
}

function accepted({ policy, accepted }: StatusInput): Update {
  if (!accepted.ok)
    return { type: ACCEPTED, status: 'False', reason: accepted.reason, message: accepted.message };
  return {
    type: ACCEPTED,
    status: 'True',
    reason: 'Accepted',
    message: `Rendered into the configuration of proxy instance ${selectInstance(policy)}.`,
  };
}

function ready(input: StatusInput): Update {
  const { policy, proxies, renderedHash } = input;
  const generation = policy.metadata.generation;
  const inForce = input.renderedGenerations[policyId(policy)];
  if (!input.accepted.ok) {
    return {
      type: READY,
      status: 'False',
      reason: 'NotAccepted',
      message:
        inForce === undefined
          ? `Generation ${generation} is not accepted, and no earlier generation is in force.`
          : `Generation ${generation} is not accepted; generation ${inForce} stays in force.`,
    };
  }
  if (inForce !== generation && input.undeliverable !== undefined) {
    return {
      type: READY,
      status: 'False',
      reason: 'ConfigTooLarge',
      message: `Generation ${generation} cannot be delivered: ${input.undeliverable}.`,
    };
  }
  if (inForce !== generation) {
    return {
      type: READY,
      status: 'False',
      reason: 'Pending',
      message: `Generation ${generation} is not rendered into the configuration yet.`,
    };
  }
  if (proxies.length === 0) {
    return {
      type: READY,
      status: 'False',
      reason: 'NoProxies',
      message: `No proxy of instance ${selectInstance(policy)} was found.`,
    };
  }
  const reachable = proxies.filter((p) => p.reachable);
  const runs = runsOf(input);
  const behind = reachable.filter((p) => !runs(p));
  if (behind.length > 0) {
    return {
      type: READY,
      status: 'False',
      reason: 'Pending',
      message: `${behind.length} of ${proxies.length} proxies have not loaded configuration ${short(renderedHash)} yet: ${names(behind)}.`,
    };
  }
  const unreachable = proxies.length - reachable.length;
  if (unreachable > 0) {
    return {
      type: READY,
      status: 'Unknown',
      reason: 'ProxiesUnreachable',
      message: `${unreachable} of ${proxies.length} proxies could not be reached: ${unreachableNames(proxies)}.`,
    };
  }
  return {
    type: READY,
    status: 'True',
    reason: 'ConfigLoaded',
    message: `All ${proxies.length} proxies run generation ${generation} (configuration ${short(input.configHash ?? renderedHash)}).`,
  };
}

function degraded({ accepted, proxies, undeliverable }: StatusInput): Update {
  if (!accepted.ok) {
    return { type: DEGRADED, status: 'False', reason: 'NotAccepted', message: 'See the Accepted condition.' };
  }
  if (undeliverable !== undefined) {
    return {
      type: DEGRADED,
      status: 'True',
      reason: 'ConfigTooLarge',
      message: `The configuration holding this policy cannot be written: ${undeliverable}.`,
    };
  }
  const failed = proxies.filter((p) => p.reachable && p.lastError !== undefined);
  const first = failed[0];
  if (first !== undefined) {
    return {
      type: DEGRADED,
      status: 'True',
      reason: 'ReloadFailed',
      message: `${failed.length} of ${proxies.length} proxies failed to reload (${names(failed)}); ${first.endpoint}: ${first.lastError}`,
    };
  }
  const unreachable = proxies.filter((p) => !p.reachable);
  if (unreachable.length > 0) {
    return {
      type: DEGRADED,
      status: 'True',
      reason: 'ProxiesUnreachable',
      message: `${unreachable.length} of ${proxies.length} proxies could not be reached: ${unreachableNames(proxies)}.`,
    };
  }
  return { type: DEGRADED, status: 'False', reason: 'AsExpected', message: '' };
}

/**
 * Whether two statuses are the same, field by field, transition times included: the reconcile loop
 * skips the write when they are. Fields that are absent and fields that are undefined are the same;
 * the order of object keys does not matter, the order of lists does.
 */
export function statusEqual(a: MetricPolicyStatus | undefined, b: MetricPolicyStatus | undefined): boolean {
  return deepEqual(a ?? {}, b ?? {});
}

/**
 * Relative change below which a rate in status is not rewritten: a steady drop rate wobbles from
 * one reading to the next, and rewriting thousands of statuses for that would be all the operator
 * does. The status stays within this of the latest reading.
 */
export const RATE_TOLERANCE = 0.05;
/** Fields that are rates: compared within RATE_TOLERANCE. */
const RATE_KEYS = new Set(['droppedSamplesPerSecond', 'samplesPerSecond']);
/**
 * Never a reason for a write on their own: counters that only grow while a policy drops, shown as
 * of the last write (Kubernetes API conventions: status is not for fast-changing values), and the
 * printer line, which is derived from topOffenders (compared with their rates' tolerance) and
 * offendersStale.
 */
const UNCOMPARED_KEYS = new Set(['droppedSamples', 'topOffender']);

/**
 * Whether `next` differs from the live status in something a user can see: statusEqual, except
 * that rates within RATE_TOLERANCE of each other are the same and sample counters do not count.
 * The reconcile writes a status only when this is true, so a steady state writes nothing.
 */
export function statusChanged(live: MetricPolicyStatus | undefined, next: MetricPolicyStatus): boolean {
  return !similar(live ?? {}, next, undefined);
}

/**
 * Why statusChanged is true: the first top-level field that differs (`conditions.Ready` for a
 * condition, by type), `created` for a policy without a status yet, or undefined when nothing a
 * user can see changed. A bounded set of names, so the writes can be counted by it.
 */
export function statusChange(
  live: MetricPolicyStatus | undefined,
  next: MetricPolicyStatus,
): string | undefined {
  if (live === undefined || Object.keys(live).length === 0) return 'created';
  const a = live as Record<string, unknown>;
  const b = next as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const k of keys) {
    if (similar(a[k], b[k], k)) continue;
    if (k !== 'conditions') return k;
    const types = new Set([...(live.conditions ?? []), ...(next.conditions ?? [])].map((c) => c.type));
    for (const t of [...types].sort()) {
      const x = live.conditions?.find((c) => c.type === t);
      const y = next.conditions?.find((c) => c.type === t);
      if (!similar(x, y, undefined)) return `conditions.${t}`;
    }
    return k;
  }
  return undefined;
}

function similar(a: unknown, b: unknown, key: string | undefined): boolean {
  if (key !== undefined && UNCOMPARED_KEYS.has(key)) return true;
  // No rate yet and a rate of 0 say the same to a user: nothing is dropped. The first status of a
  // policy is often written from a look after a render, which has no rate for it yet; the next
  // rate round's 0 is no reason to write every such policy again.
  if (key !== undefined && RATE_KEYS.has(key) && (a ?? 0) === 0 && (b ?? 0) === 0) return true;
  if (key !== undefined && RATE_KEYS.has(key) && typeof a === 'number' && typeof b === 'number') {
    if (a === b) return true;
    if (a === 0 || b === 0) return false;
    return Math.abs(a - b) <= RATE_TOLERANCE * Math.max(a, b);
  }
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((v, i) => similar(v, b[i], undefined))
    );
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of keys) if (!similar(ra[k], rb[k], k)) return false;
  return true;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]))
    );
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of keys) if (!deepEqual(ra[k], rb[k])) return false;
  return true;
}

/** One line for a printer column: `http_requests_total 1.2k/s series_limit`. */
export function offenderLine(o: TopOffender): string {
  return o.droppedSamplesPerSecond === undefined
    ? `${o.metric} ${si(o.droppedSamples)} dropped ${o.reason}`
    : `${o.metric} ${si(o.droppedSamplesPerSecond)}/s ${o.reason}`;
}

function si(value: number): string {
  // Rounded first, so 999999 reads 1M and not 1000k.
  const n = Number(value.toPrecision(3));
  for (const [unit, size] of [
    ['G', 1e9],
    ['M', 1e6],
    ['k', 1e3],
  ] as const) {
    if (n >= size) return `${Number((n / size).toPrecision(3))}${unit}`;
  }
  return String(n);
}

/** metav1.Time serialises as RFC 3339 in whole seconds. */
export function rfc3339(now: Date): string {
  return `${now.toISOString().slice(0, 19)}Z`;
}

function short(hash: string): string {
  return hash.slice(0, 12);
}

function names(proxies: readonly ProxyReport[]): string {
  const named = proxies.slice(0, MAX_NAMED).map((p) => p.endpoint);
  const more = proxies.length - named.length;
  return more > 0 ? `${named.join(', ')} and ${more} more` : named.join(', ');
}

/** The unreachable proxies, and why the first one was. */
function unreachableNames(proxies: readonly ProxyReport[]): string {
  const down = proxies.filter((p) => !p.reachable);
  const why = down[0]?.reason;
  return why === undefined ? names(down) : `${names(down)} (${down[0]!.endpoint}: ${why})`;
}

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 3)}...`;
}
