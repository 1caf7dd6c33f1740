// The statistics of the workers of one proxy (--workers N), merged into the reports one process
// would give for the same traffic: pure functions from each worker's part (proxy/workers/stats.ts
// gathers them). The cluster hands connections to the workers round robin, so one series reaches
// several of them: a distinct count (active series, distinct label values) is the size of the
// union of the workers' key hashes per name, never their sum (which counts a series once per
// worker it reached) nor their largest (a lower bound). Names key everything, since each worker
// numbers metrics in its own interner. Samples, drops and reads are summed.
//
// Exact as one process is, up to the same 32-bit hash collisions: the keys are the trackers' own
// hashes (proxy/pipeline/cardinality.ts), which depend on the labels only.

import type { TopDrop, TopLabel, TopMetric, TopOffendersReport } from '../../policy/reports.js';
import type { MetricUsageRow, ReaderRow } from '../query/recorder.js';
import type { UsageInput, UsageReadsPart } from '../query/usage.js';
import { byFill, type LimitsReport, type LimitUse, policyFill } from './limits.js';
import type { IngestRow } from './offenders.js';
import { byActiveSeries, byDistinctValues, bySamples } from './top-offenders.js';
import {
  type UnreadLabelRow,
  type UnusedMetricRow,
  type UnusedPolicyHead,
  type UnusedReport,
  type UsedMetricRow,
  unusedPolicyReport,
} from './unused.js';

/**
 * Keys by name: those of `names[i]` are `hashes[offsets[i] .. offsets[i + 1])`, distinct and
 * ascending (as SeriesTracker.activeHashes gives them); a name may have none.
 */
export interface HashSets {
  readonly names: readonly string[];
  readonly offsets: Uint32Array;
  readonly hashes: Uint32Array;
}

/** HashSets of a tracker's `activeHashes`, its buckets named by `names` (bucket i is names[i]). */
export function hashSets(
  names: readonly string[],
  active: { readonly offsets: Uint32Array; readonly hashes: Uint32Array },
): HashSets {
  if (active.offsets.length !== names.length + 1)
    throw new RangeError(
      `${names.length} names need ${names.length + 1} offsets, got ${active.offsets.length}`,
    );
  return { names, offsets: active.offsets, hashes: active.hashes };
}

/**
 * Per name, how many distinct hashes the parts hold together; names that have none stay, at 0.
 * Linear in the hashes of names held by more than one part (their sorted lists are merged; the
 * workers sorted them), O(1) per name held by one part.
 */
export function unionCounts(parts: readonly HashSets[]): Map<string, number> {
  const slices = new Map<string, Uint32Array[]>();
  for (const p of parts) {
    for (let i = 0; i < p.names.length; i++) {
      const name = p.names[i]!;
      const s = p.hashes.subarray(p.offsets[i]!, p.offsets[i + 1]!);
      const list = slices.get(name);
      if (list === undefined) slices.set(name, [s]);
      else list.push(s);
    }
  }
  const out = new Map<string, number>();
  for (const [name, list] of slices) out.set(name, distinct(list));
  return out;
}

function distinct(list: readonly Uint32Array[]): number {
  let union: Uint32Array | undefined;
  for (const s of list) {
    if (s.length === 0) continue;
    union = union === undefined ? s : mergeSorted(union, s);
  }
  return union?.length ?? 0;
}

/** The union of two ascending lists of distinct values, ascending. */
function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) {
      out[n++] = x;
      i++;
    } else if (y < x) {
      out[n++] = y;
      j++;
    } else {
      out[n++] = x;
      i++;
      j++;
    }
  }
  while (i < a.length) out[n++] = a[i++]!;
  while (j < b.length) out[n++] = b[j++]!;
  return out.subarray(0, n);
}

// ---------------------------------------------------------------------------------------------
// Top offenders (GET /api/v1/stats/top-offenders and the cardinal_proxy_top_* gauges)

/** One worker's share of the top offenders. */
export interface OffendersPart {
  /** Active series by metric name. */
  readonly series: HashSets;
  /** Distinct values by `metric\0label` (other names are not counted). */
  readonly values: HashSets;
  /** Every drop counter: (metric, policy, reason) and its samples. */
  readonly drops: readonly TopDrop[];
}

export interface MergedOffenders {
  /** Every row, each list sorted as one process sorts it. */
  readonly report: TopOffendersReport;
  /** Active series of all metrics together: cardinal_proxy_active_series. */
  readonly activeSeries: number;
}

export function mergeOffenders(parts: readonly OffendersPart[]): MergedOffenders {
  const metrics: TopMetric[] = [];
  let activeSeries = 0;
  for (const [metric, n] of unionCounts(parts.map((p) => p.series))) {
    activeSeries += n;
    if (n > 0) metrics.push({ metric, activeSeries: n });
  }
  const labels: TopLabel[] = [];
  for (const [pair, n] of unionCounts(parts.map((p) => p.values))) {
    // A name without the separator is the interner's overflow bucket, not a pair.
    if (n === 0 || !pair.includes('\u0000')) continue;
    const [metric = '', label = ''] = pair.split('\u0000');
    labels.push({ metric, label, distinctValues: n });
  }
  const drops = new Map<string, TopDrop>();
  for (const p of parts) {
    for (const d of p.drops) {
      const key = `${d.metric}\u0000${d.policy}\u0000${d.reason}`;
      const had = drops.get(key);
      if (had === undefined) drops.set(key, { ...d });
      else had.samples += d.samples;
    }
  }
  return {
    report: {
      metrics: metrics.sort(byActiveSeries),
      labels: labels.sort(byDistinctValues),
      drops: [...drops.values()].sort(bySamples),
    },
    activeSeries,
  };
}

/** The `limit` first rows of each list. */
export function limitOffenders(report: TopOffendersReport, limit: number): TopOffendersReport {
  return {
    metrics: report.metrics.slice(0, limit),
    labels: report.labels.slice(0, limit),
    drops: report.drops.slice(0, limit),
  };
}

// ---------------------------------------------------------------------------------------------
// Unused metrics (GET /api/v1/stats/unused)

/** One worker's share of one policy's unused report: what its current configuration judges unused. */
export interface UnusedPolicyPart extends UnusedPolicyHead {
  /** Active series of the unused metrics, by name. */
  readonly series: HashSets;
  /** Samples and samples per second, by the index of `series.names`. */
  readonly samples: Float64Array;
  readonly samplesPerSecond: Float64Array;
  /** Distinct values of unread labels, by `metric\0label`. */
  readonly labels: HashSets;
}

export interface UnusedPart {
  readonly usageDocuments: number;
  /** What is read, from the configuration: the same in every worker. */
  readonly used: readonly UsedMetricRow[];
  readonly usedTotal: number;
  readonly policies: readonly UnusedPolicyPart[];
}

/** The unused report of the parts together, each list at most `limit` long; rates are summed. */
export function mergeUnused(parts: readonly UnusedPart[], limit: number): UnusedReport {
  const byPolicy = new Map<string, UnusedPolicyPart[]>();
  for (const part of parts) {
    for (const p of part.policies) {
      const list = byPolicy.get(p.policy);
      if (list === undefined) byPolicy.set(p.policy, [p]);
      else list.push(p);
    }
  }
  const policies = [...byPolicy.values()].map((list) => {
    const series = unionCounts(list.map((p) => p.series));
    const samples = new Map<string, { samples: number; samplesPerSecond: number }>();
    for (const p of list) {
      p.series.names.forEach((name, i) => {
        const s = samples.get(name) ?? { samples: 0, samplesPerSecond: 0 };
        s.samples += p.samples[i]!;
        s.samplesPerSecond += p.samplesPerSecond[i]!;
        samples.set(name, s);
      });
    }
    const rows: UnusedMetricRow[] = [];
    for (const [metric, activeSeries] of series) {
      if (activeSeries === 0) continue;
      const s = samples.get(metric)!;
      rows.push({ metric, activeSeries, samples: s.samples, samplesPerSecond: s.samplesPerSecond });
    }
    const labels: UnreadLabelRow[] = [];
    for (const [pair, n] of unionCounts(list.map((p) => p.labels))) {
      if (n === 0) continue;
      const [metric = '', label = ''] = pair.split('\u0000');
      labels.push({ metric, label, distinctValues: n });
    }
    const head = list[0]!;
    return unusedPolicyReport(
      {
        policy: head.policy,
        action: head.action,
        mode: head.mode,
        usageKnown: head.usageKnown,
        usedMetrics: head.usedMetrics,
      },
      rows,
      labels,
      limit,
    );
  });
  const first = parts[0];
  return {
    usageDocuments: first?.usageDocuments ?? 0,
    policies,
    used: (first?.used ?? []).slice(0, limit),
    usedTotal: first?.usedTotal ?? 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Usage (GET /api/v1/stats/usage)

/** What one worker's ingest knows per metric name, for the usage report. */
export interface IngestPart {
  /** Active series by name; `names` holds every metric this worker's ingest has seen. */
  readonly series: HashSets;
  /** By the index of `series.names`. */
  readonly samplesPerSecond: Float64Array;
  readonly droppedSamples: Float64Array;
}

export interface UsagePart extends UsageReadsPart {
  readonly ingest: IngestPart;
}

/**
 * The usage report's input for the parts together, at `nowMs`: reads summed per metric and per
 * reader (the latest read the latest of any part), ingest's active series the union, its rates
 * summed. The query log is tailed by one worker: its counts are the one part's that has them.
 */
export function mergeUsage(parts: readonly UsagePart[], nowMs: number): UsageInput {
  const rows = new Map<string, MetricUsageRow & { readers: ReaderRow[] }>();
  const knownRows = new Set<string>();
  const readerRows = new Map<string, ReaderRow>();
  let readPath = false;
  let sinceMs = Number.POSITIVE_INFINITY;
  let untrackedReads = 0;
  let patternReads = 0;
  let missingKnown = parts.length > 0;
  let queryLog: UsageInput['queryLog'] = null;
  for (const part of parts) {
    readPath ||= part.readPath;
    sinceMs = Math.min(sinceMs, part.sinceMs);
    untrackedReads += part.untrackedReads;
    patternReads += part.patternReads;
    // Whether a metric is missing is judged only when every part could judge it.
    missingKnown &&= part.missingKnown;
    if (part.queryLog !== null) {
      queryLog =
        queryLog === null
          ? { ...part.queryLog }
          : {
              path: queryLog.path,
              ruleEvaluations: queryLog.ruleEvaluations + part.queryLog.ruleEvaluations,
              lines: queryLog.lines + part.queryLog.lines,
            };
    }
    part.rows.forEach((r, i) => {
      if (part.known[i] === 1) knownRows.add(r.metric);
      const had = rows.get(r.metric);
      if (had === undefined) {
        rows.set(r.metric, { ...r, readers: r.readers.map((x) => ({ ...x })) });
        return;
      }
      had.reads1h += r.reads1h;
      had.reads24h += r.reads24h;
      had.reads30d += r.reads30d;
      had.readsTotal += r.readsTotal;
      had.lastRead = Math.max(had.lastRead, r.lastRead);
      had.readers = addReaders(had.readers, r.readers);
    });
    for (const r of part.readers) {
      const had = readerRows.get(r.reader);
      if (had === undefined) readerRows.set(r.reader, { ...r });
      else {
        had.reads += r.reads;
        had.lastRead = Math.max(had.lastRead, r.lastRead);
      }
    }
  }
  for (const r of rows.values()) r.readers.sort(byReads);

  const series = unionCounts(parts.map((p) => p.ingest.series));
  const rates = new Map<string, { samplesPerSecond: number; droppedSamples: number }>();
  for (const part of parts) {
    part.ingest.series.names.forEach((name, i) => {
      const r = rates.get(name) ?? { samplesPerSecond: 0, droppedSamples: 0 };
      r.samplesPerSecond += part.ingest.samplesPerSecond[i]!;
      r.droppedSamples += part.ingest.droppedSamples[i]!;
      rates.set(name, r);
    });
  }
  const largest = [...series]
    .filter(([, n]) => n > 0)
    .map(([metric, activeSeries]) => ({ metric, activeSeries }))
    .sort(byActiveSeries)
    .map((m) => m.metric);
  const head = parts[0];
  return {
    readPath,
    sinceMs: Number.isFinite(sinceMs) ? sinceMs : nowMs,
    nowMs,
    trackedMetrics: rows.size,
    maxTrackedMetrics: head?.maxTrackedMetrics ?? 0,
    bytesPerMetric: head?.bytesPerMetric ?? 0,
    untrackedReads,
    patternReads,
    rows: [...rows.values()],
    readers: [...readerRows.values()].sort((a, b) => b.reads - a.reads || cmp(a.reader, b.reader)),
    known: (name) => knownRows.has(name),
    ingest: (name): IngestRow | undefined => {
      const r = rates.get(name);
      if (r === undefined) return undefined;
      return { activeSeries: series.get(name) ?? 0, ...r };
    },
    largest: (n) => largest.slice(0, n),
    missingKnown,
    queryLog,
  };
}

function addReaders(into: ReaderRow[], more: readonly ReaderRow[]): ReaderRow[] {
  const by = new Map(into.map((r) => [r.reader, r]));
  for (const r of more) {
    const had = by.get(r.reader);
    if (had === undefined) by.set(r.reader, { ...r });
    else {
      had.reads += r.reads;
      had.lastRead = Math.max(had.lastRead, r.lastRead);
    }
  }
  return [...by.values()];
}

function byReads(a: ReaderRow, b: ReaderRow): number {
  return b.reads - a.reads || b.lastRead - a.lastRead || cmp(a.reader, b.reader);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Limits (GET /api/v1/stats/limits)

/**
 * The workers' limits reports together, each policy's limits at most `perPolicy`: the union of
 * the limits in use each worker saw, a count the largest any worker gives (with the shared store
 * every worker gives its global count; a worker's own count is a lower bound), global when every
 * part's was. Each part lists its `perPolicy` fullest: with global counts, the whole proxy's
 * fullest are among them. Pure.
 */
export function mergeLimits(parts: readonly LimitsReport[], perPolicy: number): LimitsReport {
  const byPolicy = new Map<string, { uses: Map<string, LimitUse>; global: boolean }>();
  for (const part of parts) {
    for (const p of part.policies) {
      const had = byPolicy.get(p.policy) ?? { uses: new Map<string, LimitUse>(), global: true };
      byPolicy.set(p.policy, had);
      if (p.limits.length > 0) had.global &&= p.global;
      for (const u of p.limits) {
        const k = `${u.limit}\u0000${u.metric ?? ''}\u0000${u.label ?? ''}\u0000${u.tenant ?? ''}`;
        const seen = had.uses.get(k);
        if (seen === undefined || u.current > seen.current) had.uses.set(k, { ...u });
      }
    }
  }
  return {
    policies: [...byPolicy].map(([policy, { uses, global }]) =>
      policyFill(policy, [...uses.values()].sort(byFill), uses.size > 0 && global, perPolicy),
    ),
  };
}
