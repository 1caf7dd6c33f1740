// Each policy's top offenders, from the reports of the proxies that run it. Every proxy answers
// GET /api/v1/stats/top-offenders (proxy/stats/top-offenders.ts) with its own counts: active series
// per metric, and samples dropped per (metric, policy, reason) since it last loaded a
// configuration. The operator polls every proxy, sums the counts across them, and derives rates
// from the difference between two polls of the same proxy, as Prometheus's rate() does: a counter
// that went down, or a proxy that reports a new configuration hash, started again from zero.

import type { TopOffendersReport } from '../../policy/reports.js';
import { TOP_OFFENDERS_LIMIT, type TopOffender } from '../api/types.js';

export { TOP_OFFENDERS_LIMIT } from '../api/types.js';

/** One poll of one proxy's top-offenders endpoint. */
export interface EndpointPoll {
  /** Names the proxy across polls, such as its pod IP and port. */
  readonly endpoint: string;
  /** When the report was fetched, in milliseconds since the epoch. */
  readonly at: number;
  /** The `?limit=` the poll asked for: a list shorter than that is complete. */
  readonly limit: number;
  /**
   * The configuration hash the proxy reported (GET /api/v1/status/config) with this poll. The proxy
   * restarts its drop counters when it loads a different configuration, so a change means a reset.
   */
  readonly configHash?: string;
  readonly report: TopOffendersReport;
}

/** A policy's drops, summed over its proxies. */
export interface PolicyOffenders {
  /** At most the limit, sorted by compareOffenders. */
  readonly topOffenders: TopOffender[];
  /** Samples dropped, over every (metric, reason) the proxies listed. */
  readonly droppedSamples: number;
  /** Samples per second over the same; absent while no proxy could give a rate. */
  readonly droppedSamplesPerSecond?: number;
}

export const NO_OFFENDERS: PolicyOffenders = Object.freeze({ topOffenders: [], droppedSamples: 0 });

export interface AggregateInput {
  /** The latest poll of each reachable proxy. */
  readonly current: readonly EndpointPoll[];
  /** The poll before it, of the same proxies by `endpoint`; rates need one. */
  readonly previous: readonly EndpointPoll[];
  /** Offenders per policy; default TOP_OFFENDERS_LIMIT. */
  readonly limit?: number;
}

interface Sum {
  metric: string;
  reason: string;
  samples: number;
  rate: number | undefined;
}

/**
 * The top offenders of every policy that drops anything, by policy id (`namespace/name`, as the
 * proxy names policies). A policy that is not in the map dropped nothing: use NO_OFFENDERS.
 * A rate is known for a proxy's (metric, reason) when the proxy was polled before and either
 * listed it then, restarted its counters since, or listed fewer drops than it was asked for (so the
 * drop was at zero). Rates sum what is known, so they are a lower bound while some proxy's is not.
 */
export function aggregateOffenders(input: AggregateInput): ReadonlyMap<string, PolicyOffenders> {
  const limit = input.limit ?? TOP_OFFENDERS_LIMIT;
  const previous = new Map(input.previous.map((p) => [p.endpoint, p]));
  const series = new Map<string, number>();
  const byPolicy = new Map<string, Map<string, Sum>>();

  for (const poll of input.current) {
    for (const m of poll.report.metrics) series.set(m.metric, (series.get(m.metric) ?? 0) + m.activeSeries);
    const rates = dropRates(poll, previous.get(poll.endpoint));
    for (const [i, d] of poll.report.drops.entries()) {
      let sums = byPolicy.get(d.policy);
      if (sums === undefined) {
        sums = new Map();
        byPolicy.set(d.policy, sums);
      }
      const key = `${d.metric}\0${d.reason}`;
      let sum = sums.get(key);
      if (sum === undefined) {
        sum = { metric: d.metric, reason: d.reason, samples: 0, rate: undefined };
        sums.set(key, sum);
      }
      sum.samples += d.samples;
      const rate = rates[i];
      if (rate !== undefined) sum.rate = (sum.rate ?? 0) + rate;
    }
  }

  const out = new Map<string, PolicyOffenders>();
  for (const [policy, sums] of byPolicy) {
    let samples = 0;
    let rate: number | undefined;
    const offenders: TopOffender[] = [];
    for (const s of sums.values()) {
      samples += s.samples;
      if (s.rate !== undefined) rate = (rate ?? 0) + s.rate;
      offenders.push({
        metric: s.metric,
        series: series.get(s.metric) ?? 0,
        ...(s.rate === undefined ? {} : { droppedSamplesPerSecond: roundRate(s.rate) }),
        droppedSamples: s.samples,
        reason: s.reason,
      });
    }
    out.set(policy, {
      topOffenders: boundOffenders(offenders, limit),
      droppedSamples: samples,
      ...(rate === undefined ? {} : { droppedSamplesPerSecond: roundRate(rate) }),
    });
  }
  return out;
}

/** The rate of each of `poll`'s drops, by index; undefined where it is not known. */
function dropRates(poll: EndpointPoll, before: EndpointPoll | undefined): (number | undefined)[] {
  const drops = poll.report.drops;
  const seconds = before === undefined ? 0 : (poll.at - before.at) / 1000;
  if (before === undefined || !(seconds > 0)) return drops.map(() => undefined);
  const was = new Map(before.report.drops.map((d) => [dropKey(d), d.samples]));
  const reset =
    (poll.configHash !== undefined &&
      before.configHash !== undefined &&
      poll.configHash !== before.configHash) ||
    drops.some((d) => d.samples < (was.get(dropKey(d)) ?? 0));
  const complete = before.report.drops.length < before.limit;
  return drops.map((d) => {
    const last = reset ? 0 : (was.get(dropKey(d)) ?? (complete ? 0 : undefined));
    return last === undefined ? undefined : (d.samples - last) / seconds;
  });
}

function dropKey(d: { metric: string; policy: string; reason: string }): string {
  return `${d.policy}\0${d.metric}\0${d.reason}`;
}

/**
 * The order of a status's offenders: by rate, largest first, those without a rate after those
 * with one; then by samples dropped, largest first; then by metric and reason, so equal counts
 * still give one order.
 */
export function compareOffenders(a: TopOffender, b: TopOffender): number {
  const ra = a.droppedSamplesPerSecond ?? -1;
  const rb = b.droppedSamplesPerSecond ?? -1;
  return rb - ra || b.droppedSamples - a.droppedSamples || cmp(a.metric, b.metric) || cmp(a.reason, b.reason);
}

/** The first `limit` offenders in compareOffenders order, as a new list. */
export function boundOffenders(
  offenders: readonly TopOffender[],
  limit = TOP_OFFENDERS_LIMIT,
): TopOffender[] {
  return [...offenders].sort(compareOffenders).slice(0, Math.max(0, Math.floor(limit)));
}

/**
 * Three significant digits: enough to read, and coarse enough that a steady rate does not rewrite
 * the status on every poll.
 */
export function roundRate(rate: number): number {
  return rate === 0 ? 0 : Number(rate.toPrecision(3));
}

/**
 * Checks a top-offenders answer before it is trusted: it comes over the network from a pod. Throws
 * a TypeError naming the first field that is wrong; the caller treats that proxy as unreachable.
 */
export function parseTopOffendersReport(json: unknown): TopOffendersReport {
  const obj = record(json, 'report');
  return {
    metrics: list(obj.metrics, 'metrics').map((v, i) => {
      const m = record(v, `metrics[${i}]`);
      return {
        metric: str(m.metric, `metrics[${i}].metric`),
        activeSeries: count(m.activeSeries, `metrics[${i}].activeSeries`),
      };
    }),
    labels: list(obj.labels, 'labels').map((v, i) => {
      const l = record(v, `labels[${i}]`);
      return {
        metric: str(l.metric, `labels[${i}].metric`),
        label: str(l.label, `labels[${i}].label`),
        distinctValues: count(l.distinctValues, `labels[${i}].distinctValues`),
      };
    }),
    drops: list(obj.drops, 'drops').map((v, i) => {
      const d = record(v, `drops[${i}]`);
      return {
        metric: str(d.metric, `drops[${i}].metric`),
        policy: str(d.policy, `drops[${i}].policy`),
        reason: str(d.reason, `drops[${i}].reason`),
        samples: count(d.samples, `drops[${i}].samples`),
      };
    }),
  };
}

function record(v: unknown, path: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new TypeError(`${path}: must be an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${path}: must be a list`);
  return v;
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new TypeError(`${path}: must be a string`);
  return v;
}

function count(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`${path}: must be a count`);
  return v;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
