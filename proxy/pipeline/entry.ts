// What the engine keeps per label set (Entry, the cached verdict) and per request (Pass), and the
// runtime side of series stages, which work on both.

import type { CollisionMode, OutputBuilder } from '../codec/output.js';
import type { SeriesIndex } from '../codec/scan.js';
import type { Label } from '../codec/types.js';
import type { AdmissionCheck, LimitStore } from '../limits/store.js';
import type { MetricInterner } from './cardinality.js';
import type { Pipeline } from './compile.js';

export interface Entry {
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
  /** The policies whose series stages see the series (matched, not dropped), in order. */
  readonly seriesPolicies: readonly number[];
  /** Policies whose unused stage found the metric unread. */
  readonly unusedPolicies: readonly number[];
  /** (policy, pair, value hash) triples of unread labels (spec.unused.labels), or undefined. */
  readonly unreadKeys: Uint32Array | undefined;
  /** Per series stage: what its `prepare` computed for this label set (shared lists). */
  readonly seriesData: readonly (readonly number[])[];
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

/** Limits shared by every replica through a store (proxy/limits/store.ts). */
export interface SharedLimits {
  readonly store: LimitStore;
  /** Replicas sharing the limits: while the store is down each enforces limit / replicas. */
  readonly replicas: number;
  /** How long a key the store refused is refused again without asking (at least 1 s). */
  readonly refusedMs?: number;
}

/** One request on its way through the engine; see #loop. */
export interface Pass {
  readonly buf: Buffer;
  readonly index: SeriesIndex;
  readonly tenant: string | undefined;
  readonly tenantKey: string;
  readonly tenantIdx: number;
  readonly nowMs: number;
  readonly v1: boolean;
  readonly symbolHash: Uint32Array | undefined;
  readonly symbols: (string | undefined)[];
  readonly out: OutputBuilder<Entry>;
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
  /** With stage plugins: the entries of the request's new label sets, evaluated up front (by series). */
  prefilled: (Entry | undefined)[] | undefined;
}

/** What a series stage's runtime is given by the engine that runs it. */
export interface SeriesContext {
  readonly interner: MetricInterner;
  readonly maxTrackedSeries: number;
  readonly maxTrackedLabelValues: number;
  /** Counts `samples` of series `metric` in counter slot `slot`. */
  slot(slot: number, metric: number, samples: number): void;
  /** `labels` (sorted) with this replica's label, for series the proxy synthesizes. */
  withReplica(labels: readonly Label[]): Label[];
  /** The shared-state interface, when the proxy runs with --limits.store. */
  readonly shared: SharedLimits | undefined;
}

/**
 * The long-lived, stateful side of a series stage. The engine calls it per series, after the
 * cached verdict, for series some policy of `entry.seriesPolicies` hands on; never per sample.
 */
export interface SeriesRuntime {
  /** A new pipeline takes effect; state of configurations that did not change carries over. */
  setPipeline(pipeline: Pipeline): void;
  /**
   * On a verdict-cache miss: what the stage needs per label set, computed once and cached with the
   * verdict (`entry.seriesData[k]`), and whether it needs the final labels kept in the cache.
   */
  prepare(
    pipeline: Pipeline,
    metricName: string,
    policies: readonly number[],
  ): { readonly data: readonly number[]; readonly needsLabels: boolean };
  /**
   * Decides one series: the entry to forward (itself, or a variant such as an overflow series) or
   * undefined to drop it. `k` is the stage's index (for `entry.seriesData[k]`).
   */
  apply(entry: Entry, k: number, pass: Pass, samples: number): Entry | undefined;
  /**
   * Shared state, asking: adds to `pass.checks` what this replica cannot decide alone about the
   * series; returns whether it added any. The engine then asks the store in one round trip per
   * request and runs `apply` again with the answers.
   */
  gather?(entry: Entry, k: number, pass: Pass): boolean;
}
