// The policy engine: runs a compiled pipeline over one decoded remote-write request and produces
// the request to forward. It is the loop: per series, the cached verdict of the label stages
// (evaluate.ts; keyed by two independent 32-bit hashes of the label bytes), then the series stages
// (limits), then what the output builder (proxy/codec/output.ts) is told to do. Per request, not
// per sample: counters accumulate in typed arrays and are flushed once per request, and series
// that pass unchanged are copied as the original bytes. When nothing changed, the caller forwards
// the sender's compressed body as is.

import { decodeLabelRecords, encodeLabelsV1, labelsV1, labelsV2, OutputBuilder } from '../codec/output.js';
import { readLabelRefsV2, type SeriesIndex } from '../codec/scan.js';
import type { Label } from '../codec/types.js';
import type { LimitStore } from '../limits/store.js';
import { hashBytes, hashBytesPair, hashString, MetricInterner, mixBlock } from './cardinality.js';
import type { Pipeline } from './compile.js';
import type { Entry, Pass, SeriesContext, SeriesRuntime, SharedLimits } from './entry.js';
import { evaluate, type Verdict } from './evaluate.js';
import type { PluginGuard } from './plugins/guard.js';
import { type LimitState, LimitsRuntime } from './stages/limits/runtime.js';

export type { SharedLimits } from './entry.js';

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

/**
 * Long-lived: owns the metric-name interner, the series stages' state (limit trackers, kept across
 * reloads for policies whose limits did not change) and the verdict cache of the current pipeline.
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
  #dataLists = new Map<string, readonly (readonly number[])[]>();
  readonly #tenants: MetricInterner;
  /** Verdicts hold until then: the next expiry a label stage declares, after which the cache is dropped. */
  #validUntil = Number.NEGATIVE_INFINITY;
  /** Newest timestamp forwarded per overflow series (by label-set hash); bounded, cleared when full. */
  readonly #overflowSeen = new Map<number, number>();
  readonly #sharedLimits: SharedLimits | undefined;
  /** The series stages, in order; #limits is the in-tree one. */
  readonly #series: readonly SeriesRuntime[];
  readonly #limits: LimitsRuntime;
  /** Whether the verdict of the last #makeEntry lacks a stage plugin's say. */
  #incomplete = false;
  /**
   * The output buffer of the last `process` call, lent to the next one: a request's output is
   * about the size of the request, and writing it into fresh memory every time costs page faults
   * and garbage collections. Only `process`, which is synchronous, lends it: with a shared store
   * `run` may wait, and another request would write into the same buffer meanwhile.
   */
  #spare: Buffer | undefined;
  /** Scratch for #emitDecisions, reused from request to request. */
  readonly #firstInputs = new FirstInputs();
  /** Scratch for hashBytesPair: #hashSeries, #loop and #symbolHashes. */
  readonly #h = new Uint32Array(2);

  constructor(pipeline: Pipeline, opts: EngineOptions, observer: EngineObserver, shared?: SharedLimits) {
    this.#opts = opts;
    this.#observer = observer;
    this.#sharedLimits = shared;
    this.interner = new MetricInterner({ capacity: opts.maxMetricNames });
    this.#tenants = new MetricInterner({ capacity: 4096 });
    this.#pipeline = pipeline;
    const ctx: SeriesContext = {
      interner: this.interner,
      maxTrackedSeries: opts.maxTrackedSeries,
      maxTrackedLabelValues: opts.maxTrackedLabelValues,
      slot: (slot, metric, samples) => observer.slot(slot, metric, samples),
      withReplica: (labels) => this.#withReplica(labels),
      shared,
    };
    this.#limits = new LimitsRuntime(ctx);
    this.#series = [this.#limits];
    for (const s of this.#series) s.setPipeline(pipeline);
  }

  get pipeline(): Pipeline {
    return this.#pipeline;
  }

  /** Swaps in a new pipeline between requests; trackers of unchanged limits carry over. */
  setPipeline(pipeline: Pipeline): void {
    for (const s of this.#series) s.setPipeline(pipeline);
    this.#pipeline = pipeline;
    this.#cache = new Map();
    this.#previous = new Map();
    this.#cached = 0;
    this.#lists = new Map();
    this.#dataLists = new Map();
    this.#validUntil = Number.NEGATIVE_INFINITY;
  }

  /** Drops every cached verdict once a label stage's verdicts stop holding (an exemption expired). */
  #expire(nowMs: number): void {
    if (this.#validUntil !== Number.NEGATIVE_INFINITY) {
      this.#cache = new Map();
      this.#previous = new Map();
      this.#cached = 0;
    }
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.#pipeline.policies)
      for (const b of p.labelStages) {
        const at = b.stage.expires?.(b.compiled, nowMs) ?? Number.POSITIVE_INFINITY;
        if (at < next) next = at;
      }
    this.#validUntil = next;
  }

  /** Per policy (by index), the state of its limits, or undefined: for statistics. */
  limitStates(): readonly (LimitState | undefined)[] {
    return this.#limits.states();
  }

  /** The tenant a tenant tracker's bucket counts ('' for requests without one). */
  tenantName(bucket: number): string {
    return bucket === 0 ? '' : this.#tenants.name(bucket);
  }

  /** The store the limits are shared through (for statistics); undefined without one. */
  get sharedStore(): LimitStore | undefined {
    return this.#sharedLimits?.store;
  }

  /**
   * Runs the pipeline over a scanned request, deciding limits with this process's own trackers
   * (with a shared store: as while it is down, each limit's share). Synchronous: `buf` and
   * `index` are only valid until the caller's next await. The body it returns is written in a
   * buffer the engine lends to its next `process` call too: the caller must be done with it (the
   * proxy compresses it at once) before calling `process` or `run` again.
   */
  process(buf: Buffer, index: SeriesIndex, tenant: string | undefined, nowMs: number): ProcessResult {
    const pass = this.#begin(buf, index, tenant, nowMs, this.#spare);
    pass.local = true;
    this.#loop(pass, 0);
    const r = this.#finish(pass);
    const out = pass.out.buffer;
    this.#spare = out !== undefined && out.length <= MAX_SPARE_BYTES ? out : undefined;
    return r;
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
    // With stage plugins, every series' verdict was taken in #begin (#prefill), before the store
    // was asked: the wait gives other requests the event loop and the verdict cache may lose
    // entries meanwhile, but nothing is evaluated again here, so a plugin's say, and a refusal,
    // is decided before the store answers and before anything of the request is forwarded.
    this.#loop(pass, pass.resumeAt);
    return this.#finish(pass);
  }

  #begin(
    buf: Buffer,
    index: SeriesIndex,
    tenant: string | undefined,
    nowMs: number,
    scratch?: Buffer | undefined,
  ): Pass {
    if (nowMs >= this.#validUntil) this.#expire(nowMs);
    const v1 = index.version === 1;
    const pass: Pass = {
      buf,
      index,
      tenant,
      tenantKey: tenant ?? '',
      tenantIdx: tenant === undefined ? 0 : this.#tenants.internString(tenant),
      nowMs,
      v1,
      symbolHash: v1 ? undefined : this.#symbolHashes(buf, index),
      symbols: [],
      out: new OutputBuilder<Entry>(buf, index, scratch),
      series: 0,
      samples: 0,
      histograms: 0,
      exemplars: 0,
      local: true,
      answers: undefined,
      checks: undefined,
      resumeAt: 0,
      decisions: this.#pipeline.mayCollide ? new Array(index.count).fill(null) : undefined,
      prefilled: undefined,
    };
    const guard = this.#pipeline.plugins;
    if (guard !== undefined) this.#prefill(pass, guard);
    return pass;
  }

  /**
   * With stage plugins: evaluates the request's new label sets up front, within the plugins' time
   * budget for the request (guard.bounded). Label stages are pure, so evaluating them before the
   * loop changes nothing else. When the budget runs out, the rest is evaluated without plugins;
   * a verdict that lacks a plugin's say serves this request only and is not cached.
   */
  #prefill(pass: Pass, guard: PluginGuard): void {
    const { buf, index, v1, tenant, tenantKey, nowMs, symbols } = pass;
    // Every series' entry, hits included: the loop must use these, not look again. Storing the
    // misses' verdicts can push a hit out of the cache, and a verdict evaluated again in the loop
    // would be made outside the plugins' bounded run, that is without the plugins.
    const prefilled: (Entry | undefined)[] = new Array(index.count);
    pass.prefilled = prefilled;
    const misses: number[] = [];
    const hashes: number[] = [];
    for (let i = 0; i < index.count; i++) {
      this.#hashSeries(pass, i);
      const h1 = this.#h[0]!;
      const h2 = this.#h[1]!;
      const hit = this.#lookup(tenantKey, h1, h2);
      if (hit !== undefined) prefilled[i] = hit;
      else {
        misses.push(i);
        hashes.push(h1, h2);
      }
    }
    if (misses.length === 0) return;
    const labels = misses.map((i) => (v1 ? labelsV1(buf, index, i) : labelsV2(buf, index, i, symbols)));
    const pipeline = this.#pipeline;
    const verdicts: Verdict[] = [];
    // Written so that stopping it anywhere leaves `verdicts` whole: it resumes where it stopped.
    const evaluateAll = () => {
      for (let k = verdicts.length; k < misses.length; k++)
        verdicts.push(evaluate(pipeline, labels[k]!, tenant, nowMs));
    };
    guard.begin();
    if (!guard.bounded(evaluateAll)) evaluateAll();
    for (let k = 0; k < misses.length; k++) {
      const h1 = hashes[2 * k]!;
      const verdict = verdicts[k]!;
      const entry = this.#makeEntry(labels[k]!, h1, hashes[2 * k + 1]!, tenant, v1, nowMs, verdict);
      if (!verdict.incomplete) this.#store(tenantKey, h1, entry);
      prefilled[misses[k]!] = entry;
    }
  }

  /** The two label-set hashes of series `i` into #h, as #loop computes them. */
  #hashSeries(pass: Pass, i: number): void {
    const { buf, index } = pass;
    if (pass.v1) {
      hashBytesPair(buf, index.labelsStart[i]!, index.labelsEnd[i]!, SEED_A, SEED_B, this.#h);
      return;
    }
    const symbolHash = pass.symbolHash!;
    let h1 = SEED_A;
    let h2 = SEED_B;
    readLabelRefsV2(buf, index, i, (nameRef, valueRef) => {
      h1 = mixBlock(mixBlock(h1, symbolHash[2 * nameRef]!), symbolHash[2 * valueRef]!);
      h2 = mixBlock(mixBlock(h2, symbolHash[2 * nameRef + 1]!), symbolHash[2 * valueRef + 1]!);
    });
    this.#h[0] = h1;
    this.#h[1] = h2;
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
    const { buf, index, v1, tenant, tenantKey, nowMs, out, symbols, decisions, prefilled } = pass;
    const symbolHash = pass.symbolHash;
    const pair = this.#h;
    const asking = this.#sharedLimits !== undefined && !pass.local && pass.answers === undefined;
    let collecting = false;
    let series = 0;
    let samples = 0;
    let histograms = 0;
    let exemplars = 0;
    let h1 = 0;
    let h2 = 0;
    // One visitor per request, not per series.
    const visitRefs = (nameRef: number, valueRef: number): void => {
      h1 = mixBlock(mixBlock(h1, symbolHash![2 * nameRef]!), symbolHash![2 * valueRef]!);
      h2 = mixBlock(mixBlock(h2, symbolHash![2 * nameRef + 1]!), symbolHash![2 * valueRef + 1]!);
    };

    for (let i = from; i < index.count; i++) {
      const n = index.samples[i]! + index.histograms[i]!;
      if (v1) {
        hashBytesPair(buf, index.labelsStart[i]!, index.labelsEnd[i]!, SEED_A, SEED_B, pair);
        h1 = pair[0]!;
        h2 = pair[1]!;
      } else {
        h1 = SEED_A;
        h2 = SEED_B;
        readLabelRefsV2(buf, index, i, visitRefs);
      }
      let entry = prefilled?.[i] ?? this.#lookup(tenantKey, h1, h2);
      if (entry === undefined) {
        const labels = v1 ? labelsV1(buf, index, i) : labelsV2(buf, index, i, symbols);
        entry = this.#makeEntry(labels, h1, h2, tenant, v1, nowMs);
        // Only a plugin's verdict made outside its bounded run lacks its say (see #prefill).
        if (!this.#incomplete) this.#store(tenantKey, h1, entry);
      }
      if (collecting) {
        if (!entry.dropped && entry.seriesPolicies.length > 0) this.#gather(entry, pass);
        continue;
      }
      if (asking && !entry.dropped && entry.seriesPolicies.length > 0 && this.#gather(entry, pass)) {
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
      const final = entry.seriesPolicies.length === 0 ? entry : this.#applySeries(entry, pass, n);
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
    // A collision is two different series of the request becoming one. The same series twice (a
    // sender's backlog holds one entry per sample) is not one: it stays that series, rewritten.
    const firstInput = this.#firstInputs.begin(decisions.length);
    const colliding = new Set<number>();
    for (const e of decisions) {
      if (e === null || e.aggregated) continue;
      if (firstInput.differs(e.canon, e.h2)) colliding.add(e.canon);
    }
    const any = colliding.size > 0;
    // Per colliding label set, its merged series, built from a relabeled member.
    const merged = new Map<number, Entry | null>();
    if (any) {
      for (const e of decisions) {
        if (e === null || e.aggregated || !colliding.has(e.canon)) continue;
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
      hashBytesPair(buf, index.symbolStart[k]!, index.symbolEnd[k]!, SEED_A, SEED_B, this.#h);
      hashes[2 * k] = this.#h[0]!;
      hashes[2 * k + 1] = this.#h[1]!;
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
    verdict: Verdict = evaluate(this.#pipeline, labels, tenant, nowMs),
  ): Entry {
    this.#incomplete = verdict.incomplete;
    // Unread labels aggregated away (spec.unused.labels) make a synthesized series: replica label.
    const final = verdict.aggregated ? this.#withReplica(verdict.labels!) : (verdict.labels ?? labels);
    const changed = verdict.labels !== null && verdict.changed;
    const encoded = changed ? encodeLabelsV1(final) : undefined;
    const name = labelValue(final, '__name__');
    const metric = this.interner.internString(name);
    // v1 rewrites need only the encoded labels; v2 rewrites re-reference symbols, so keep labels.
    let needsLabels = changed && (!v1 || verdict.aggregated);
    let seriesData: readonly (readonly number[])[] = NO_DATA;
    if (verdict.seriesPolicies.length > 0) {
      const data: (readonly number[])[] = [];
      for (const s of this.#series) {
        const prepared = s.prepare(this.#pipeline, name, verdict.seriesPolicies);
        data.push(this.#shared(prepared.data));
        if (prepared.needsLabels) needsLabels = true;
      }
      seriesData = this.#sharedData(data);
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
      seriesPolicies: this.#shared(verdict.seriesPolicies),
      unusedPolicies: this.#shared(verdict.unused),
      unreadKeys: this.#unreadKeys(metric, verdict.unread),
      seriesData,
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

  /** #shared for the per-stage lists of an entry (they are shared already, so compared by identity). */
  #sharedData(data: readonly (readonly number[])[]): readonly (readonly number[])[] {
    const key = data.map((d) => d.join(',')).join(';');
    let shared = this.#dataLists.get(key);
    if (shared === undefined) {
      shared = Object.freeze(data);
      if (this.#dataLists.size < 4096) this.#dataLists.set(key, shared);
    }
    return shared;
  }

  /** The series stages, in order, on a series the label stages handed on. */
  #applySeries(entry: Entry, pass: Pass, samples: number): Entry | undefined {
    let current: Entry | undefined = entry;
    for (let k = 0; k < this.#series.length && current !== undefined; k++)
      current = this.#series[k]!.apply(current, k, pass, samples);
    return current;
  }

  /** Shared store, asking: the checks every series stage cannot decide alone. */
  #gather(entry: Entry, pass: Pass): boolean {
    let added = false;
    for (let k = 0; k < this.#series.length; k++)
      if (this.#series[k]!.gather?.(entry, k, pass) === true) added = true;
    return added;
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
}

/**
 * Per request, the first input label set (its second hash) of each final label set (its hash,
 * `canon`): an open-addressing table in typed arrays, reused by the next request. A slot is in use
 * when its stamp is the request's, so starting a request clears nothing. The table grows to the
 * largest request up to KEPT_SLOTS; a larger request gets a table of its own, left to the collector.
 */
class FirstInputs {
  #keys = new Uint32Array(0);
  #values = new Uint32Array(0);
  #stamps = new Uint32Array(0);
  #stamp = 0;
  #mask = 0;

  /** Starts a request of `series` series; returns the table to use for it. */
  begin(series: number): FirstInputs {
    let slots = 16;
    while (slots < 2 * series) slots *= 2;
    if (slots > KEPT_SLOTS) return new FirstInputs().#grow(slots);
    if (slots > this.#keys.length) this.#grow(slots);
    this.#stamp++;
    if (this.#stamp > 0xffffffff) {
      this.#stamps.fill(0);
      this.#stamp = 1;
    }
    return this;
  }

  #grow(slots: number): FirstInputs {
    this.#keys = new Uint32Array(slots);
    this.#values = new Uint32Array(slots);
    this.#stamps = new Uint32Array(slots);
    this.#mask = slots - 1;
    this.#stamp = 1;
    return this;
  }

  /**
   * Records `input` as the first input of `canon` if it has none yet in this request; returns
   * whether `canon` already had another one (two different series became one).
   */
  differs(canon: number, input: number): boolean {
    const keys = this.#keys;
    const stamps = this.#stamps;
    // canon is a murmur hash already: its low bits are the slot.
    for (let i = canon & this.#mask; ; i = (i + 1) & this.#mask) {
      if (stamps[i] !== this.#stamp) {
        stamps[i] = this.#stamp;
        keys[i] = canon;
        this.#values[i] = input;
        return false;
      }
      if (keys[i] === canon) return this.#values[i] !== input;
    }
  }
}

/** The most slots FirstInputs keeps between requests (12 bytes each). */
const KEPT_SLOTS = 1 << 17;

/** The largest output buffer kept for the next request; a larger one is left to the collector. */
const MAX_SPARE_BYTES = 8 << 20;

const NO_DATA: readonly (readonly number[])[] = Object.freeze([]);

function hashOfLabels(labels: readonly Label[]): number {
  const e = encodeLabelsV1(labels);
  return hashBytes(e, 0, e.length, SEED_A);
}

function labelValue(labels: readonly Label[], name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}
