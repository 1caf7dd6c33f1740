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
  type AdmissionCheck,
  ANSWER_ADMITTED,
  ANSWER_KNOWN,
  ANSWER_REFUSED,
  CHECK_SERIES_START,
  CHECK_SETS_OVERFLOW,
  CHECK_SKIP_IF_OVERFLOWED,
  CHECK_STOP,
  fallbackShare,
  type LimitStore,
} from '../limits/store.js';
import {
  ADMIT_KNOWN,
  ADMIT_NEW,
  hashBytes,
  hashString,
  LOOKUP_DUE,
  LOOKUP_UNKNOWN,
  MetricInterner,
  SeriesTracker,
} from './cardinality.js';
import { type CollisionMode, type CompiledPolicy, OVERFLOW_VALUE, type Pipeline } from './compile.js';
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
  /**
   * The label every series the proxy synthesizes (overflow, aggregated unread labels, merged
   * collisions) carries, with this replica's value, so that replicas never send the same one.
   * Without it (or with an empty name) synthesized series carry no replica label.
   */
  readonly replicaLabel?: { readonly name: string; readonly value: string } | undefined;
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
  /** How samples of one timestamp are combined when several series are merged into this one. */
  readonly mode: CollisionMode;
  /** Slot counting samples of this synthesized series left out as out of order, or -1. */
  readonly oooSlot: number;
  /** The policy whose relabel changed the series, or -1 (see Verdict.relabeledBy). */
  readonly relabeledBy: number;
  /**
   * Hash of the final labels' v1 encoding whatever the request's version, so that series of one
   * request can be told to be the same series; only when the pipeline may collide, else 0.
   */
  readonly canon: number;
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
  /** The policy's part of shared-store scope names: a hash of `key`. */
  readonly tag: string;
  readonly windowSeconds: number;
  readonly series: SeriesTracker;
  readonly labels: readonly SeriesTracker[];
  readonly tenants: SeriesTracker | undefined;
  /**
   * Shared store only: keys the store refused lately, per scope kind (0 tenant, 1 series, 2 + j
   * label j), refused again without asking until `refusedMs` passed, so that a bomb's refused
   * series do not cost a round trip in every request. Made on first use.
   */
  readonly refused: (SeriesTracker | undefined)[];
}

/** Limits shared by every replica through a store (proxy/limits/store.ts). */
export interface SharedLimits {
  readonly store: LimitStore;
  /** Replicas sharing the limits: while the store is down each enforces limit / replicas. */
  readonly replicas: number;
  /** How long a key the store refused is refused again without asking (at least 1 s). */
  readonly refusedMs?: number;
}

/** One request on its way through the engine; see #loop. */
interface Pass {
  readonly buf: Buffer;
  readonly index: SeriesIndex;
  readonly tenant: string | undefined;
  readonly tenantKey: string;
  readonly tenantIdx: number;
  readonly nowMs: number;
  readonly v1: boolean;
  readonly symbolHash: Uint32Array | undefined;
  readonly symbols: (string | undefined)[];
  readonly out: OutputBuilder;
  series: number;
  samples: number;
  histograms: number;
  exemplars: number;
  /** Shared store only: decide unknown series locally with each limit's share (the store is down). */
  local: boolean;
  /** The store's answers by `tag \0 sub \0 member`. */
  answers: Map<string, number> | undefined;
  /** The checks to ask the store, while collecting. */
  checks: AdmissionCheck[] | undefined;
  /** The first series that waits for the answers. */
  resumeAt: number;
  /**
   * When the pipeline may collide: what becomes of each series (null: dropped), emitted in
   * #finish once series made the same by relabeling are known.
   */
  decisions: (Entry | null)[] | undefined;
}

/** Scope kinds of a limit state, for #scope. */
const SCOPE_TENANT = 0;
const SCOPE_SERIES = 1;
const SCOPE_LABEL = 2;

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
  readonly #sharedLimits: SharedLimits | undefined;

  constructor(pipeline: Pipeline, opts: EngineOptions, observer: EngineObserver, shared?: SharedLimits) {
    this.#opts = opts;
    this.#observer = observer;
    this.#sharedLimits = shared;
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
      const windowSeconds = Math.floor(l.windowMs / 1000);
      // With a shared store, a known key's activity is told to it four times per window.
      const refresh =
        this.#sharedLimits === undefined
          ? {}
          : { refreshSeconds: Math.max(1, Math.floor(windowSeconds / 4)) };
      return {
        key: l.key,
        tag: hashString(l.key, SEED_A).toString(36) + hashString(l.key, SEED_B).toString(36),
        windowSeconds,
        series: new SeriesTracker({
          maxTrackedSeries: this.#opts.maxTrackedSeries,
          buckets,
          windowMs: l.windowMs,
          ...refresh,
        }),
        labels: l.perLabel.map(
          () =>
            new SeriesTracker({
              maxTrackedSeries: this.#opts.maxTrackedLabelValues,
              buckets,
              windowMs: l.windowMs,
              ...refresh,
            }),
        ),
        tenants:
          l.perTenantMaxSeries === undefined
            ? undefined
            : new SeriesTracker({
                maxTrackedSeries: this.#opts.maxTrackedSeries,
                buckets: 4096,
                windowMs: l.windowMs,
                ...refresh,
              }),
        refused: [],
      };
    });
  }

  #refusedTracker(state: LimitState, kind: number, j: number): SeriesTracker {
    const slot = kind === SCOPE_TENANT ? 0 : kind === SCOPE_SERIES ? 1 : 2 + j;
    let t = state.refused[slot];
    if (t === undefined) {
      t = new SeriesTracker({
        maxTrackedSeries: Math.min(this.#opts.maxTrackedSeries, 1 << 18),
        buckets: kind === SCOPE_TENANT ? 4096 : this.interner.capacity,
        windowMs: Math.max(1000, this.#sharedLimits?.refusedMs ?? 5000),
      });
      state.refused[slot] = t;
    }
    return t;
  }

  /**
   * Runs the pipeline over a scanned request, deciding limits with this process's own trackers
   * (with a shared store: as while it is down, each limit's share). Synchronous: `buf` and
   * `index` are only valid until the caller's next await.
   */
  process(buf: Buffer, index: SeriesIndex, tenant: string | undefined, nowMs: number): ProcessResult {
    const pass = this.#begin(buf, index, tenant, nowMs);
    pass.local = true;
    this.#loop(pass, 0);
    return this.#finish(pass);
  }

  /**
   * Runs the pipeline over a scanned request. Without a shared store, or when this replica knows
   * every series of the request, it answers synchronously, exactly as `process`. Otherwise it
   * asks the store about the unknown series in one round trip and answers with a Promise: the
   * caller must then keep `buf` and `index` untouched until it settles.
   */
  run(
    buf: Buffer,
    index: SeriesIndex,
    tenant: string | undefined,
    nowMs: number,
  ): ProcessResult | Promise<ProcessResult> {
    const shared = this.#sharedLimits;
    if (shared === undefined) return this.process(buf, index, tenant, nowMs);
    const pass = this.#begin(buf, index, tenant, nowMs);
    pass.local = !shared.store.available;
    this.#loop(pass, 0);
    if (pass.checks === undefined) return this.#finish(pass);
    return this.#admitAndResume(pass, shared.store);
  }

  async #admitAndResume(pass: Pass, store: LimitStore): Promise<ProcessResult> {
    const pipeline = this.#pipeline;
    const checks = pass.checks!;
    const answers = await store.admit(checks, pass.nowMs);
    pass.checks = undefined;
    if (answers === undefined || this.#pipeline !== pipeline) {
      // No answer in time, or a reload while waiting (the checks were of the old policies).
      pass.local = true;
    } else {
      const byKey = new Map<string, number>();
      for (let i = 0; i < checks.length; i++) {
        const c = checks[i]!;
        const key = `${c.tag}\0${c.sub}\0${c.member}`;
        const a = answers[i]!;
        const had = byKey.get(key);
        // A member asked twice: a yes (known or admitted) wins over a no, a no over skipped.
        if (had === undefined || a < had) byKey.set(key, a);
      }
      pass.answers = byKey;
    }
    this.#loop(pass, pass.resumeAt);
    return this.#finish(pass);
  }

  #begin(buf: Buffer, index: SeriesIndex, tenant: string | undefined, nowMs: number): Pass {
    if (nowMs >= this.#validUntil) this.#expire(nowMs);
    const v1 = index.version === 1;
    return {
      buf,
      index,
      tenant,
      tenantKey: tenant ?? '',
      tenantIdx: tenant === undefined ? 0 : this.#tenants.internString(tenant),
      nowMs,
      v1,
      symbolHash: v1 ? undefined : this.#symbolHashes(buf, index),
      symbols: [],
      out: new OutputBuilder(buf, index),
      series: 0,
      samples: 0,
      histograms: 0,
      exemplars: 0,
      local: true,
      answers: undefined,
      checks: undefined,
      resumeAt: 0,
      decisions: this.#pipeline.mayCollide ? new Array(index.count).fill(null) : undefined,
    };
  }

  #finish(pass: Pass): ProcessResult {
    if (pass.decisions !== undefined) this.#emitDecisions(pass);
    const { out, series, samples, histograms, exemplars } = pass;
    if (!out.changed) {
      return { unchanged: true, body: undefined, series, samples, histograms, exemplars };
    }
    const body = out.finish(this.#overflowSeen, this.#opts.verdictCacheSize, (entry, leftOut) => {
      if (entry.oooSlot >= 0) this.#observer.slot(entry.oooSlot, entry.metric, leftOut);
    });
    return {
      unchanged: false,
      body,
      series: series + out.aggregateSeries,
      samples: samples + out.aggregateSamples,
      histograms,
      exemplars,
    };
  }

  /**
   * The series of `pass` from `from` on. With a shared store and no answers yet, the first series
   * with a limit check this replica cannot decide starts collecting: from there on, series are only
   * looked at for their checks (`pass.checks`, `pass.resumeAt`), to be run again with the answers.
   */
  #loop(pass: Pass, from: number): void {
    const { buf, index, v1, tenant, tenantKey, nowMs, out, symbols, decisions } = pass;
    const symbolHash = pass.symbolHash;
    const shared = this.#sharedLimits !== undefined;
    const asking = shared && !pass.local && pass.answers === undefined;
    let collecting = false;
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

    for (let i = from; i < index.count; i++) {
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
      if (collecting) {
        if (!entry.dropped && entry.limitPolicies.length > 0) this.#gather(entry, pass);
        continue;
      }
      if (asking && !entry.dropped && entry.limitPolicies.length > 0 && this.#gather(entry, pass)) {
        collecting = true;
        pass.resumeAt = i;
        continue;
      }
      for (const s of entry.slots) this.#observer.slot(s, entry.metric, n);
      for (const p of entry.unusedPolicies) this.#observer.unused?.(p, entry.metric, entry.hash, n, nowMs);
      if (entry.unreadKeys !== undefined) this.#observer.unreadLabels?.(entry.unreadKeys, nowMs);
      if (entry.dropped) {
        if (decisions === undefined) out.drop(i);
        continue;
      }
      const final =
        entry.limitPolicies.length === 0
          ? entry
          : shared
            ? this.#applyShared(entry, pass, n)
            : this.#applyLimits(entry, pass.tenantIdx, nowMs, n);
      if (decisions !== undefined) {
        decisions[i] = final ?? null;
        continue;
      }
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
      if (this.#observer.forwarded(final.metric, final.hash, nowMs, n)) this.#newSeries(pass, i, final);
    }
    pass.series += series;
    pass.samples += samples;
    pass.histograms += histograms;
    pass.exemplars += exemplars;
  }

  #newSeries(pass: Pass, i: number, final: Entry): void {
    const { buf, index } = pass;
    const labels =
      final.labels ??
      (final.encoded !== undefined
        ? decodeLabelRecords(final.encoded)
        : pass.v1
          ? labelsV1(buf, index, i)
          : labelsV2(buf, index, i, pass.symbols));
    this.#observer.newSeries(final.metric, labels, pass.nowMs);
  }

  /**
   * Emits the decisions of a pipeline that may collide: series of the request that relabeling
   * made the same series (same final labels, one of them relabeled) are merged into one
   * (#collisionVariant) and counted with reason collision; the rest as #loop would have.
   */
  #emitDecisions(pass: Pass): void {
    const decisions = pass.decisions!;
    const { index, out, nowMs } = pass;
    const count = new Map<number, number>();
    let any = false;
    for (const e of decisions) {
      if (e === null || e.aggregated) continue;
      const c = (count.get(e.canon) ?? 0) + 1;
      count.set(e.canon, c);
      if (c > 1) any = true;
    }
    // Per colliding label set, its merged series, built from a relabeled member.
    const merged = new Map<number, Entry | null>();
    if (any) {
      for (const e of decisions) {
        if (e === null || e.aggregated || count.get(e.canon)! < 2) continue;
        const labels = e.labels ?? (e.encoded === undefined ? undefined : decodeLabelRecords(e.encoded));
        if (e.relabeledBy >= 0 && labels !== undefined && !merged.get(e.canon)) {
          merged.set(e.canon, this.#collisionVariant(e, labels));
        } else if (!merged.has(e.canon)) merged.set(e.canon, null);
      }
    }
    for (let i = 0; i < decisions.length; i++) {
      const e = decisions[i]!;
      if (e === null) {
        out.drop(i);
        continue;
      }
      const m = any && !e.aggregated ? merged.get(e.canon) : undefined;
      if (m) {
        this.#observer.slot(
          this.#pipeline.policies[m.relabeledBy]!.collisionSlot,
          e.metric,
          index.samples[i]! + index.histograms[i]!,
        );
        out.aggregate(i, m);
        continue;
      }
      if (e.aggregated) {
        out.aggregate(i, e);
        continue;
      }
      if (e.changed) out.rewrite(i, e.labels ?? [], e.encoded!);
      pass.series++;
      pass.samples += index.samples[i]!;
      pass.histograms += index.histograms[i]!;
      pass.exemplars += index.exemplars[i]!;
      const n = index.samples[i]! + index.histograms[i]!;
      if (this.#observer.forwarded(e.metric, e.hash, nowMs, n)) this.#newSeries(pass, i, e);
    }
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
    // Unread labels aggregated away (spec.unused.labels) make a synthesized series: replica label.
    const final = verdict.aggregated ? this.#withReplica(verdict.labels!) : (verdict.labels ?? labels);
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
      mode: 'sum',
      oooSlot: verdict.aggregatedBy >= 0 ? this.#pipeline.policies[verdict.aggregatedBy]!.outOfOrderSlot : -1,
      relabeledBy: verdict.relabeledBy,
      canon: !this.#pipeline.mayCollide
        ? 0
        : encoded !== undefined
          ? hashBytes(encoded, 0, encoded.length, SEED_A)
          : hashOfLabels(final),
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

  /**
   * Shared store, asking: adds the checks of `entry` this replica cannot decide from what it knows
   * to `pass.checks`, walking the limits as if every check passed (the flags tell the store's
   * script what a refusal changes). Returns whether it added any.
   */
  #gather(entry: Entry, pass: Pass): boolean {
    let added = false;
    let flagsAfter = 0;
    let stopped = false;
    let overflowed = false;
    const push = (
      state: LimitState,
      kind: number,
      j: number,
      bucket: number,
      hash: number,
      limit: number,
      flags: number,
    ) => {
      if (stopped || (overflowed && flags & CHECK_SKIP_IF_OVERFLOWED)) return;
      // Refused lately: decided without asking (#decide refuses it again), with what that implies
      // for the series' later checks.
      if (
        state.refused.length > 0 &&
        this.#refusedTracker(state, kind, j).lookup(bucket, hash, pass.nowMs) >= 0
      ) {
        if (flags & CHECK_STOP) stopped = true;
        if (flags & CHECK_SETS_OVERFLOW) overflowed = true;
        return;
      }
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      pass.checks ??= [];
      pass.checks.push({
        tag,
        sub,
        member: hash.toString(36),
        limit,
        windowSeconds: state.windowSeconds,
        flags: flags | (added ? 0 : CHECK_SERIES_START),
      });
      added = true;
    };
    for (let k = 0; k < entry.limitPolicies.length; k++) {
      const p = this.#pipeline.policies[entry.limitPolicies[k]!]!;
      const state = this.#limits[p.index]!;
      const l = p.limits!;
      const enforce = !p.dryRun;
      let overflowLabel: string | undefined;
      let mayOverflow = false;
      if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
        if (!this.#known(pass, state, SCOPE_TENANT, 0, pass.tenantIdx, entry.hash))
          push(
            state,
            SCOPE_TENANT,
            0,
            pass.tenantIdx,
            entry.hash,
            l.perTenantMaxSeries,
            (enforce ? CHECK_STOP : 0) | flagsAfter,
          );
      }
      const ruleIndex = entry.metricRule[k]!;
      const rule = ruleIndex >= 0 ? l.perMetric[ruleIndex] : undefined;
      if (rule !== undefined) {
        const overflow = enforce && rule.overflow && rule.overflowLabel !== undefined;
        if (overflow) {
          overflowLabel = rule.overflowLabel;
          mayOverflow = true;
        }
        if (!this.#known(pass, state, SCOPE_SERIES, 0, entry.metric, entry.hash))
          push(
            state,
            SCOPE_SERIES,
            0,
            entry.metric,
            entry.hash,
            rule.maxSeries,
            (enforce && !overflow ? CHECK_STOP : 0) | (overflow ? CHECK_SETS_OVERFLOW : 0) | flagsAfter,
          );
      }
      for (let j = 0; j < l.perLabel.length; j++) {
        const lr = l.perLabel[j]!;
        if (lr.metric !== undefined && !lr.metric.matches(this.interner.name(entry.metric))) continue;
        const v = labelValue(entry.labels!, lr.label);
        if (v === '' || v === OVERFLOW_VALUE) continue;
        const vh = hashString(v, SEED_A);
        if (lr.overflow && enforce) mayOverflow = true;
        if (this.#known(pass, state, SCOPE_LABEL, j, entry.metric, vh)) continue;
        push(
          state,
          SCOPE_LABEL,
          j,
          entry.metric,
          vh,
          lr.maxValues,
          (enforce && !lr.overflow ? CHECK_STOP : 0) |
            (enforce && lr.overflow ? CHECK_SETS_OVERFLOW : 0) |
            (lr.label === overflowLabel ? CHECK_SKIP_IF_OVERFLOWED : flagsAfter),
        );
      }
      // After an overflow the series is another one; later policies decide it on their own.
      if (mayOverflow) flagsAfter = CHECK_SKIP_IF_OVERFLOWED;
    }
    return added;
  }

  /** The shared-store scope of a limit state's tracker, as in README "Limits across replicas". */
  #scope(
    state: LimitState,
    kind: number,
    j: number,
    bucket: number,
    pass: Pass,
  ): { tag: string; sub: string } {
    if (kind === SCOPE_TENANT) return { tag: `${state.tag}:t:${scopeName(pass.tenantKey)}`, sub: '' };
    const tag = `${state.tag}:m:${scopeName(this.interner.name(bucket))}`;
    return { tag, sub: kind === SCOPE_LABEL ? `:l${j}` : '' };
  }

  /**
   * Shared store: whether key (bucket, hash) of a tracker is admitted. Known keys pass (and their
   * activity is told to the store when due); otherwise the store's answer decides, or, without one,
   * the local tracker with this replica's share of the limit.
   */
  #decide(
    pass: Pass,
    state: LimitState,
    kind: number,
    j: number,
    bucket: number,
    hash: number,
    limit: number,
  ): boolean {
    if (this.#known(pass, state, kind, j, bucket, hash)) return true;
    const tracker = trackerOf(state, kind, j);
    if (!pass.local && pass.answers !== undefined) {
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      const a = pass.answers.get(`${tag}\0${sub}\0${hash.toString(36)}`);
      if (a === ANSWER_KNOWN || a === ANSWER_ADMITTED) {
        tracker.admit(bucket, hash, pass.nowMs, Number.POSITIVE_INFINITY);
        return true;
      }
      if (a === ANSWER_REFUSED) {
        this.#refusedTracker(state, kind, j).admit(bucket, hash, pass.nowMs, Number.POSITIVE_INFINITY);
        return false;
      }
    }
    if (
      !pass.local &&
      state.refused.length > 0 &&
      this.#refusedTracker(state, kind, j).lookup(bucket, hash, pass.nowMs) >= 0
    )
      return false;
    const r = tracker.admit(bucket, hash, pass.nowMs, fallbackShare(limit, this.#sharedLimits!.replicas));
    if (r === ADMIT_NEW) {
      // Admitted on this replica's own: the store learns of it (batched), so its counts hold it.
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      this.#sharedLimits!.store.touch(tag, sub, hash.toString(36), state.windowSeconds);
    }
    return r === ADMIT_KNOWN || r === ADMIT_NEW;
  }

  /** Whether this replica knows the key; when its activity is due, tells the store (batched). */
  #known(pass: Pass, state: LimitState, kind: number, j: number, bucket: number, hash: number): boolean {
    const found = trackerOf(state, kind, j).lookup(bucket, hash, pass.nowMs);
    if (found === LOOKUP_UNKNOWN) return false;
    if (found === LOOKUP_DUE) {
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      this.#sharedLimits!.store.touch(tag, sub, hash.toString(36), state.windowSeconds);
    }
    return true;
  }

  /** #applyLimits with a shared store: the same walk, each check decided by #decide. */
  #applyShared(entry: Entry, pass: Pass, samples: number): Entry | undefined {
    let current = entry;
    for (let k = 0; k < entry.limitPolicies.length; k++) {
      const p = this.#pipeline.policies[entry.limitPolicies[k]!]!;
      const state = this.#limits[p.index]!;
      const l = p.limits!;
      if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
        if (!this.#decide(pass, state, SCOPE_TENANT, 0, pass.tenantIdx, current.hash, l.perTenantMaxSeries)) {
          this.#observer.slot(l.tenantSlot, current.metric, samples);
          if (!p.dryRun) return undefined;
        }
      }
      const ruleIndex = entry.metricRule[k]!;
      const rule = ruleIndex >= 0 ? l.perMetric[ruleIndex] : undefined;
      if (rule === undefined) {
        // No limit on this metric: tracked here for statistics only, never asked about.
        state.series.admit(current.metric, current.hash, pass.nowMs, Number.POSITIVE_INFINITY);
      } else if (!this.#decide(pass, state, SCOPE_SERIES, 0, current.metric, current.hash, rule.maxSeries)) {
        this.#observer.slot(rule.slot, current.metric, samples);
        if (!p.dryRun) {
          if (!rule.overflow || rule.overflowLabel === undefined) return undefined;
          // The overflow series is this replica's own (it carries the replica label): not shared.
          current = this.#overflowVariant(current, p, rule.overflowLabel, ruleIndex);
        }
      }
      for (let j = 0; j < l.perLabel.length; j++) {
        const lr = l.perLabel[j]!;
        if (lr.metric !== undefined && !lr.metric.matches(this.interner.name(current.metric))) continue;
        const v = labelValue(current.labels!, lr.label);
        if (v === '' || v === OVERFLOW_VALUE) continue;
        if (!this.#decide(pass, state, SCOPE_LABEL, j, current.metric, hashString(v, SEED_A), lr.maxValues)) {
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

  /** `labels` (sorted) with the replica label set, in its sorted place. */
  #withReplica(labels: readonly Label[]): Label[] {
    const r = this.#opts.replicaLabel;
    if (r === undefined || r.name === '') return labels as Label[];
    const out = labels.filter((l) => l.name !== r.name);
    let at = 0;
    while (at < out.length && out[at]!.name < r.name) at++;
    out.splice(at, 0, { name: r.name, value: r.value });
    return out;
  }

  /**
   * The series that several series of one request, made the same by relabeling, are forwarded as:
   * their common labels with the replica label, samples combined by the relabeling policy's mode.
   */
  #collisionVariant(entry: Entry, labels: readonly Label[]): Entry {
    const final = this.#withReplica(labels);
    const encoded = encodeLabelsV1(final);
    const p = entry.relabeledBy >= 0 ? this.#pipeline.policies[entry.relabeledBy] : undefined;
    return {
      ...entry,
      changed: true,
      labels: final,
      encoded,
      hash: hashBytes(encoded, 0, encoded.length, SEED_A),
      overflow: undefined,
      aggregated: true,
      mode: p?.collisionMode ?? 'sum',
      oooSlot: p?.outOfOrderSlot ?? -1,
    };
  }

  #overflowVariant(entry: Entry, policy: CompiledPolicy, label: string, ruleKey: number): Entry {
    const key = policy.index * 4096 + ruleKey;
    entry.overflow ??= new Map();
    const known = entry.overflow.get(key);
    if (known !== undefined) return known;
    const labels = this.#withReplica(
      entry.labels!.map((l) => (l.name === label ? { name: l.name, value: OVERFLOW_VALUE } : l)),
    );
    const encoded = encodeLabelsV1(labels);
    const variant: Entry = {
      ...entry,
      changed: true,
      labels,
      encoded,
      hash: hashBytes(encoded, 0, encoded.length, SEED_A),
      overflow: undefined,
      aggregated: true,
      mode: 'sum',
      oooSlot: policy.outOfOrderSlot,
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

function trackerOf(state: LimitState, kind: number, j: number): SeriesTracker {
  return kind === SCOPE_TENANT ? state.tenants! : kind === SCOPE_SERIES ? state.series : state.labels[j]!;
}

function hashOfLabels(labels: readonly Label[]): number {
  const e = encodeLabelsV1(labels);
  return hashBytes(e, 0, e.length, SEED_A);
}

/** A name inside a shared-store scope name: `{`, `}` and `%` percent-encoded (they delimit hash tags). */
function scopeName(name: string): string {
  return /[{}%]/.test(name) ? name.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : name;
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
   * the same timestamp are combined by the entry's mode, summed unless a policy's onCollision
   * says otherwise (the series of one scrape share a timestamp), so the receiver gets one
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
    const mode = entry.mode;
    for (const rec of recordsOf(buf, payloadOf(buf, this.#index.start[i]!), this.#index.end[i]!, 2)) {
      const { value, timestamp } = readSample(buf, rec[0], rec[1]);
      const had = agg.byTs.get(timestamp);
      agg.byTs.set(
        timestamp,
        had === undefined
          ? value
          : mode === 'sum'
            ? had + value
            : mode === 'max'
              ? Math.max(had, value)
              : mode === 'min'
                ? Math.min(had, value)
                : value,
      );
    }
  }

  /**
   * `seen` keeps the newest timestamp forwarded per overflow series across requests: a sample at
   * or before it would be a duplicate or out of order for the receiver, which rejects the whole
   * request for one, so such samples are left out here.
   */
  finish(
    seen: Map<number, number>,
    maxSeen: number,
    leftOut: (entry: Entry, samples: number) => void,
  ): Uint8Array {
    for (const { entry, byTs } of this.#aggregates?.values() ?? []) {
      const last = seen.get(entry.hash) ?? Number.NEGATIVE_INFINITY;
      const times = [...byTs.keys()].filter((t) => t > last).sort((a, b) => a - b);
      if (times.length < byTs.size) leftOut(entry, byTs.size - times.length);
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
