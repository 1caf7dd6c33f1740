// The statistics of --workers N for the whole proxy: GET /api/v1/stats/top-offenders,
// /api/v1/stats/unused, /api/v1/stats/usage, the pages that show them and the top-offender gauges
// of /metrics. The worker that takes a request asks the primary; the primary asks every worker for
// its part (the hashes its trackers hold within the window, its counters, its reads) and merges
// them (proxy/stats/merge.ts), as it merges /metrics.
//
// A part costs its worker a pass over its trackers and a sort of their hashes per name, and the
// merge costs the primary one linear pass over the sorted lists (proxy/stats/merge.bench.ts), so
// the primary's event loop, which also answers the workers' limit checks, stays short. The primary
// keeps each merge for CACHE_MS and lets every request within it share it: a page load, a scrape
// and the operator's poll cost one. A worker
// that does not answer within PART_TIMEOUT_MS is left out and every answer says so
// (`workers: { answered, of }`); when the primary does not answer, the worker answers with its own
// part alone, saying the same.

import type { Registry } from 'prom-client';
import type { TopOffendersReport } from '../../policy/reports.js';
import { registerUsageGauges, topReads24h, type UsageGauges } from '../query/metrics.js';
import { OTHER_READER } from '../query/recorder.js';
import type { UsageService } from '../query/usage.js';
import { buildUsageReport, type UsageInput, type UsageQuery, type UsageReportJson } from '../query/usage.js';
import type { LimitsReport } from '../stats/limits.js';
import {
  limitOffenders,
  type MergedOffenders,
  mergeLimits,
  mergeOffenders,
  mergeUnused,
  mergeUsage,
  type OffendersPart,
  type UnusedPart,
  type UsagePart,
} from '../stats/merge.js';
import { type Offenders, registerOffenderGauges } from '../stats/offenders.js';
import type { UnusedReport, UnusedStats } from '../stats/unused.js';
import { askEveryWorker, type Rpc } from './rpc.js';
import type { WorkerContext } from './worker.js';

/** How many workers' parts an answer is made of, of how many the proxy runs. */
export interface WorkersAnswered {
  readonly answered: number;
  readonly of: number;
}

export type Answered<T> = T & { readonly workers: WorkersAnswered };

/** Longest wait for one worker's part. */
export const PART_TIMEOUT_MS = 5000;
/** How long the primary keeps a merge. */
export const CACHE_MS = 1000;
/** The largest `limit` the routes accept: parts and merges are made for it, and cut per request. */
const MAX_LIMIT = 1000;

export interface PrimaryStatsOptions {
  /** --workers: how many the proxy runs, started or not. */
  readonly workers: number;
  /** The workers that serve now, by index. */
  readonly live: () => readonly { readonly index: number; readonly rpc: Rpc }[];
  /** The primary's registry: the top-offender gauges are registered there, from the merge. */
  readonly registry: Registry;
  /** --stats.expose-top. */
  readonly exposeTop: number;
  /** Whether the workers keep usage statistics (--query.*): the usage gauges come from their merge. */
  readonly usageGauges?: boolean;
  readonly partTimeoutMs?: number;
  readonly cacheMs?: number;
  readonly now?: () => number;
}

/**
 * The primary's end: merges on a worker's request, and fills the top-offender gauges of /metrics
 * from the same merge. `attach` each worker's channel when it is forked.
 */
export function servePrimaryStats(opts: PrimaryStatsOptions): { attach(rpc: Rpc): void } {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.partTimeoutMs ?? PART_TIMEOUT_MS;
  const cacheMs = opts.cacheMs ?? CACHE_MS;

  const gather = async <T>(op: string, arg: unknown): Promise<{ parts: T[]; workers: WorkersAnswered }> => {
    const answers = await askEveryWorker<T>(opts.workers, opts.live(), op, arg, timeoutMs);
    const parts = answers.flatMap((a) => ('answer' in a ? [a.answer] : []));
    return { parts, workers: { answered: parts.length, of: opts.workers } };
  };
  // One merge per kind at a time, kept for cacheMs from when it started; a failed one is not kept.
  const kept = new Map<string, { at: number; value: Promise<unknown> }>();
  const cached = <T>(key: string, make: () => Promise<T>): Promise<T> => {
    const t = now();
    const hit = kept.get(key);
    if (hit !== undefined && t - hit.at < cacheMs) return hit.value as Promise<T>;
    const value = make();
    kept.set(key, { at: t, value });
    value.catch(() => {
      if (kept.get(key)?.value === value) kept.delete(key);
    });
    return value;
  };

  const offenders = () =>
    cached('offenders', async () => {
      const { parts, workers } = await gather<OffendersPart>('stats.part.offenders', undefined);
      return { merged: mergeOffenders(parts), workers };
    });
  const unused = () =>
    cached('unused', async () => {
      const { parts, workers } = await gather<UnusedPart>('stats.part.unused', MAX_LIMIT);
      return { report: mergeUnused(parts, MAX_LIMIT), workers };
    });
  const usage = () =>
    cached('usage', async () => {
      const { parts, workers } = await gather<UsagePart>('stats.part.usage', undefined);
      return { input: mergeUsage(parts, now()), workers };
    });

  registerOffenderGauges(opts.registry, opts.exposeTop, async (n) => {
    const { merged } = await offenders();
    return { report: limitOffenders(merged.report, n), activeSeries: merged.activeSeries };
  });

  if (opts.usageGauges === true) {
    registerUsageGauges(opts.registry, opts.exposeTop, async (n) => usageGaugesOf((await usage()).input, n));
  }

  return {
    attach(rpc) {
      rpc.handle('stats.top-offenders', async (limit) => {
        const { merged, workers } = await offenders();
        return topOffendersAnswer(merged, Number(limit), workers);
      });
      rpc.handle('stats.unused', async (limit) => {
        const { report, workers } = await unused();
        return { ...limitUnused(report, Number(limit)), workers };
      });
      // Not kept: a limits report is one pass per worker and one round trip to the store.
      rpc.handle('stats.limits', async (perPolicy) => {
        const { parts, workers } = await gather<LimitsReport>('stats.part.limits', perPolicy);
        return { ...mergeLimits(parts, Number(perPolicy)), workers };
      });
      rpc.handle('stats.usage', async (query) => {
        const { input, workers } = await usage();
        return usageAnswer(input, query as UsageQuery, workers);
      });
    },
  };
}

function topOffendersAnswer(
  merged: MergedOffenders,
  limit: number,
  workers: WorkersAnswered,
): Answered<TopOffendersReport> {
  return { ...limitOffenders(merged.report, limit), workers };
}

function usageAnswer(input: UsageInput, q: UsageQuery, workers: WorkersAnswered): Answered<UsageReportJson> {
  return { ...buildUsageReport(input, q), workers };
}

/** The usage gauges of the merged reads, with the top `n` read metrics. Pure. */
export function usageGaugesOf(input: UsageInput, n: number): UsageGauges {
  return {
    trackedMetrics: input.trackedMetrics,
    trackedReaders: input.readers.filter((r) => r.reader !== OTHER_READER).length,
    untrackedReads: input.untrackedReads,
    top: n === 0 ? [] : topReads24h(input.rows, n),
  };
}

/** The report with each list at most `limit` long (its totals are over every row). */
export function limitUnused(report: UnusedReport, limit: number): UnusedReport {
  return {
    ...report,
    policies: report.policies.map((p) => ({
      ...p,
      metrics: p.metrics.slice(0, limit),
      labels: p.labels.slice(0, limit),
    })),
    used: report.used.slice(0, limit),
  };
}

/** What a worker's parts are made of. */
export interface StatsSources {
  readonly offenders: Offenders;
  readonly unused: UnusedStats;
  /** With --query.upstream or --query.log-file; `readPath` with --query.upstream. */
  readonly usage?: { readonly service: UsageService; readonly readPath: boolean } | undefined;
  /** This worker's limits report (proxy/stats/limits.ts), each policy's `perPolicy` fullest. */
  readonly limits: (perPolicy: number) => Promise<LimitsReport>;
}

/** The worker's end: its parts, for the primary to merge. */
export function serveStatsParts(ctx: WorkerContext, sources: StatsSources): void {
  ctx.rpc.handle('stats.part.offenders', () => sources.offenders.part(Date.now()));
  ctx.rpc.handle('stats.part.unused', (limit) => sources.unused.part(Number(limit), Date.now()));
  ctx.rpc.handle('stats.part.limits', (perPolicy) => sources.limits(Number(perPolicy)));
  const usage = sources.usage;
  if (usage !== undefined) {
    ctx.rpc.handle(
      'stats.part.usage',
      (): UsagePart => ({
        ...usage.service.part(usage.readPath),
        ingest: sources.offenders.ingestPart(Date.now()),
      }),
    );
  }
}

/** This process's own reports, what a worker answers with when the primary does not. */
export interface OwnStats {
  readonly topOffenders: (limit: number) => TopOffendersReport;
  readonly unused: (limit: number) => UnusedReport;
  readonly usage?: ((q: UsageQuery) => UsageReportJson) | undefined;
  readonly limits: (perPolicy: number) => Promise<LimitsReport>;
}

/**
 * The reports a worker serves: the whole proxy's, from the primary; its own alone (`answered: 1`)
 * when the primary does not answer within `timeoutMs`.
 */
export function wholeProxyStats(
  ctx: WorkerContext,
  own: OwnStats,
  timeoutMs = 2 * PART_TIMEOUT_MS,
): {
  topOffenders: (limit: number) => Promise<Answered<TopOffendersReport>>;
  unused: (limit: number) => Promise<Answered<UnusedReport>>;
  usage: ((q: UsageQuery) => Promise<Answered<UsageReportJson>>) | undefined;
  limits: (perPolicy: number) => Promise<Answered<LimitsReport>>;
} {
  const ask = async <T>(op: string, arg: unknown, alone: () => T | Promise<T>): Promise<Answered<T>> => {
    try {
      return await ctx.rpc.call<Answered<T>>(op, arg, timeoutMs);
    } catch {
      return { ...(await alone()), workers: { answered: 1, of: ctx.count } };
    }
  };
  const usage = own.usage;
  return {
    topOffenders: (limit) => ask('stats.top-offenders', limit, () => own.topOffenders(limit)),
    unused: (limit) => ask('stats.unused', limit, () => own.unused(limit)),
    usage: usage === undefined ? undefined : (q) => ask('stats.usage', q, () => usage(q)),
    limits: (perPolicy) => ask('stats.limits', perPolicy, () => own.limits(perPolicy)),
  };
}
