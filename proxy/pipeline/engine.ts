// The policy engine: runs a compiled pipeline over one decoded remote-write request and produces
// the request to forward. Per request, not per sample: the stateless verdict of a label set is
// cached (keyed by two independent 32-bit hashes of its bytes), counters accumulate in typed
// arrays and are flushed once per request, and series that pass unchanged are copied as the
// original bytes. When nothing changed, the caller forwards the sender's compressed body as is.

import {
  afterValue,
  afterVarint,
  readLabelRefsV2,
  readLabelsV1,
  type SeriesIndex,
  varintAt,
} from '../codec/scan.js';
import type { Label } from '../codec/types.js';
import {
  ADMIT_KNOWN,
  ADMIT_NEW,
  hashBytes,
  hashString,
  MetricInterner,
  SeriesTracker,
} from './cardinality.js';
import { type CompiledPolicy, OVERFLOW_VALUE, type Pipeline } from './compile.js';
import { evaluate, type Verdict } from './evaluate.js';
import { nextExpiry } from './unused.js';

const SEED_A = 0x9747b28c;
const SEED_B = 0x85ebca6b;

/** Sizes of the engine's bounded state; see README "Memory". */
export interface EngineOptions {
  /** Label sets whose verdict is cached per pipeline version; the cache is cleared when full. */
  readonly verdictCacheSize: number;
  /** Capacity of each limit's series tracker (about 13.3 bytes a series, allocated up front). */
  readonly maxTrackedSeries: number;
  /** Capacity of each per-label limit's value tracker. */
  readonly maxTrackedLabelValues: number;
  /** Distinct metric names tracked for limits and statistics; later names share one bucket. */
  readonly maxMetricNames: number;
}

/** What the engine reports besides the request it builds; implemented by proxy/stats. */
export interface EngineObserver {
  /** `samples` of series `metric` acted on by counter slot `slot` (see Pipeline.slots). */
  slot(slot: number, metric: number, samples: number): void;
  /**
   * A series that was forwarded: its metric index and label-set hash, for active-series
   * statistics. Returns true when the series is new to the statistics, which then get its labels
   * through `newSeries` (decoded again only for such series). `samples` counts its samples and
   * histograms, for per-metric ingest rates.
   */
  forwarded(metric: number, hash: number, nowMs: number, samples: number): boolean;
  newSeries(metric: number, labels: readonly Label[], nowMs: number): void;
  /**
   * A series whose metric no source reads, by the unused stage of policy `policy` (an index into
   * the pipeline's policies), whether it was reported or dropped: for the unused statistics.
   */
  unused?(policy: number, metric: number, hash: number, samples: number, nowMs: number): void;
  /**
   * Names a (metric, label) pair for the unread-label statistics (spec.unused.labels); called on a
   * verdict-cache miss only. Returns a pair index, or -1 when no more pairs are tracked.
   */
  labelPair?(metric: number, label: string): number;
  /**
   * The unread labels of a series, seen again: `keys` holds (policy, pair, value hash) triples
   * as built from labelPair. Called per series, allocation-free.
   */
  unreadLabels?(keys: Uint32Array, nowMs: number): void;
}

interface Entry {
  readonly h2: number;
  readonly dropped: boolean;
  readonly slots: readonly number[];
  /** Whether the final labels differ from the series' own. */
  readonly changed: boolean;
  /**
   * The final labels, kept only when needed: when changed, or when a per-label limit or an
   * overflow rule may need label values. Most entries keep none, which is what bounds the cache.
   */
  readonly labels: Label[] | undefined;
  /** v1 encoding of the final labels (Label records), when changed. */
  readonly encoded: Uint8Array | undefined;
  /** Hash of the final label set (the tracker key) and its metric index. */
  readonly hash: number;
  readonly metric: number;
  readonly limitPolicies: readonly number[];
  /** Policies whose unused stage found the metric unread. */
  readonly unusedPolicies: readonly number[];
  /** (policy, pair, value hash) triples of unread labels (spec.unused.labels), or undefined. */
  readonly unreadKeys: Uint32Array | undefined;
  /** Per limit policy: index of the perMetric rule that applies, or -1. */
  readonly metricRule: readonly number[];
  /** Overflow variants, computed once per (rule) and kept. */
  overflow: Map<number, Entry> | undefined;
  /** True for an overflow variant: several series collapse onto it, so its samples are aggregated. */
  readonly aggregated: boolean;
}

export interface ProcessResult {
  /** True when every series passed untouched: forward the original body. */
  readonly unchanged: boolean;
  /** The message to forward (uncompressed) when something changed. */
  readonly body: Uint8Array | undefined;
  readonly series: number;
  readonly samples: number;
  readonly histograms: number;
  readonly exemplars: number;
}

interface LimitState {
  readonly key: string;
  readonly series: SeriesTracker;
  readonly labels: readonly SeriesTracker[];
  readonly tenants: SeriesTracker | undefined;
}

/**
 * Long-lived: owns the metric-name interner, the limit trackers (kept across reloads for policies
 * whose limits did not change) and the verdict cache of the current pipeline.
 */
export class PolicyEngine {
  readonly interner: MetricInterner;
  readonly #opts: EngineOptions;
  readonly #observer: EngineObserver;
  #pipeline: Pipeline;
  /**
   * The verdict cache, in two generations per tenant: lookups that hit the previous generation are
   * promoted into the current one, and when the current one holds `verdictCacheSize` entries it
   * becomes the previous one. A working set up to the size stays cached; a larger one degrades
   * gradually instead of flushing everything at once. At most twice the size is held.
   */
  #cache = new Map<string, Map<number, Entry>>();
  #previous = new Map<string, Map<number, Entry>>();
  #cached = 0;
  #lists = new Map<string, readonly number[]>();
  #limits: (LimitState | undefined)[] = [];
  readonly #tenants: MetricInterner;
  /** Verdicts hold until then: the next unused exemption expiry, after which the cache is dropped. */
  #validUntil = Number.NEGATIVE_INFINITY;
  /** Newest timestamp forwarded per overflow series (by label-set hash); bounded, cleared when full. */
  readonly #overflowSeen = new Map<number, number>();

  constructor(pipeline: Pipeline, opts: EngineOptions, observer: EngineObserver) {
    this.#opts = opts;
    this.#observer = observer;
    this.interner = new MetricInterner({ capacity: opts.maxMetricNames });
    this.#tenants = new MetricInterner({ capacity: 4096 });
    this.#pipeline = pipeline;
    this.#limits = this.#limitStates(pipeline, []);
  }

  get pipeline(): Pipeline {
    return this.#pipeline;
  }

  /** Swaps in a new pipeline between requests; trackers of unchanged limits carry over. */
  setPipeline(pipeline: Pipeline): void {
    this.#limits = this.#limitStates(pipeline, this.#limits);
    this.#pipeline = pipeline;
    this.#cache = new Map();
    this.#previous = new Map();
    this.#cached = 0;
    this.#lists = new Map();
    this.#validUntil = Number.NEGATIVE_INFINITY;
  }

  /** Drops every cached verdict once an exemption they relied on has expired. */
  #expire(nowMs: number): void {
    if (this.#validUntil !== Number.NEGATIVE_INFINITY) {
      this.#cache = new Map();
      this.#previous = new Map();
      this.#cached = 0;
    }
    this.#validUntil = nextExpiry(
      this.#pipeline.policies.map((p) => p.unused),
      nowMs,
    );
  }

  /** Active series of a metric in the first limit tracker that tracks it, for statistics. */
  limitStates(): readonly (LimitState | undefined)[] {
    return this.#limits;
  }

  #limitStates(
    pipeline: Pipeline,
    previous: readonly (LimitState | undefined)[],
  ): (LimitState | undefined)[] {
    const byKey = new Map(previous.filter((s) => s !== undefined).map((s) => [s.key, s]));
    return pipeline.policies.map((p) => {
      const l = p.limits;
      if (l === undefined) return undefined;
      const reuse = byKey.get(l.key);
      if (reuse !== undefined) return reuse;
      const buckets = this.interner.capacity;
      return {
        key: l.key,
        series: new SeriesTracker({
          maxTrackedSeries: this.#opts.maxTrackedSeries,
          buckets,
          windowMs: l.windowMs,
        }),
        labels: l.perLabel.map(
          () =>
            new SeriesTracker({
              maxTrackedSeries: this.#opts.maxTrackedLabelValues,
              buckets,
              windowMs: l.windowMs,
            }),
        ),
        tenants:
          l.perTenantMaxSeries === undefined
            ? undefined
            : new SeriesTracker({
                maxTrackedSeries: this.#opts.maxTrackedSeries,
                buckets: 4096,
                windowMs: l.windowMs,
              }),
      };
    });
  }

  /**
   * Runs the pipeline over a scanned request. Synchronous: `buf` and `index` are only valid until
   * the caller's next await.
   */
  process(buf: Buffer, index: SeriesIndex, tenant: string | undefined, nowMs: number): ProcessResult {
    if (nowMs >= this.#validUntil) this.#expire(nowMs);
    const v1 = index.version === 1;
    const tenantKey = tenant ?? '';
    const tenantIdx = tenant === undefined ? 0 : this.#tenants.internString(tenant);
    const symbolHash = v1 ? undefined : this.#symbolHashes(buf, index);
    const symbols: (string | undefined)[] = [];
    const out = new OutputBuilder(buf, index);
    let series = 0;
    let samples = 0;
    let histograms = 0;
    let exemplars = 0;
    let h1 = 0;
    let h2 = 0;
    // One visitor per request, not per series.
    const visitRefs = (nameRef: number, valueRef: number): void => {
      h1 = mix(mix(h1, symbolHash![2 * nameRef]!), symbolHash![2 * valueRef]!);
      h2 = mix(mix(h2, symbolHash![2 * nameRef + 1]!), symbolHash![2 * valueRef + 1]!);
    };

    for (let i = 0; i < index.count; i++) {
      const n = index.samples[i]! + index.histograms[i]!;
      if (v1) {
        h1 = hashBytes(buf, index.labelsStart[i]!, index.labelsEnd[i]!, SEED_A);
        h2 = hashBytes(buf, index.labelsStart[i]!, index.labelsEnd[i]!, SEED_B);
      } else {
        h1 = SEED_A;
        h2 = SEED_B;
        readLabelRefsV2(buf, index, i, visitRefs);
      }
      let entry = this.#lookup(tenantKey, h1, h2);
      if (entry === undefined) {
        const labels = v1 ? labelsV1(buf, index, i) : labelsV2(buf, index, i, symbols);
        entry = this.#makeEntry(labels, h1, h2, tenant, v1, nowMs);
        this.#store(tenantKey, h1, entry);
      }
      for (const s of entry.slots) this.#observer.slot(s, entry.metric, n);
      for (const p of entry.unusedPolicies) this.#observer.unused?.(p, entry.metric, entry.hash, n, nowMs);
      if (entry.unreadKeys !== undefined) this.#observer.unreadLabels?.(entry.unreadKeys, nowMs);
      if (entry.dropped) {
        out.drop(i);
        continue;
      }
      const final = entry.limitPolicies.length === 0 ? entry : this.#applyLimits(entry, tenantIdx, nowMs, n);
      if (final === undefined) {
        out.drop(i);
        continue;
      }
      if (final.aggregated) {
        // Counted as forwarded by the aggregate it joins, in finish().
        out.aggregate(i, final);
        continue;
      }
      if (final.changed) out.rewrite(i, final.labels ?? [], final.encoded!);
      series++;
      samples += index.samples[i]!;
      histograms += index.histograms[i]!;
      exemplars += index.exemplars[i]!;
      if (this.#observer.forwarded(final.metric, final.hash, nowMs, n)) {
        const labels =
          final.labels ??
          (final.encoded !== undefined
            ? decodeLabelRecords(final.encoded)
            : v1
              ? labelsV1(buf, index, i)
              : labelsV2(buf, index, i, symbols));
        this.#observer.newSeries(final.metric, labels, nowMs);
      }
    }
    if (!out.changed) {
      return { unchanged: true, body: undefined, series, samples, histograms, exemplars };
    }
    const body = out.finish(this.#overflowSeen, this.#opts.verdictCacheSize);
    series += out.aggregateSeries;
    samples += out.aggregateSamples;
    return { unchanged: false, body, series, samples, histograms, exemplars };
  }

  #lookup(tenant: string, h1: number, h2: number): Entry | undefined {
    const entry = this.#cache.get(tenant)?.get(h1);
    if (entry !== undefined && entry.h2 === h2) return entry;
    const old = this.#previous.get(tenant)?.get(h1);
    if (old === undefined || old.h2 !== h2) return undefined;
    this.#store(tenant, h1, old);
    return old;
  }

  #store(tenant: string, h1: number, entry: Entry): void {
    if (this.#cached >= this.#opts.verdictCacheSize) {
      this.#previous = this.#cache;
      this.#cache = new Map();
      this.#cached = 0;
    }
    let cache = this.#cache.get(tenant);
    if (cache === undefined) {
      cache = new Map();
      this.#cache.set(tenant, cache);
    }
    cache.set(h1, entry);
    this.#cached++;
  }

  /** Two hashes per symbol, computed once per request. */
  #symbolHashes(buf: Buffer, index: SeriesIndex): Uint32Array {
    const hashes = new Uint32Array(index.symbolCount * 2);
    for (let k = 0; k < index.symbolCount; k++) {
      hashes[2 * k] = hashBytes(buf, index.symbolStart[k]!, index.symbolEnd[k]!, SEED_A);
      hashes[2 * k + 1] = hashBytes(buf, index.symbolStart[k]!, index.symbolEnd[k]!, SEED_B);
    }
    return hashes;
  }

  #makeEntry(
    labels: Label[],
    h1: number,
    h2: number,
    tenant: string | undefined,
    v1: boolean,
    nowMs: number,
  ): Entry {
    const verdict = evaluate(this.#pipeline, labels, tenant, nowMs);
    const final = verdict.labels ?? labels;
    const changed = verdict.labels !== null && verdict.changed;
    const encoded = changed ? encodeLabelsV1(final) : undefined;
    const name = labelValue(final, '__name__');
    const metric = this.interner.internString(name);
    const metricRule: number[] = [];
    // v1 rewrites need only the encoded labels; v2 rewrites re-reference symbols, so keep labels.
    let needsLabels = changed && (!v1 || verdict.aggregated);
    for (let k = 0; k < verdict.limitPolicies.length; k++) {
      const l = this.#pipeline.policies[verdict.limitPolicies[k]!]!.limits!;
      metricRule.push(l.perMetric.findIndex((r) => r.metric.matches(name)));
      if (l.perLabel.length > 0 || l.perMetric.some((r) => r.overflow)) needsLabels = true;
    }
    return {
      h2,
      dropped: verdict.labels === null,
      slots: this.#shared(verdict.slots),
      changed,
      labels: needsLabels ? final : undefined,
      encoded,
      hash: encoded === undefined ? h1 : hashBytes(encoded, 0, encoded.length, SEED_A),
      metric,
      limitPolicies: this.#shared(verdict.limitPolicies),
      unusedPolicies: this.#shared(verdict.unused),
      unreadKeys: this.#unreadKeys(metric, verdict.unread),
      metricRule: this.#shared(metricRule),
      overflow: undefined,
      // Unread labels aggregated away (spec.unused.labels): summed per timestamp like overflow.
      aggregated: verdict.aggregated,
    };
  }

  #unreadKeys(metric: number, unread: Verdict['unread']): Uint32Array | undefined {
    if (unread.length === 0 || this.#observer.labelPair === undefined) return undefined;
    const keys: number[] = [];
    for (const u of unread) {
      const pair = this.#observer.labelPair(metric, u.name);
      if (pair >= 0) keys.push(u.policy, pair, hashString(u.value, SEED_A));
    }
    return keys.length === 0 ? undefined : Uint32Array.from(keys);
  }

  /**
   * Entries share their small number lists: a configuration yields few distinct ones, and an
   * array per cached label set would be most of the cache's memory.
   */
  #shared(list: readonly number[]): readonly number[] {
    const key = list.join(',');
    let shared = this.#lists.get(key);
    if (shared === undefined) {
      shared = Object.freeze([...list]);
      if (this.#lists.size < 4096) this.#lists.set(key, shared);
    }
    return shared;
  }

  /**
   * The stateful stage. Returns the entry to forward (possibly an overflow variant) or undefined
   * when a limit dropped the series. Dry-run policies count what they would do and change nothing.
   */
  #applyLimits(entry: Entry, tenantIdx: number, nowMs: number, samples: number): Entry | undefined {
    let current = entry;
    for (let k = 0; k < entry.limitPolicies.length; k++) {
      const p = this.#pipeline.policies[entry.limitPolicies[k]!]!;
      const state = this.#limits[p.index]!;
      const l = p.limits!;
      if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
        const r = state.tenants.admit(tenantIdx, current.hash, nowMs, l.perTenantMaxSeries);
        if (r !== ADMIT_KNOWN && r !== ADMIT_NEW) {
          this.#observer.slot(l.tenantSlot, current.metric, samples);
          if (!p.dryRun) return undefined;
        }
      }
      const ruleIndex = entry.metricRule[k]!;
      const rule = ruleIndex >= 0 ? l.perMetric[ruleIndex] : undefined;
      const r = state.series.admit(
        current.metric,
        current.hash,
        nowMs,
        rule?.maxSeries ?? Number.POSITIVE_INFINITY,
      );
      if (r !== ADMIT_KNOWN && r !== ADMIT_NEW && rule !== undefined) {
        this.#observer.slot(rule.slot, current.metric, samples);
        if (!p.dryRun) {
          if (!rule.overflow || rule.overflowLabel === undefined) return undefined;
          current = this.#overflowVariant(current, p, rule.overflowLabel, ruleIndex);
          state.series.admit(current.metric, current.hash, nowMs, Number.POSITIVE_INFINITY);
        }
      }
      for (let j = 0; j < l.perLabel.length; j++) {
        const lr = l.perLabel[j]!;
        if (lr.metric !== undefined && !lr.metric.matches(this.interner.name(current.metric))) continue;
        const v = labelValue(current.labels!, lr.label);
        if (v === '' || v === OVERFLOW_VALUE) continue;
        const res = state.labels[j]!.admit(current.metric, hashString(v, SEED_A), nowMs, lr.maxValues);
        if (res !== ADMIT_KNOWN && res !== ADMIT_NEW) {
          this.#observer.slot(lr.slot, current.metric, samples);
          if (!p.dryRun) {
            if (!lr.overflow) return undefined;
            current = this.#overflowVariant(current, p, lr.label, 1000 + j);
          }
        }
      }
    }
    return current;
  }

  #overflowVariant(entry: Entry, policy: CompiledPolicy, label: string, ruleKey: number): Entry {
    const key = policy.index * 4096 + ruleKey;
    entry.overflow ??= new Map();
    const known = entry.overflow.get(key);
    if (known !== undefined) return known;
    const labels = entry.labels!.map((l) => (l.name === label ? { name: l.name, value: OVERFLOW_VALUE } : l));
    const encoded = encodeLabelsV1(labels);
    const variant: Entry = {
      ...entry,
      changed: true,
      labels,
      encoded,
      hash: hashBytes(encoded, 0, encoded.length, SEED_A),
      overflow: undefined,
      aggregated: true,
    };
    entry.overflow.set(key, variant);
    return variant;
  }
}

/** Combines a running hash with a 32-bit value (the murmur3 block step). */
function mix(h: number, k: number): number {
  let x = Math.imul(k, 0xcc9e2d51);
  x = (x << 15) | (x >>> 17);
  x = Math.imul(x, 0x1b873593);
  let y = (h ^ x) >>> 0;
  y = (y << 13) | (y >>> 19);
  return (Math.imul(y, 5) + 0xe6546b64) >>> 0;
}

function labelValue(labels: readonly Label[], name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}

/** Decodes Label records as encodeLabelsV1 writes them; only for series new to the statistics. */
function decodeLabelRecords(bytes: Uint8Array): Label[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const labels: Label[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const start = afterVarint(buf, pos + 1);
    const end = start + varintAt(buf, pos + 1);
    let name = '';
    let value = '';
    for (let q = start; q < end; ) {
      const from = afterVarint(buf, q + 1);
      const to = from + varintAt(buf, q + 1);
      if (buf[q] === 0x0a) name = buf.toString('utf8', from, to);
      else value = buf.toString('utf8', from, to);
      q = to;
    }
    labels.push({ name, value });
    pos = end;
  }
  return labels;
}

/** Decodes the labels of v1 series `i`; only on a verdict-cache miss. */
function labelsV1(buf: Buffer, index: SeriesIndex, i: number): Label[] {
  const labels: Label[] = [];
  readLabelsV1(buf, index, i, (ns, ne, vs, ve) => {
    labels.push({ name: buf.toString('utf8', ns, ne), value: buf.toString('utf8', vs, ve) });
  });
  return labels;
}

/** Decodes the labels of v2 series `i`, decoding each symbol once per request. */
function labelsV2(buf: Buffer, index: SeriesIndex, i: number, symbols: (string | undefined)[]): Label[] {
  const sym = (k: number): string => {
    let s = symbols[k];
    if (s === undefined) {
      s = buf.toString('utf8', index.symbolStart[k]!, index.symbolEnd[k]!);
      symbols[k] = s;
    }
    return s;
  };
  const labels: Label[] = [];
  readLabelRefsV2(buf, index, i, (n, v) => {
    labels.push({ name: sym(n), value: sym(v) });
  });
  return labels;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

/** Encodes labels as remote-write 1.0 Label records (field 1 of TimeSeries), empty values left out. */
export function encodeLabelsV1(labels: readonly Label[]): Uint8Array {
  const parts = labels.map((l) => [Buffer.from(l.name), Buffer.from(l.value)] as const);
  let size = 0;
  const inner: number[] = [];
  for (const [n, v] of parts) {
    const len =
      (n.length ? 1 + varintSize(n.length) + n.length : 0) +
      (v.length ? 1 + varintSize(v.length) + v.length : 0);
    inner.push(len);
    size += 1 + varintSize(len) + len;
  }
  const out = new Uint8Array(size);
  let pos = 0;
  parts.forEach(([n, v], k) => {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, inner[k]!);
    if (n.length) {
      out[pos++] = 0x0a;
      pos = writeVarint(out, pos, n.length);
      out.set(n, pos);
      pos += n.length;
    }
    if (v.length) {
      out[pos++] = 0x12;
      pos = writeVarint(out, pos, v.length);
      out.set(v, pos);
      pos += v.length;
    }
  });
  return out;
}

/** Copies the records of buf[from, to) except those of field `skip`; returns the copied bytes. */
function recordsExcept(buf: Uint8Array, from: number, to: number, skip: number): Uint8Array[] {
  const kept: Uint8Array[] = [];
  for (let pos = from; pos < to; ) {
    const start = pos;
    const tag = varintAt(buf, pos);
    pos = afterValue(buf, afterVarint(buf, pos), tag & 7);
    if (Math.floor(tag / 8) !== skip) kept.push(buf.subarray(start, pos));
  }
  return kept;
}

/** Whether every record in buf[from, to) is a LEN record of field `field` (a one-byte tag). */
function onlyField(buf: Uint8Array, from: number, to: number, field: number): boolean {
  const tag = (field << 3) | 2;
  let pos = from;
  while (pos < to) {
    if (buf[pos] !== tag) return false;
    pos = afterValue(buf, pos + 1, 2);
  }
  return pos === to;
}

/** The offset of the payload of the top-level record starting at `start` (after tag and length). */
function payloadOf(buf: Uint8Array, start: number): number {
  return afterVarint(buf, afterVarint(buf, start));
}

/**
 * Builds the forwarded message from the original: the original bytes with dropped and rewritten
 * series cut out, then (v2) the new symbols, then the rewritten series. Repeated fields may come
 * in any order in protobuf, and v2 symbols appended after all original ones get the next indices,
 * so the original series' references stay valid.
 */
class OutputBuilder {
  changed = false;
  aggregateSeries = 0;
  aggregateSamples = 0;
  #aggregates: Map<number, { entry: Entry; byTs: Map<number, number> }> | undefined;
  readonly #buf: Buffer;
  readonly #index: SeriesIndex;
  readonly #chunks: Uint8Array[] = [];
  readonly #tail: Uint8Array[] = [];
  #copiedTo = 0;
  #symbols: Map<string, number> | undefined;
  #newSymbols: string[] = [];

  constructor(buf: Buffer, index: SeriesIndex) {
    this.#buf = buf;
    this.#index = index;
  }

  #cut(i: number): void {
    const start = this.#index.start[i]!;
    if (start > this.#copiedTo) this.#chunks.push(this.#buf.subarray(this.#copiedTo, start));
    this.#copiedTo = this.#index.end[i]!;
    this.changed = true;
  }

  drop(i: number): void {
    this.#cut(i);
  }

  rewrite(i: number, labels: readonly Label[], encodedV1: Uint8Array): void {
    this.#cut(i);
    const buf = this.#buf;
    const v1 = this.#index.version === 1;
    const payload = payloadOf(buf, this.#index.start[i]!);
    const labelsEnd = this.#index.labelsEnd[i]!;
    // Labels first and nothing but labels in their region (what every sender writes): the rest of
    // the series is one slice. Otherwise pick the other records out one by one.
    const rest =
      this.#index.labelsStart[i] === payload && onlyField(buf, payload, labelsEnd, 1)
        ? [buf.subarray(labelsEnd, this.#index.end[i]!)]
        : recordsExcept(buf, payload, this.#index.end[i]!, 1);
    const head = v1 ? encodedV1 : this.#labelRefs(labels);
    let len = head.length;
    for (const r of rest) len += r.length;
    const prefix = new Uint8Array(1 + varintSize(len));
    prefix[0] = v1 ? 0x0a : 0x2a;
    writeVarint(prefix, 1, len);
    this.#tail.push(prefix, head, ...rest);
  }

  /** v2: a packed labels_refs record for `labels`, adding symbols to the request as needed. */
  #labelRefs(labels: readonly Label[]): Uint8Array {
    const refs: number[] = [];
    for (const l of labels) refs.push(this.#symbol(l.name), this.#symbol(l.value));
    let size = 0;
    for (const r of refs) size += varintSize(r);
    const out = new Uint8Array(1 + varintSize(size) + size);
    out[0] = 0x0a;
    let pos = writeVarint(out, 1, size);
    for (const r of refs) pos = writeVarint(out, pos, r);
    return out;
  }

  #symbol(s: string): number {
    if (this.#symbols === undefined) {
      this.#symbols = new Map();
      const idx = this.#index;
      for (let k = 0; k < idx.symbolCount; k++) {
        const text = this.#buf.toString('utf8', idx.symbolStart[k]!, idx.symbolEnd[k]!);
        if (!this.#symbols.has(text)) this.#symbols.set(text, k);
      }
    }
    let ref = this.#symbols.get(s);
    if (ref === undefined) {
      ref = this.#index.symbolCount + this.#newSymbols.length;
      this.#newSymbols.push(s);
      this.#symbols.set(s, ref);
    }
    return ref;
  }

  /**
   * Series collapsing onto one overflow series within a request are merged: float samples with
   * the same timestamp are summed (the series of one scrape share it), so the receiver gets one
   * sample per timestamp instead of duplicates it would reject with a 400 for the whole request.
   * Histograms and exemplars of overflowed series are not aggregated and are dropped.
   */
  aggregate(i: number, entry: Entry): void {
    this.#cut(i);
    this.#aggregates ??= new Map();
    let agg = this.#aggregates.get(entry.hash);
    if (agg === undefined) {
      agg = { entry, byTs: new Map() };
      this.#aggregates.set(entry.hash, agg);
    }
    const buf = this.#buf;
    for (const rec of recordsOf(buf, payloadOf(buf, this.#index.start[i]!), this.#index.end[i]!, 2)) {
      const { value, timestamp } = readSample(buf, rec[0], rec[1]);
      agg.byTs.set(timestamp, (agg.byTs.get(timestamp) ?? 0) + value);
    }
  }

  /**
   * `seen` keeps the newest timestamp forwarded per overflow series across requests: a sample at
   * or before it would be a duplicate or out of order for the receiver, which rejects the whole
   * request for one, so such samples are left out here.
   */
  finish(seen: Map<number, number>, maxSeen: number): Uint8Array {
    for (const { entry, byTs } of this.#aggregates?.values() ?? []) {
      const last = seen.get(entry.hash) ?? Number.NEGATIVE_INFINITY;
      const times = [...byTs.keys()].filter((t) => t > last).sort((a, b) => a - b);
      if (times.length === 0) continue;
      if (seen.size >= maxSeen) seen.clear();
      seen.set(entry.hash, times[times.length - 1]!);
      const samples = times.map((t) => encodeSample(byTs.get(t)!, t));
      const head = this.#index.version === 1 ? entry.encoded! : this.#labelRefs(entry.labels!);
      let len = head.length;
      for (const smp of samples) len += smp.length;
      const prefix = new Uint8Array(1 + varintSize(len));
      prefix[0] = this.#index.version === 1 ? 0x0a : 0x2a;
      writeVarint(prefix, 1, len);
      this.#tail.push(prefix, head, ...samples);
      this.aggregateSeries++;
      this.aggregateSamples += times.length;
    }
    if (this.#copiedTo < this.#buf.length) this.#chunks.push(this.#buf.subarray(this.#copiedTo));
    for (const s of this.#newSymbols) {
      const bytes = Buffer.from(s);
      const prefix = new Uint8Array(1 + varintSize(bytes.length));
      prefix[0] = 0x22;
      writeVarint(prefix, 1, bytes.length);
      this.#chunks.push(prefix, bytes);
    }
    return Buffer.concat([...this.#chunks, ...this.#tail]);
  }
}

/** [payload start, payload end) of each LEN record of field `field` in buf[from, to). */
function recordsOf(buf: Uint8Array, from: number, to: number, field: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let pos = from; pos < to; ) {
    const tag = varintAt(buf, pos);
    const value = afterVarint(buf, pos);
    pos = afterValue(buf, value, tag & 7);
    if (tag === ((field << 3) | 2)) out.push([afterVarint(buf, value), pos]);
  }
  return out;
}

/** Reads a Sample payload (value = 1 double, timestamp = 2 int64) as the scanner validated it. */
function readSample(buf: Uint8Array, from: number, to: number): { value: number; timestamp: number } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let value = 0;
  let timestamp = 0;
  let pos = from;
  while (pos < to) {
    const tag = buf[pos++]!;
    if (tag === 0x09) {
      value = view.getFloat64(pos, true);
      pos += 8;
    } else {
      let v = 0n;
      let shift = 0n;
      let b: number;
      do {
        b = buf[pos++]!;
        v |= BigInt(b & 0x7f) << shift;
        shift += 7n;
      } while (b >= 0x80);
      if (tag === 0x10) timestamp = Number(BigInt.asIntN(64, v));
    }
  }
  return { value, timestamp };
}

/** A Sample record (field 2 of TimeSeries in both versions). */
function encodeSample(value: number, timestamp: number): Uint8Array {
  const ts = BigInt.asUintN(64, BigInt(timestamp));
  const tsBytes: number[] = [];
  let v = ts;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    tsBytes.push(b);
  } while (v > 0n);
  const inner = 9 + (timestamp === 0 ? 0 : 1 + tsBytes.length);
  const out = new Uint8Array(2 + inner);
  out[0] = 0x12;
  out[1] = inner;
  out[2] = 0x09;
  new DataView(out.buffer).setFloat64(3, value, true);
  if (timestamp !== 0) {
    out[11] = 0x10;
    out.set(tsBytes, 12);
  }
  return out;
}
