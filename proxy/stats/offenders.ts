import { Gauge, type Registry } from 'prom-client';
import type { Label } from '../codec/types.js';
import { ADMIT_NEW, hashString, MetricInterner, SeriesTracker } from '../pipeline/cardinality.js';
import type { Pipeline, Reason } from '../pipeline/compile.js';
import type { EngineObserver, PolicyEngine } from '../pipeline/engine.js';
import { hashSets, type IngestPart, type OffendersPart } from './merge.js';
import { byDistinctValues, TopOffenders, type TopOffendersReport } from './top-offenders.js';

/** What ingest knows of one metric (GET /api/v1/stats/usage). */
export interface IngestRow {
  activeSeries: number;
  samplesPerSecond: number;
  droppedSamples: number;
}

export interface OffenderOptions {
  /** A series counts as active while seen within this window. */
  readonly windowMs: number;
  /** Series tracked for statistics (about 13.3 bytes each, allocated up front). */
  readonly maxTrackedSeries: number;
  /** How many metric names /metrics exposes as label values. */
  readonly exposeTop: number;
}

const REASONS: readonly Reason[] = [
  'relabel_dropped',
  'relabel_rewritten',
  'metric_dropped',
  'metric_unused',
  'label_unused',
  'metric_name',
  'label_name',
  'required_label',
  'forbidden_label',
  'max_labels',
  'label_name_length',
  'label_value_length',
  'series_limit',
  'label_values_limit',
  'tenant_series_limit',
];
/** Dry-run drops are reported under the reason with a `dryRun:` prefix: what would have been dropped. */
const REASON_NAMES = [...REASONS, ...REASONS.map((r) => `dryRun:${r}`)];

/**
 * Real-time top offenders: active series per metric and distinct values per (metric, label) in
 * fixed-size trackers, and dropped samples per (metric, policy, reason). Everything is counted as
 * the engine reports it; the reports are computed on demand, in O(metrics + label pairs).
 */
export class Offenders {
  readonly #opts: OffenderOptions;
  readonly #engine: PolicyEngine;
  readonly #series: SeriesTracker;
  readonly #pairs = new MetricInterner({ capacity: 65536, maxNameBytes: 512 });
  readonly #values: SeriesTracker;
  #top: TopOffenders;
  /** Per counter slot of the current pipeline: policy index and reason code, or -1 when not a drop. */
  #slotPolicy = new Int32Array(0);
  #slotReason = new Int32Array(0);
  /**
   * Forwarded samples per metric in the current and the previous statistics window: the ingest
   * rate the usage report (GET /api/v1/stats/usage) joins with reads. 16 bytes per metric name.
   */
  #samplesNow: Float64Array;
  #samplesBefore: Float64Array;
  #windowStartMs = -1;

  constructor(engine: PolicyEngine, opts: OffenderOptions) {
    this.#opts = opts;
    this.#engine = engine;
    const buckets = engine.interner.capacity;
    this.#series = new SeriesTracker({
      maxTrackedSeries: opts.maxTrackedSeries,
      buckets,
      windowMs: opts.windowMs,
    });
    this.#values = new SeriesTracker({
      maxTrackedSeries: opts.maxTrackedSeries,
      buckets: 65536,
      windowMs: opts.windowMs,
    });
    this.#top = this.#makeTop(engine.pipeline);
    this.#samplesNow = new Float64Array(buckets);
    this.#samplesBefore = new Float64Array(buckets);
    this.setPipeline(engine.pipeline);
  }

  #rotate(nowMs: number): void {
    if (this.#windowStartMs < 0) this.#windowStartMs = nowMs;
    const elapsed = nowMs - this.#windowStartMs;
    if (elapsed < this.#opts.windowMs) return;
    if (elapsed >= 2 * this.#opts.windowMs) this.#samplesBefore.fill(0);
    else this.#samplesBefore.set(this.#samplesNow);
    this.#samplesNow.fill(0);
    this.#windowStartMs = nowMs - (elapsed % this.#opts.windowMs);
  }

  /**
   * What ingest knows of metric `name`: active series within the window, forwarded samples per
   * second over the last one to two windows, and samples dropped by policies since the last
   * configuration load. Undefined for a metric this proxy never saw.
   */
  ingest(nowMs: number): (name: string) => IngestRow | undefined {
    this.#rotate(nowMs);
    const interner = this.#engine.interner;
    const index = new Map<string, number>();
    for (let i = 1; i < interner.size; i++) index.set(interner.name(i), i);
    const dropped = new Map<string, number>();
    for (const d of this.#top.topOffenders(1_000_000).drops) {
      if (!d.reason.startsWith('dryRun:')) dropped.set(d.metric, (dropped.get(d.metric) ?? 0) + d.samples);
    }
    const seconds = Math.max(1, (nowMs - this.#windowStartMs + this.#opts.windowMs) / 1000);
    return (name) => {
      const i = index.get(name);
      if (i === undefined) return undefined;
      return {
        activeSeries: this.#series.count(i),
        samplesPerSecond: (this.#samplesNow[i]! + this.#samplesBefore[i]!) / seconds,
        droppedSamples: dropped.get(name) ?? 0,
      };
    };
  }

  /**
   * What `ingest` knows, for every metric name this process has seen, with the hashes of its
   * active series instead of their count: this worker's share of the usage report of --workers N
   * (proxy/stats/merge.ts). O(tracked series).
   */
  ingestPart(nowMs: number): IngestPart {
    this.#rotate(nowMs);
    const interner = this.#engine.interner;
    const names = Array.from({ length: interner.size }, (_, i) => interner.name(i));
    const index = new Map(names.map((n, i) => [n, i]));
    const droppedSamples = new Float64Array(names.length);
    for (const d of this.#top.topOffenders(1_000_000).drops) {
      const i = index.get(d.metric);
      if (i !== undefined && !d.reason.startsWith('dryRun:')) droppedSamples[i]! += d.samples;
    }
    const seconds = Math.max(1, (nowMs - this.#windowStartMs + this.#opts.windowMs) / 1000);
    const samplesPerSecond = new Float64Array(names.length);
    for (let i = 0; i < names.length; i++)
      samplesPerSecond[i] = (this.#samplesNow[i]! + this.#samplesBefore[i]!) / seconds;
    return {
      series: hashSets(names, this.#series.activeHashes(nowMs, names.length)),
      samplesPerSecond,
      droppedSamples,
    };
  }

  /**
   * The top offenders with the hashes of the active series and label values instead of their
   * counts, and every drop counter: this worker's share of the report of --workers N
   * (proxy/stats/merge.ts). O(tracked series + tracked label values).
   */
  part(nowMs: number): OffendersPart {
    const interner = this.#engine.interner;
    const metrics = Array.from({ length: interner.size }, (_, i) => interner.name(i));
    const pairs = Array.from({ length: this.#pairs.size }, (_, i) => this.#pairs.name(i));
    return {
      series: hashSets(metrics, this.#series.activeHashes(nowMs, metrics.length)),
      values: hashSets(pairs, this.#values.activeHashes(nowMs, pairs.length)),
      drops: this.#top.topOffenders(1_000_000).drops,
    };
  }

  /** The metric names this proxy's ingest has seen, for name patterns of reads. */
  knownNames(): { generation: () => number; names: () => Iterable<string> } {
    const interner = this.#engine.interner;
    return {
      generation: () => interner.size,
      names: function* () {
        for (let i = 1; i < interner.size; i++) yield interner.name(i);
      },
    };
  }

  /** The metrics with the most active series, at most `limit`. */
  largest(limit: number): string[] {
    return this.#top.topOffenders(limit).metrics.map((m) => m.metric);
  }

  #makeTop(pipeline: Pipeline): TopOffenders {
    return new TopOffenders({
      metrics: this.#engine.interner,
      series: [this.#series],
      labels: [],
      policies: pipeline.policies.map((p) => p.id),
      reasons: REASON_NAMES,
    });
  }

  /** Drop counters restart with each pipeline: policy indices change meaning. */
  setPipeline(pipeline: Pipeline): void {
    this.#top = this.#makeTop(pipeline);
    const policyIndex = new Map(pipeline.policies.map((p) => [p.id, p.index]));
    this.#slotPolicy = new Int32Array(pipeline.slots.length).fill(-1);
    this.#slotReason = new Int32Array(pipeline.slots.length).fill(-1);
    pipeline.slots.forEach((s, i) => {
      if (s.action !== 'dropped') return;
      this.#slotPolicy[i] = policyIndex.get(s.policy) ?? -1;
      this.#slotReason[i] = REASONS.indexOf(s.reason) + (s.mode === 'dryRun' ? REASONS.length : 0);
    });
  }

  /** Hooks for PolicyStats.observe. */
  readonly hooks: {
    slot: (slot: number, metric: number, samples: number) => void;
    forwarded: EngineObserver['forwarded'];
  } = {
    slot: (slot, metric, samples) => {
      const policy = this.#slotPolicy[slot] ?? -1;
      if (policy >= 0) this.#top.recordDrop(metric, policy, this.#slotReason[slot]!, samples);
    },
    forwarded: (metric, hash, nowMs, samples) => {
      this.#rotate(nowMs);
      this.#samplesNow[metric]! += samples;
      return this.#series.admit(metric, hash, nowMs, Number.POSITIVE_INFINITY) === ADMIT_NEW;
    },
  };

  /** Called for each series the statistics tracker saw for the first time within the window. */
  newSeries(metric: number, labels: readonly Label[], nowMs: number): void {
    const name = this.#engine.interner.name(metric);
    for (const l of labels) {
      if (l.name === '__name__') continue;
      const pair = this.#pairs.internString(`${name}\u0000${l.name}`);
      this.#values.admit(pair, hashString(l.value, 0x2545f491), nowMs, Number.POSITIVE_INFINITY);
    }
  }

  report(limit: number): TopOffendersReport {
    const base = this.#top.topOffenders(limit);
    const labels: TopOffendersReport['labels'] = [];
    for (let i = 1; i < this.#pairs.size; i++) {
      const n = this.#values.count(i);
      if (n === 0) continue;
      const [metric = '', label = ''] = this.#pairs.name(i).split('\u0000');
      labels.push({ metric, label, distinctValues: n });
    }
    labels.sort(byDistinctValues);
    return { metrics: base.metrics, labels: labels.slice(0, limit), drops: base.drops };
  }

  /**
   * Gauges for /metrics, filled at scrape time with only the current top N metric names, so the
   * proxy's own metrics can never become a cardinality problem.
   */
  register(registry: Registry): void {
    registerOffenderGauges(registry, this.#opts.exposeTop, (n) => ({
      report: this.report(n),
      activeSeries: this.#series.size,
    }));
  }
}

/** What the top-offender gauges show: the top `n` of each list, and the active series of all metrics. */
export type OffenderGaugeSource = (n: number) => OffenderGauges | Promise<OffenderGauges>;

export interface OffenderGauges {
  readonly report: TopOffendersReport;
  readonly activeSeries: number;
}

/**
 * The top-offender gauges (`cardinal_proxy_top_*`, `cardinal_proxy_active_series`), each filled at
 * scrape time from `source`: one process's own counts, or with --workers N the primary's merge of
 * every worker's (proxy/workers/stats.ts), so the gauges agree with the top-offenders report.
 */
export function registerOffenderGauges(
  registry: Registry,
  exposeTop: number,
  source: OffenderGaugeSource,
): void {
  new Gauge({
    name: 'cardinal_proxy_top_metric_active_series',
    help: 'Active series of the metrics with the most, the top N only (--stats.expose-top).',
    labelNames: ['metric'],
    registers: [registry],
    async collect() {
      const { report } = await source(exposeTop);
      this.reset();
      for (const m of report.metrics) this.labels(m.metric).set(m.activeSeries);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_top_label_distinct_values',
    help: 'Distinct values of the labels with the most, per metric, the top N only.',
    labelNames: ['metric', 'label'],
    registers: [registry],
    async collect() {
      const { report } = await source(exposeTop);
      this.reset();
      for (const l of report.labels) this.labels(l.metric, l.label).set(l.distinctValues);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_top_dropped_samples',
    help: 'Dropped samples since the configuration was loaded, of the metrics with the most, by policy and reason; the top N only.',
    labelNames: ['metric', 'policy', 'reason'],
    registers: [registry],
    async collect() {
      const { report } = await source(exposeTop);
      this.reset();
      for (const d of report.drops) this.labels(d.metric, d.policy, d.reason).set(d.samples);
    },
  });
  new Gauge({
    name: 'cardinal_proxy_active_series',
    help: 'Series seen within the statistics window, all metrics.',
    registers: [registry],
    async collect() {
      this.set((await source(exposeTop)).activeSeries);
    },
  });
}
