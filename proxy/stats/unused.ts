// The unused report (spec.unused): per policy, the metrics no source reads, with their active series
// (what dropping them saves) and samples per second, and the metrics that are read with what reads
// them. Served at GET /api/v1/stats/unused; the operator polls it into each policy's status.
//
// On the hot path only `record` runs, for series the unused stage judged: one tracker admit and
// one addition. A policy's state is kept across reloads while the policy exists, so a reload
// (which every new dashboard causes) does not reset the counts; the report filters by the current
// verdict, so a metric that became read leaves the report at once.

import type { MetricUseT } from '../../crds/metric-policy.js';
import { MetricInterner, SeriesTracker } from '../pipeline/cardinality.js';
import type { Pipeline } from '../pipeline/compile.js';
import type { EngineObserver } from '../pipeline/engine.js';
import { isUnused, unusedLabels } from '../pipeline/stages/unused.js';
import { hashSets, type UnusedPart, type UnusedPolicyPart } from './merge.js';

export interface UnusedStatsOptions {
  /** A series counts as active while seen within this window (the statistics window). */
  readonly windowMs: number;
  /** Series tracked per policy with spec.unused; allocated when the first unused series arrives. */
  readonly maxTrackedSeries: number;
}

interface PolicyState {
  series: SeriesTracker | undefined;
  /** Distinct values per (metric, label) pair of unread labels; buckets are pair indices. */
  labelValues: SeriesTracker | undefined;
  readonly samples: Float64Array;
  readonly sinceMs: number;
}

export interface UnusedMetricRow {
  metric: string;
  activeSeries: number;
  samples: number;
  samplesPerSecond: number;
}

export interface UnreadLabelRow {
  metric: string;
  label: string;
  distinctValues: number;
}

export interface UsedMetricRow {
  metric: string;
  sources: string[];
  sourceCount: number;
}

/** What a policy's report says of the policy itself, from its configuration. */
export interface UnusedPolicyHead {
  readonly policy: string;
  readonly action: 'report' | 'drop';
  readonly mode: 'enforce' | 'dryRun';
  /** False when no usage is known (no MetricUsage document, no listed metrics): nothing is judged. */
  readonly usageKnown: boolean;
  readonly usedMetrics: number;
}

export interface UnusedPolicyReport extends UnusedPolicyHead {
  unusedMetrics: number;
  /** Active series of every unused metric: what dropping them saves. */
  activeSeries: number;
  samplesPerSecond: number;
  /** The unused metrics with the most active series, at most `limit`. */
  metrics: UnusedMetricRow[];
  /** With spec.unused.labels: the unread labels of read metrics with the most values, at most `limit`. */
  labels: UnreadLabelRow[];
}

/** The JSON of GET /api/v1/stats/unused. */
export interface UnusedReport {
  /** MetricUsage documents loaded. */
  usageDocuments: number;
  policies: UnusedPolicyReport[];
  /** Metrics that are read, in name order, at most `limit`, with what reads them. */
  used: UsedMetricRow[];
  usedTotal: number;
}

export interface MetricNames {
  readonly size: number;
  readonly capacity: number;
  name(index: number): string;
}

export class UnusedStats {
  readonly #opts: UnusedStatsOptions;
  readonly #names: MetricNames;
  #pipeline: Pipeline;
  /** By policy id, across reloads. */
  #byId = new Map<string, PolicyState>();
  /** By policy index of the current pipeline. */
  #byIndex: (PolicyState | undefined)[] = [];
  /** (metric, label) pairs of unread labels, as `metric\0label`; kept for the process's life. */
  readonly #pairs = new MetricInterner({ capacity: 65536, maxNameBytes: 512 });

  constructor(names: MetricNames, pipeline: Pipeline, opts: UnusedStatsOptions, nowMs: number = Date.now()) {
    this.#opts = opts;
    this.#names = names;
    this.#pipeline = pipeline;
    this.setPipeline(pipeline, nowMs);
  }

  setPipeline(pipeline: Pipeline, nowMs: number = Date.now()): void {
    this.#pipeline = pipeline;
    const next = new Map<string, PolicyState>();
    this.#byIndex = pipeline.policies.map((p) => {
      if (!p.unusedConfigured) return undefined;
      const state = this.#byId.get(p.id) ?? {
        series: undefined,
        labelValues: undefined,
        samples: new Float64Array(this.#names.capacity),
        sinceMs: nowMs,
      };
      next.set(p.id, state);
      return state;
    });
    this.#byId = next;
  }

  /** The EngineObserver hooks this serves (PolicyStats.observe passes them on). */
  readonly hooks: Required<Pick<EngineObserver, 'unused' | 'labelPair' | 'unreadLabels'>> = {
    unused: (policy, metric, hash, samples, nowMs) => this.record(policy, metric, hash, samples, nowMs),
    labelPair: (metric, label) => {
      const pair = this.#pairs.internString(`${this.#names.name(metric)}\u0000${label}`);
      // Index 0 is where names go once the interner is full: not a pair of its own.
      return pair === 0 ? -1 : pair;
    },
    unreadLabels: (keys, nowMs) => {
      for (let k = 0; k + 2 < keys.length; k += 3) {
        const state = this.#byIndex[keys[k]!];
        if (state === undefined) continue;
        state.labelValues ??= new SeriesTracker({
          maxTrackedSeries: this.#opts.maxTrackedSeries,
          buckets: this.#pairs.capacity,
          windowMs: this.#opts.windowMs,
        });
        state.labelValues.admit(keys[k + 1]!, keys[k + 2]!, nowMs, Number.POSITIVE_INFINITY);
      }
    },
  };

  /** EngineObserver.unused: a series of policy `policy` whose metric nothing reads. */
  record(policy: number, metric: number, hash: number, samples: number, nowMs: number): void {
    const state = this.#byIndex[policy];
    if (state === undefined) return;
    state.series ??= new SeriesTracker({
      maxTrackedSeries: this.#opts.maxTrackedSeries,
      buckets: this.#names.capacity,
      windowMs: this.#opts.windowMs,
    });
    state.series.admit(metric, hash, nowMs, Number.POSITIVE_INFINITY);
    state.samples[metric]! += samples;
  }

  report(limit: number, nowMs: number = Date.now()): UnusedReport {
    const policies: UnusedPolicyReport[] = [];
    for (const p of this.#pipeline.policies) {
      const state = this.#byIndex[p.index];
      if (state === undefined) continue;
      const seconds = Math.max(1, (nowMs - state.sinceMs) / 1000);
      const rows: UnusedMetricRow[] = [];
      for (const m of this.#unusedMetrics(p, state, nowMs)) {
        const samples = state.samples[m]!;
        rows.push({
          metric: this.#names.name(m),
          activeSeries: state.series!.count(m),
          samples,
          samplesPerSecond: samples / seconds,
        });
      }
      const labels: UnreadLabelRow[] = [];
      for (const i of this.#unreadPairs(p, state)) {
        const [metric = '', label = ''] = this.#pairs.name(i).split('\u0000');
        labels.push({ metric, label, distinctValues: state.labelValues!.count(i) });
      }
      policies.push(unusedPolicyReport(head(p), rows, labels, limit));
    }
    return { ...this.#used(limit), policies };
  }

  /**
   * The report with the hashes of the active series and label values instead of their counts:
   * this worker's share of the report of --workers N (proxy/stats/merge.ts). O(tracked series).
   */
  part(limit: number, nowMs: number = Date.now()): UnusedPart {
    const policies: UnusedPolicyPart[] = [];
    for (const p of this.#pipeline.policies) {
      const state = this.#byIndex[p.index];
      if (state === undefined) continue;
      const seconds = Math.max(1, (nowMs - state.sinceMs) / 1000);
      const metrics = this.#unusedMetrics(p, state, nowMs);
      const series = pick(state.series, metrics, nowMs, this.#names.size);
      const samples = Float64Array.from(metrics, (m) => state.samples[m]!);
      const pairs = this.#unreadPairs(p, state);
      policies.push({
        ...head(p),
        series: hashSets(
          metrics.map((m) => this.#names.name(m)),
          series,
        ),
        samples,
        samplesPerSecond: samples.map((n) => n / seconds),
        labels: hashSets(
          pairs.map((i) => this.#pairs.name(i)),
          pick(state.labelValues, pairs, nowMs, this.#pairs.size),
        ),
      });
    }
    return { ...this.#used(limit), policies };
  }

  /** The metrics of `state` with active series that the current configuration judges unused. */
  #unusedMetrics(p: Pipeline['policies'][number], state: PolicyState, nowMs: number): number[] {
    const u = p.unused;
    const out: number[] = [];
    if (u === undefined || state.series === undefined) return out;
    for (let m = 1; m < this.#names.size; m++) {
      if (state.series.count(m) === 0) continue;
      // The state outlives reloads: only what the current configuration judges unused counts.
      if (isUnused(u, this.#names.name(m), nowMs)) out.push(m);
    }
    return out;
  }

  /** The (metric, label) pairs of `state` with values that the current configuration finds unread. */
  #unreadPairs(p: Pipeline['policies'][number], state: PolicyState): number[] {
    const u = p.unused;
    const out: number[] = [];
    if (u?.labels === undefined || state.labelValues === undefined) return out;
    for (let i = 1; i < this.#pairs.size; i++) {
      if (state.labelValues.count(i) === 0) continue;
      const [metric = '', label = ''] = this.#pairs.name(i).split('\u0000');
      if (unusedLabels(u, metric, [{ name: label }]).length > 0) out.push(i);
    }
    return out;
  }

  #used(limit: number): Omit<UnusedReport, 'policies'> {
    const used = this.#pipeline.usage.metrics;
    return {
      usageDocuments: this.#pipeline.usage.documents,
      used: [...used].sort(byKey).slice(0, limit).map(usedRow),
      usedTotal: used.length,
    };
  }
}

/**
 * One policy's report from its rows (any order): the totals over every row, each list sorted, the
 * largest first, and at most `limit` long.
 */
export function unusedPolicyReport(
  h: UnusedPolicyHead,
  rows: UnusedMetricRow[],
  labels: UnreadLabelRow[],
  limit: number,
): UnusedPolicyReport {
  rows.sort((a, b) => b.activeSeries - a.activeSeries || cmp(a.metric, b.metric));
  labels.sort(
    (a, b) => b.distinctValues - a.distinctValues || cmp(a.metric, b.metric) || cmp(a.label, b.label),
  );
  return {
    policy: h.policy,
    action: h.action,
    mode: h.mode,
    usageKnown: h.usageKnown,
    usedMetrics: h.usedMetrics,
    unusedMetrics: rows.length,
    activeSeries: rows.reduce((n, r) => n + r.activeSeries, 0),
    samplesPerSecond: rows.reduce((n, r) => n + r.samplesPerSecond, 0),
    metrics: rows.slice(0, limit),
    labels: labels.slice(0, limit),
  };
}

function head(p: Pipeline['policies'][number]): UnusedPolicyHead {
  const u = p.unused;
  return {
    policy: p.id,
    action: u?.drop === true ? 'drop' : 'report',
    mode: p.dryRun ? 'dryRun' : 'enforce',
    usageKnown: u !== undefined,
    usedMetrics: u === undefined ? 0 : u.used.names.size + u.used.patternSources.length,
  };
}

/** The active hashes of `buckets` of `tracker`, in that order, as `activeHashes` groups them. */
function pick(
  tracker: SeriesTracker | undefined,
  buckets: readonly number[],
  nowMs: number,
  size: number,
): { offsets: Uint32Array; hashes: Uint32Array } {
  const offsets = new Uint32Array(buckets.length + 1);
  if (tracker === undefined || buckets.length === 0) return { offsets, hashes: new Uint32Array(0) };
  const all = tracker.activeHashes(nowMs, size);
  buckets.forEach((b, i) => {
    offsets[i + 1] = offsets[i]! + (all.offsets[b + 1]! - all.offsets[b]!);
  });
  const hashes = new Uint32Array(offsets[buckets.length]!);
  buckets.forEach((b, i) => {
    hashes.set(all.hashes.subarray(all.offsets[b]!, all.offsets[b + 1]!), offsets[i]!);
  });
  return { offsets, hashes };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function keyOf(m: MetricUseT): string {
  return m.name ?? m.pattern ?? '';
}

function byKey(a: MetricUseT, b: MetricUseT): number {
  const x = keyOf(a);
  const y = keyOf(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function usedRow(m: MetricUseT): UsedMetricRow {
  return { metric: keyOf(m), sources: [...m.sources], sourceCount: m.sourceCount ?? m.sources.length };
}
