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

export interface UnusedPolicyReport {
  policy: string;
  action: 'report' | 'drop';
  mode: 'enforce' | 'dryRun';
  /** False when no usage is known (no MetricUsage document, no listed metrics): nothing is judged. */
  usageKnown: boolean;
  usedMetrics: number;
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
      const u = p.unused;
      const seconds = Math.max(1, (nowMs - state.sinceMs) / 1000);
      const rows: UnusedMetricRow[] = [];
      if (u !== undefined && state.series !== undefined) {
        for (let m = 1; m < this.#names.size; m++) {
          const active = state.series.count(m);
          if (active === 0) continue;
          const name = this.#names.name(m);
          // The state outlives reloads: only what the current configuration judges unused counts.
          if (!isUnused(u, name, nowMs)) continue;
          const samples = state.samples[m]!;
          rows.push({ metric: name, activeSeries: active, samples, samplesPerSecond: samples / seconds });
        }
      }
      rows.sort((a, b) => b.activeSeries - a.activeSeries || (a.metric < b.metric ? -1 : 1));
      const labels: UnreadLabelRow[] = [];
      if (u?.labels !== undefined && state.labelValues !== undefined) {
        for (let i = 1; i < this.#pairs.size; i++) {
          const distinct = state.labelValues.count(i);
          if (distinct === 0) continue;
          const [metric = '', label = ''] = this.#pairs.name(i).split('\u0000');
          // Only what the current configuration still finds unread.
          if (unusedLabels(u, metric, [{ name: label }]).length === 0) continue;
          labels.push({ metric, label, distinctValues: distinct });
        }
        labels.sort(
          (a, b) =>
            b.distinctValues - a.distinctValues ||
            (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : a.label < b.label ? -1 : 1),
        );
      }
      policies.push({
        policy: p.id,
        action: u?.drop === true ? 'drop' : 'report',
        mode: p.dryRun ? 'dryRun' : 'enforce',
        usageKnown: u !== undefined,
        usedMetrics: u === undefined ? 0 : u.used.names.size + u.used.patternSources.length,
        unusedMetrics: rows.length,
        activeSeries: rows.reduce((n, r) => n + r.activeSeries, 0),
        samplesPerSecond: rows.reduce((n, r) => n + r.samplesPerSecond, 0),
        metrics: rows.slice(0, limit),
        labels: labels.slice(0, limit),
      });
    }
    const used = this.#pipeline.usage.metrics;
    return {
      usageDocuments: this.#pipeline.usage.documents,
      policies,
      used: [...used].sort(byKey).slice(0, limit).map(usedRow),
      usedTotal: used.length,
    };
  }
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
