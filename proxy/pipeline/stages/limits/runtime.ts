// The limits stage at run time: one set of trackers per policy with limits (kept across reloads
// while the policy's limits do not change), deciding each series locally or, with a shared store,
// as every replica together (README "Limits across replicas"): known series pass on this
// replica's own knowledge; the unknown ones of a request are asked about in one round trip
// (gather, then apply with the answers); while the store is down each replica enforces its share.

import {
  ANSWER_ADMITTED,
  ANSWER_KNOWN,
  ANSWER_REFUSED,
  CHECK_SERIES_START,
  CHECK_SETS_OVERFLOW,
  CHECK_SKIP_IF_OVERFLOWED,
  CHECK_STOP,
  fallbackShare,
} from '../../../limits/store.js';
import {
  ADMIT_KNOWN,
  ADMIT_NEW,
  hashString,
  LOOKUP_DUE,
  LOOKUP_UNKNOWN,
  SeriesTracker,
} from '../../cardinality.js';
import type { Pipeline } from '../../compile.js';
import type { Entry, Pass, SeriesContext, SeriesRuntime } from '../../entry.js';
import { labelValue } from '../labels.js';
import { OVERFLOW_VALUE, overflowVariant } from './overflow.js';

const SEED_A = 0x9747b28c;
const SEED_B = 0x85ebca6b;

export interface LimitState {
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

/** Scope kinds of a limit state, for #scope and limitScope. */
export const SCOPE_TENANT = 0;
export const SCOPE_SERIES = 1;
export const SCOPE_LABEL = 2;

export class LimitsRuntime implements SeriesRuntime {
  readonly #ctx: SeriesContext;
  #pipeline: Pipeline | undefined;
  #limits: (LimitState | undefined)[] = [];

  constructor(ctx: SeriesContext) {
    this.#ctx = ctx;
  }

  /** Per policy (by index), its limit state, or undefined without limits: for statistics. */
  states(): readonly (LimitState | undefined)[] {
    return this.#limits;
  }

  setPipeline(pipeline: Pipeline): void {
    this.#limits = this.#limitStates(pipeline, this.#limits);
    this.#pipeline = pipeline;
  }

  prepare(
    pipeline: Pipeline,
    name: string,
    policies: readonly number[],
  ): { readonly data: readonly number[]; readonly needsLabels: boolean } {
    // Per policy: index of the perMetric rule that applies, or -1.
    const data: number[] = [];
    let needsLabels = false;
    for (const k of policies) {
      const l = pipeline.policies[k]!.limits;
      if (l === undefined) {
        data.push(-1);
        continue;
      }
      data.push(l.perMetric.findIndex((r) => r.metric.matches(name)));
      if (l.perLabel.length > 0 || l.perMetric.some((r) => r.overflow)) needsLabels = true;
    }
    return { data, needsLabels };
  }

  apply(entry: Entry, k: number, pass: Pass, samples: number): Entry | undefined {
    return this.#ctx.shared === undefined
      ? this.#applyLocal(entry, k, pass, samples)
      : this.#applyShared(entry, k, pass, samples);
  }

  #limitStates(
    pipeline: Pipeline,
    previous: readonly (LimitState | undefined)[],
  ): (LimitState | undefined)[] {
    const byKey = new Map(previous.filter((s) => s !== undefined).map((s) => [s.key, s]));
    const ctx = this.#ctx;
    return pipeline.policies.map((p) => {
      const l = p.limits;
      if (l === undefined) return undefined;
      const reuse = byKey.get(l.key);
      if (reuse !== undefined) return reuse;
      const buckets = ctx.interner.capacity;
      const windowSeconds = Math.floor(l.windowMs / 1000);
      // With a shared store, a known key's activity is told to it four times per window.
      const refresh =
        ctx.shared === undefined ? {} : { refreshSeconds: Math.max(1, Math.floor(windowSeconds / 4)) };
      return {
        key: l.key,
        tag: hashString(l.key, SEED_A).toString(36) + hashString(l.key, SEED_B).toString(36),
        windowSeconds,
        series: new SeriesTracker({
          maxTrackedSeries: ctx.maxTrackedSeries,
          buckets,
          windowMs: l.windowMs,
          ...refresh,
        }),
        labels: l.perLabel.map(
          () =>
            new SeriesTracker({
              maxTrackedSeries: ctx.maxTrackedLabelValues,
              buckets,
              windowMs: l.windowMs,
              ...refresh,
            }),
        ),
        tenants:
          l.perTenantMaxSeries === undefined
            ? undefined
            : new SeriesTracker({
                maxTrackedSeries: ctx.maxTrackedSeries,
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
        maxTrackedSeries: Math.min(this.#ctx.maxTrackedSeries, 1 << 18),
        buckets: kind === SCOPE_TENANT ? 4096 : this.#ctx.interner.capacity,
        windowMs: Math.max(1000, this.#ctx.shared?.refusedMs ?? 5000),
      });
      state.refused[slot] = t;
    }
    return t;
  }

  /**
   * Decides with this process's own trackers. Returns the entry to forward (possibly an overflow
   * variant) or undefined when a limit dropped the series. Dry-run policies count what they would
   * do and change nothing.
   */
  #applyLocal(entry: Entry, k0: number, pass: Pass, samples: number): Entry | undefined {
    const ctx = this.#ctx;
    const policies = this.#pipeline!.policies;
    const rules = entry.seriesData[k0]!;
    const nowMs = pass.nowMs;
    let current = entry;
    for (let k = 0; k < entry.seriesPolicies.length; k++) {
      const p = policies[entry.seriesPolicies[k]!]!;
      const l = p.limits;
      if (l === undefined) continue;
      const state = this.#limits[p.index]!;
      if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
        const r = state.tenants.admit(pass.tenantIdx, current.hash, nowMs, l.perTenantMaxSeries);
        if (r !== ADMIT_KNOWN && r !== ADMIT_NEW) {
          ctx.slot(l.tenantSlot, current.metric, samples);
          if (!p.dryRun) return undefined;
        }
      }
      const ruleIndex = rules[k]!;
      const rule = ruleIndex >= 0 ? l.perMetric[ruleIndex] : undefined;
      const r = state.series.admit(
        current.metric,
        current.hash,
        nowMs,
        rule?.maxSeries ?? Number.POSITIVE_INFINITY,
      );
      if (r !== ADMIT_KNOWN && r !== ADMIT_NEW && rule !== undefined) {
        ctx.slot(rule.slot, current.metric, samples);
        if (!p.dryRun) {
          if (!rule.overflow || rule.overflowLabel === undefined) return undefined;
          current = overflowVariant(ctx, current, p, rule.overflowLabel, ruleIndex);
          state.series.admit(current.metric, current.hash, nowMs, Number.POSITIVE_INFINITY);
        }
      }
      for (let j = 0; j < l.perLabel.length; j++) {
        const lr = l.perLabel[j]!;
        if (lr.metric !== undefined && !lr.metric.matches(ctx.interner.name(current.metric))) continue;
        const v = labelValue(current.labels!, lr.label);
        if (v === '' || v === OVERFLOW_VALUE) continue;
        const res = state.labels[j]!.admit(current.metric, hashString(v, SEED_A), nowMs, lr.maxValues);
        if (res !== ADMIT_KNOWN && res !== ADMIT_NEW) {
          ctx.slot(lr.slot, current.metric, samples);
          if (!p.dryRun) {
            if (!lr.overflow) return undefined;
            current = overflowVariant(ctx, current, p, lr.label, 1000 + j);
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
  gather(entry: Entry, k0: number, pass: Pass): boolean {
    const policies = this.#pipeline!.policies;
    const rules = entry.seriesData[k0]!;
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
        this.#refusedTracker(state, kind, j).lookup(bucket, hash, pass.nowMs, false) >= 0
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
    for (let k = 0; k < entry.seriesPolicies.length; k++) {
      const p = policies[entry.seriesPolicies[k]!]!;
      const l = p.limits;
      if (l === undefined) continue;
      const state = this.#limits[p.index]!;
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
      const ruleIndex = rules[k]!;
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
        if (lr.metric !== undefined && !lr.metric.matches(this.#ctx.interner.name(entry.metric))) continue;
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
    return limitScope(
      state.tag,
      kind,
      j,
      kind === SCOPE_TENANT ? pass.tenantKey : this.#ctx.interner.name(bucket),
    );
  }

  /**
   * Shared store: whether key (bucket, hash) of a tracker is admitted. Known keys pass (and their
   * activity is told to the store when due); otherwise, while the store answers, only its yes
   * admits: a key it was not asked about was refused lately when `gather` looked (that refusal may
   * have expired since, as other requests ran while this one waited), or an earlier check of the
   * series stopped it. The local tracker with this replica's share of the limit decides while the
   * store is down (`pass.local`), and for a series this pass rewrote to its overflow series
   * (`alone`: that series is this replica's own, README "Limits across replicas").
   */
  #decide(
    pass: Pass,
    state: LimitState,
    kind: number,
    j: number,
    bucket: number,
    hash: number,
    limit: number,
    alone: boolean,
  ): boolean {
    if (this.#known(pass, state, kind, j, bucket, hash)) return true;
    const shared = this.#ctx.shared!;
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
    if (!pass.local) {
      if (!alone) return false;
      if (
        state.refused.length > 0 &&
        this.#refusedTracker(state, kind, j).lookup(bucket, hash, pass.nowMs, false) >= 0
      )
        return false;
    }
    const r = tracker.admit(bucket, hash, pass.nowMs, fallbackShare(limit, shared.replicas));
    if (r === ADMIT_NEW) {
      // Admitted on this replica's own: the store learns of it (batched), so its counts hold it.
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      shared.store.touch(tag, sub, hash.toString(36), state.windowSeconds);
    }
    return r === ADMIT_KNOWN || r === ADMIT_NEW;
  }

  /** Whether this replica knows the key; when its activity is due, tells the store (batched). */
  #known(pass: Pass, state: LimitState, kind: number, j: number, bucket: number, hash: number): boolean {
    const found = trackerOf(state, kind, j).lookup(bucket, hash, pass.nowMs);
    if (found === LOOKUP_UNKNOWN) return false;
    if (found === LOOKUP_DUE) {
      const { tag, sub } = this.#scope(state, kind, j, bucket, pass);
      this.#ctx.shared!.store.touch(tag, sub, hash.toString(36), state.windowSeconds);
    }
    return true;
  }

  /** #applyLocal with a shared store: the same walk, each check decided by #decide. */
  #applyShared(entry: Entry, k0: number, pass: Pass, samples: number): Entry | undefined {
    const ctx = this.#ctx;
    const policies = this.#pipeline!.policies;
    const rules = entry.seriesData[k0]!;
    let current = entry;
    for (let k = 0; k < entry.seriesPolicies.length; k++) {
      const p = policies[entry.seriesPolicies[k]!]!;
      const l = p.limits;
      if (l === undefined) continue;
      const state = this.#limits[p.index]!;
      if (state.tenants !== undefined && l.perTenantMaxSeries !== undefined) {
        const alone = current !== entry;
        if (
          !this.#decide(
            pass,
            state,
            SCOPE_TENANT,
            0,
            pass.tenantIdx,
            current.hash,
            l.perTenantMaxSeries,
            alone,
          )
        ) {
          ctx.slot(l.tenantSlot, current.metric, samples);
          if (!p.dryRun) return undefined;
        }
      }
      const ruleIndex = rules[k]!;
      const rule = ruleIndex >= 0 ? l.perMetric[ruleIndex] : undefined;
      if (rule === undefined) {
        // No limit on this metric: tracked here for statistics only, never asked about.
        state.series.admit(current.metric, current.hash, pass.nowMs, Number.POSITIVE_INFINITY);
      } else if (
        !this.#decide(
          pass,
          state,
          SCOPE_SERIES,
          0,
          current.metric,
          current.hash,
          rule.maxSeries,
          current !== entry,
        )
      ) {
        ctx.slot(rule.slot, current.metric, samples);
        if (!p.dryRun) {
          if (!rule.overflow || rule.overflowLabel === undefined) return undefined;
          // The overflow series is this replica's own (it carries the replica label): not shared.
          current = overflowVariant(ctx, current, p, rule.overflowLabel, ruleIndex);
        }
      }
      for (let j = 0; j < l.perLabel.length; j++) {
        const lr = l.perLabel[j]!;
        if (lr.metric !== undefined && !lr.metric.matches(ctx.interner.name(current.metric))) continue;
        const v = labelValue(current.labels!, lr.label);
        if (v === '' || v === OVERFLOW_VALUE) continue;
        const vh = hashString(v, SEED_A);
        if (!this.#decide(pass, state, SCOPE_LABEL, j, current.metric, vh, lr.maxValues, current !== entry)) {
          ctx.slot(lr.slot, current.metric, samples);
          if (!p.dryRun) {
            if (!lr.overflow) return undefined;
            current = overflowVariant(ctx, current, p, lr.label, 1000 + j);
          }
        }
      }
    }
    return current;
  }
}

function trackerOf(state: LimitState, kind: number, j: number): SeriesTracker {
  return kind === SCOPE_TENANT ? state.tenants! : kind === SCOPE_SERIES ? state.series : state.labels[j]!;
}

/**
 * The shared-store scope of a limit: `kind` SCOPE_TENANT (`name` the tenant, '' for none),
 * SCOPE_SERIES or SCOPE_LABEL (perLabel `j`; `name` the metric). Also what statistics ask the store
 * to count (proxy/stats/limits.ts).
 */
export function limitScope(
  policyTag: string,
  kind: number,
  j: number,
  name: string,
): { tag: string; sub: string } {
  if (kind === SCOPE_TENANT) return { tag: `${policyTag}:t:${scopeName(name)}`, sub: '' };
  return { tag: `${policyTag}:m:${scopeName(name)}`, sub: kind === SCOPE_LABEL ? `:l${j}` : '' };
}

/** A name inside a shared-store scope name: `{`, `}` and `%` percent-encoded (they delimit hash tags). */
function scopeName(name: string): string {
  return /[{}%]/.test(name) ? name.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : name;
}
