// The top offenders: which metrics hold the most active series, which labels the most distinct
// values, and which metrics lost the most samples to which policy and why. Served at
// /api/v1/stats/top-offenders?limit=N and used to choose the few metrics /metrics labels gauges
// with, so the proxy's own metrics stay bounded.
//
// It observes from the side: series and label-value counts are read on demand from the limit
// stage's trackers (proxy/pipeline/cardinality.ts), and drops are counted by `recordDrop`, the only
// part on the hot path, which is O(1) and allocates nothing.

import type { TopDrop, TopLabel, TopMetric, TopOffendersReport } from '../../policy/reports.js';

export type { TopDrop, TopLabel, TopMetric, TopOffendersReport } from '../../policy/reports.js';

/** Names for metric indices: a MetricInterner. */
export interface MetricNames {
  /** Valid indices are 0..size-1. */
  readonly size: number;
  name(index: number): string;
}

/** Keys per metric index: a SeriesTracker. */
export interface BucketCounts {
  count(bucket: number): number;
}

export interface TopOffendersOptions {
  readonly metrics: MetricNames;
  /**
   * Trackers whose buckets are metric indices and whose keys are series (perMetric limits). A
   * metric's active series is the largest of their counts: exact when one tracker sees all of the
   * metric's series, a lower bound when policies split them.
   */
  readonly series: readonly BucketCounts[];
  /** One tracker per limited label (perLabel limits), its buckets metric indices, its keys values. */
  readonly labels: readonly { readonly label: string; readonly values: BucketCounts }[];
  /** Policy names ("namespace/name") by the policy index recordDrop is given; at most 65536. */
  readonly policies: readonly string[];
  /** Drop reasons by the reason code recordDrop is given; at most 256. */
  readonly reasons: readonly string[];
  /**
   * Distinct (metric, policy, reason) drop counters kept; drops beyond them are counted under
   * METRIC_OVERFLOW_NAME per (policy, reason). Default 4096 (about 64 KiB).
   */
  readonly maxDropKeys?: number;
  /** Name to report drops beyond maxDropKeys under. Default `__cardinal_other__`. */
  readonly overflowName?: string;
}

/**
 * Counters of dropped samples by (metric, policy, reason), and the top-N views. Replace it together
 * with the trackers and the interner it reads (on a config reload) so indices keep their meaning.
 */
export class TopOffenders {
  private readonly options: TopOffendersOptions;
  private readonly overflowName: string;
  private readonly reasonCount: number;
  private readonly maxDropKeys: number;
  private readonly mask: number;
  /** Packed (metric, policy, reason) + 1 per slot; 0 is an empty slot. */
  private readonly keys: Float64Array;
  private readonly samples: Float64Array;
  /** Drops that found no room, by policy * reasons + reason. */
  private readonly overflowSamples: Float64Array;
  private dropKeys = 0;

  constructor(options: TopOffendersOptions) {
    if (options.policies.length > 0x10000) throw new RangeError('at most 65536 policies');
    if (options.reasons.length > 0x100) throw new RangeError('at most 256 drop reasons');
    const maxDropKeys = options.maxDropKeys ?? 4096;
    if (!Number.isInteger(maxDropKeys) || maxDropKeys < 1)
      throw new RangeError('maxDropKeys must be a positive integer');
    this.options = options;
    this.overflowName = options.overflowName ?? '__cardinal_other__';
    this.reasonCount = Math.max(1, options.reasons.length);
    this.maxDropKeys = maxDropKeys;
    let slots = 8;
    while (slots < maxDropKeys * 2) slots *= 2;
    this.mask = slots - 1;
    this.keys = new Float64Array(slots);
    this.samples = new Float64Array(slots);
    this.overflowSamples = new Float64Array(Math.max(1, options.policies.length) * this.reasonCount);
  }

  /**
   * Counts `samples` dropped from metric `metric` by policy `policy` for reason `reason`. Call it
   * per series or per request batch; O(1), no allocation. Indices must be integers within
   * range (metric < 65536, policy < policies.length, reason < reasons.length).
   */
  recordDrop(metric: number, policy: number, reason: number, samples: number): void {
    const key = (metric * 0x10000 + policy) * 0x100 + reason + 1;
    const mask = this.mask;
    let i = (Math.imul(metric ^ Math.imul(policy, 0x9e3779b1) ^ (reason << 24), 0x85ebca6b) >>> 15) & mask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key) {
        this.samples[i]! += samples;
        return;
      }
      if (k === 0) break;
      i = (i + 1) & mask;
    }
    if (this.dropKeys >= this.maxDropKeys) {
      this.overflowSamples[policy * this.reasonCount + reason]! += samples;
      return;
    }
    this.keys[i] = key;
    this.samples[i] = samples;
    this.dropKeys++;
  }

  /** The `limit` largest of each list; computed on demand, O(metrics x (series + label trackers) + drop keys). */
  topOffenders(limit: number): TopOffendersReport {
    const { metrics: names, labels, policies, reasons } = this.options;
    const labelRows: TopLabel[] = [];
    for (const { label, values } of labels) {
      for (let m = 0; m < names.size; m++) {
        const distinct = values.count(m);
        if (distinct > 0) labelRows.push({ metric: names.name(m), label, distinctValues: distinct });
      }
    }
    const drops: TopDrop[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.keys[i]!;
      if (k === 0) continue;
      const packed = k - 1;
      const reason = packed % 0x100;
      const policy = Math.floor(packed / 0x100) % 0x10000;
      const metric = Math.floor(packed / 0x1000000);
      drops.push({
        metric: names.name(metric),
        policy: policies[policy] ?? String(policy),
        reason: reasons[reason] ?? String(reason),
        samples: this.samples[i]!,
      });
    }
    for (let i = 0; i < this.overflowSamples.length; i++) {
      const samples = this.overflowSamples[i]!;
      if (samples === 0) continue;
      const policy = Math.floor(i / this.reasonCount);
      const reason = i % this.reasonCount;
      drops.push({
        metric: this.overflowName,
        policy: policies[policy] ?? String(policy),
        reason: reasons[reason] ?? String(reason),
        samples,
      });
    }
    const n = Math.max(0, Math.floor(limit));
    return {
      metrics: this.topMetrics(n),
      labels: labelRows.sort(byDistinctValues).slice(0, n),
      drops: drops.sort(bySamples).slice(0, n),
    };
  }

  /**
   * The names of the `limit` metrics with the most active series, largest first: the only metric
   * names /metrics may put in a label, so its own series stay at most `limit` per gauge.
   */
  topMetricNames(limit: number): string[] {
    return this.topMetrics(Math.max(0, Math.floor(limit))).map((m) => m.metric);
  }

  private topMetrics(n: number): TopMetric[] {
    const { metrics: names, series } = this.options;
    const metrics: TopMetric[] = [];
    for (let m = 0; m < names.size; m++) {
      const active = activeSeries(series, m);
      if (active > 0) metrics.push({ metric: names.name(m), activeSeries: active });
    }
    return metrics.sort(byActiveSeries).slice(0, n);
  }

  /** Total samples recorded by recordDrop since construction, tracked or overflowed. */
  get droppedSamples(): number {
    let total = 0;
    for (const s of this.samples) total += s;
    for (const s of this.overflowSamples) total += s;
    return total;
  }
}

function activeSeries(series: readonly BucketCounts[], metric: number): number {
  let max = 0;
  for (const tracker of series) {
    const n = tracker.count(metric);
    if (n > max) max = n;
  }
  return max;
}

/** The orders of the report's lists: the largest count first, then by name. */
export function byActiveSeries(a: TopMetric, b: TopMetric): number {
  return b.activeSeries - a.activeSeries || cmp(a.metric, b.metric);
}

export function byDistinctValues(a: TopLabel, b: TopLabel): number {
  return b.distinctValues - a.distinctValues || cmp(a.metric, b.metric) || cmp(a.label, b.label);
}

export function bySamples(a: TopDrop, b: TopDrop): number {
  return (
    b.samples - a.samples || cmp(a.metric, b.metric) || cmp(a.policy, b.policy) || cmp(a.reason, b.reason)
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
