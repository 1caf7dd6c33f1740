// What the pages show over time, sampled from the side every few seconds: policy counter totals
// (for "over the last 5 minutes") and the top offenders' active series (for sparklines over the
// statistics window). Bounded: a fixed number of snapshots, each of a bounded size.

import type { TopOffendersReport } from '../stats/top-offenders.js';

export interface HistoryOptions {
  /** Milliseconds between samples. */
  readonly intervalMs: number;
  /** How far back to keep: the statistics window. */
  readonly windowMs: number;
  /** Metrics whose series counts are kept per sample. */
  readonly topMetrics: number;
}

interface Snapshot {
  readonly atMs: number;
  /** Policy counter totals by `policy\0rule\0reason\0action\0mode`. */
  readonly totals: ReadonlyMap<string, number>;
  /** Active series by metric, for the top metrics at that time. */
  readonly series: ReadonlyMap<string, number>;
}

export class History {
  readonly #opts: HistoryOptions;
  readonly #snapshots: Snapshot[] = [];
  readonly #capacity: number;

  constructor(opts: HistoryOptions) {
    this.#opts = opts;
    this.#capacity = Math.max(2, Math.ceil(opts.windowMs / opts.intervalMs) + 1);
  }

  get options(): HistoryOptions {
    return this.#opts;
  }

  record(atMs: number, totals: ReadonlyMap<string, number>, offenders: TopOffendersReport): void {
    const series = new Map(
      offenders.metrics.slice(0, this.#opts.topMetrics).map((m) => [m.metric, m.activeSeries]),
    );
    this.#snapshots.push({ atMs, totals, series });
    if (this.#snapshots.length > this.#capacity) this.#snapshots.shift();
  }

  /**
   * How much each counter grew over the last `ms` (or since the oldest snapshot, when younger),
   * and the span actually covered. Counters that were reset (a restart) count from zero.
   */
  increase(
    now: ReadonlyMap<string, number>,
    nowMs: number,
    ms: number,
  ): { span: number; by: Map<string, number> } {
    const base =
      this.#snapshots.find((s) => s.atMs >= nowMs - ms) ?? this.#snapshots[this.#snapshots.length - 1];
    const by = new Map<string, number>();
    for (const [k, v] of now) {
      const before = base?.totals.get(k) ?? 0;
      by.set(k, v >= before ? v - before : v);
    }
    return { span: base === undefined ? 0 : nowMs - base.atMs, by };
  }

  /** Per metric, its active series at each snapshot (null where it was not among the top). */
  seriesHistory(metrics: readonly string[]): { times: number[]; series: Record<string, (number | null)[]> } {
    const times = this.#snapshots.map((s) => Math.round(s.atMs / 1000));
    const series: Record<string, (number | null)[]> = {};
    for (const m of metrics) series[m] = this.#snapshots.map((s) => s.series.get(m) ?? null);
    return { times, series };
  }
}
