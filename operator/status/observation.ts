// What the operator saw of an instance's proxies in one round, in the shape computeStatus takes.
// Pure: operator/proxies/poll.ts does the polling, this only reads its result.

import type { TopOffender } from '../api/types.js';
import type { ProxyUsageReport } from '../usage/reads.js';
import type { ProxyUnusedReport } from '../usage/status.js';
import type { ProxyReport } from './conditions.js';
import type { EndpointPoll, PolicyOffenders } from './offenders.js';

/**
 * Either the proxies of the instance as polled, or why they were not looked at; in the second case
 * Ready and Degraded are Unknown with that reason and message.
 */
export type ProxyObservation =
  | {
      readonly observed: true;
      /** Every proxy of the instance, reachable or not. */
      readonly proxies: readonly ProxyReport[];
      /** By policy id; a policy not in it dropped nothing the proxies listed. */
      readonly offenders: ReadonlyMap<string, PolicyOffenders>;
      /**
       * True when a policy missing from `offenders` is known to drop nothing per second: every
       * proxy answered this round and the one before with a complete list of its drops.
       */
      readonly complete: boolean;
      /** Each reachable proxy's unused report (spec.unused), by policy id. */
      readonly unused?: ReadonlyMap<string, readonly ProxyUnusedReport[]>;
      /** The fullest limit of each policy with limits, in %, over the proxies. */
      readonly limits?: ReadonlyMap<string, number>;
      /**
       * False when no proxy's drops are in `offenders`: the last rate round reached none of them.
       * The statuses then keep what the proxies last told, marked stale. Absent: true.
       */
      readonly reported?: boolean;
      /** The usage report of each proxy that records reads. */
      readonly usage?: readonly ProxyUsageReport[];
    }
  | { readonly observed: false; readonly reason: string; readonly message: string };

/** The observation of one ProxyPoller round (PollRound's fields). */
export function observationOf(round: {
  readonly proxies: readonly ProxyReport[];
  readonly current: readonly EndpointPoll[];
  readonly previous: readonly EndpointPoll[];
  readonly offenders: ReadonlyMap<string, PolicyOffenders>;
  readonly unused?: ReadonlyMap<string, readonly ProxyUnusedReport[]>;
  readonly limits?: ReadonlyMap<string, number>;
  readonly usage?: readonly ProxyUsageReport[];
}): ProxyObservation {
  const previous = new Set(round.previous.map((p) => p.endpoint));
  const complete =
    round.current.length === round.proxies.length &&
    round.current.every((p) => previous.has(p.endpoint) && p.report.drops.length < p.limit);
  return {
    observed: true,
    proxies: round.proxies,
    offenders: round.offenders,
    complete,
    unused: round.unused ?? new Map(),
    limits: round.limits ?? new Map(),
    reported: round.current.length > 0,
    usage: round.usage ?? [],
  };
}

/** computeStatus's topOffenders, droppedSamplesPerSecond and limitsFillPercent for the policy `id`. */
export function policyDrops(
  observation: Extract<ProxyObservation, { observed: true }>,
  id: string,
): { topOffenders: readonly TopOffender[]; droppedSamplesPerSecond?: number; limitsFillPercent?: number } {
  const fill = observation.limits?.get(id);
  const limits = fill === undefined ? {} : { limitsFillPercent: fill };
  const mine = observation.offenders.get(id);
  if (mine === undefined) {
    return observation.complete && observation.proxies.length > 0
      ? { topOffenders: [], droppedSamplesPerSecond: 0, ...limits }
      : { topOffenders: [], ...limits };
  }
  return {
    ...limits,
    topOffenders: mine.topOffenders,
    ...(mine.droppedSamplesPerSecond === undefined
      ? {}
      : { droppedSamplesPerSecond: mine.droppedSamplesPerSecond }),
  };
}
