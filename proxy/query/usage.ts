// Usage statistics: the recorder, the query-log tailer and the state file together, and the
// report of GET /api/v1/stats/usage, which joins what is read with what ingest knows of the same
// metric (active series, samples per second, dropped samples) into a cost per read.
//
// The state file (--query.usage.state-file) is written every save interval and on shutdown, to a
// temporary file that is fsync'd and renamed over the old one, so a crash leaves the old state or
// the new one, never half of either. It holds the recorder's counts and the query log position.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ownsOrphan } from '../queue/takeover.js';
import type { IngestRow } from '../stats/offenders.js';
import { addExpression, emptyReads, type RequestReads } from './extract.js';
import type { QueryMetrics } from './metrics.js';
import { type LogPosition, parseQueryLogLine, QueryLogTailer } from './query-log.js';
import { ruleGroupReader } from './readers.js';
import {
  bytesPerMetric,
  type KnownNames,
  type MetricUsageRow,
  type ReaderRow,
  type RecorderOptions,
  UsageRecorder,
} from './recorder.js';

export interface UsageServiceOptions {
  readonly recorder: RecorderOptions;
  /** Where counts survive a restart; undefined keeps them in memory only. */
  readonly stateFile: string | undefined;
  /**
   * State files no process owns any more (orphanedStateFiles): their counts are added to this
   * one's at start, which is saved before they are removed.
   */
  readonly takeOver?: readonly string[] | undefined;
  readonly saveIntervalMs: number;
  /** Prometheus's query log, tailed for rule evaluations. */
  readonly queryLog?: { readonly path: string; readonly pollMs: number } | undefined;
  /** Metric names known to exist besides those read: ingest's, and the query API's. */
  readonly known: KnownNames;
  /** Whether `known` includes the query API's own list of names (so "missing" can be judged). */
  readonly upstreamNamesKnown: () => boolean;
  readonly logger: Logger;
  readonly now?: () => number;
}

export type UsageSort = 'reads' | 'lastRead' | 'cost';

export interface UsageQuery {
  readonly limit: number;
  readonly readers: number;
  readonly sort: UsageSort;
}

/** What GET /api/v1/stats/usage reports about one metric. */
export interface UsageMetricJson {
  metric: string;
  reads: { '1h': number; '24h': number; '30d': number; total: number };
  lastRead: string | null;
  readers: { reader: string; reads: number; lastRead: string }[];
  /** Whether ingest or the query API knows the metric exists. */
  known: boolean;
  ingest: IngestRow | null;
  /** series x samples/s / reads over 30 days; null when unread or not ingested here. */
  costPerRead: number | null;
}

export interface UsageReportJson {
  readPath: boolean;
  since: string;
  now: string;
  trackedMetrics: number;
  maxTrackedMetrics: number;
  bytesPerMetric: number;
  untrackedReads: number;
  patternReads: number;
  metrics: UsageMetricJson[];
  /** Rows there are in all (tracked metrics, and ingested metrics the report added). */
  metricsTotal: number;
  readers: { reader: string; reads: number; lastRead: string }[];
  /** Whether `missing` can be judged: the query API's metric names were fetched. */
  missingKnown: boolean;
  /** Metrics read but neither ingested here nor known to the query API, the most read first. */
  missing: { metric: string; reads30d: number; lastRead: string }[];
  queryLog: { path: string; ruleEvaluations: number; lines: number } | null;
}

/**
 * What the usage report is made of: the reads, what ingest knows of each metric, and what is
 * known to exist. One process's own (UsageService.report), or with --workers N the merge of every
 * worker's (proxy/stats/merge.ts mergeUsage).
 */
export interface UsageInput {
  readonly readPath: boolean;
  readonly sinceMs: number;
  readonly nowMs: number;
  readonly trackedMetrics: number;
  readonly maxTrackedMetrics: number;
  readonly bytesPerMetric: number;
  readonly untrackedReads: number;
  readonly patternReads: number;
  /** Every tracked metric's reads, each with its readers, the most reads first. */
  readonly rows: readonly MetricUsageRow[];
  /** Every reader, the most reads first. */
  readonly readers: readonly ReaderRow[];
  /** Whether a metric is known to exist besides what `ingest` says (the query API's names). */
  readonly known: (name: string) => boolean;
  /** What ingest knows of a metric; undefined for one it never saw. */
  readonly ingest: (name: string) => IngestRow | undefined;
  /** The `n` metrics with the most active series. */
  readonly largest: (n: number) => string[];
  readonly missingKnown: boolean;
  readonly queryLog: UsageReportJson['queryLog'];
}

/**
 * One worker's reads, for the usage report of --workers N (proxy/stats/merge.ts): every tracked
 * metric with all the readers it keeps, and whether this worker knows each one exists.
 */
export interface UsageReadsPart {
  readonly readPath: boolean;
  readonly sinceMs: number;
  readonly maxTrackedMetrics: number;
  readonly bytesPerMetric: number;
  readonly untrackedReads: number;
  readonly patternReads: number;
  readonly rows: readonly MetricUsageRow[];
  /** 1 where this worker knows `rows[i].metric` exists (ingest or the query API). */
  readonly known: Uint8Array;
  readonly readers: readonly ReaderRow[];
  readonly missingKnown: boolean;
  readonly queryLog: UsageReportJson['queryLog'];
}

interface SavedState {
  recorder: unknown;
  queryLog?: LogPosition | undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class UsageService {
  readonly #opts: UsageServiceOptions;
  readonly #now: () => number;
  readonly recorder: UsageRecorder;
  #tailer: QueryLogTailer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #metrics: QueryMetrics | undefined;
  #ruleEvaluations = 0;
  #logLines = 0;
  /** The query log position read at start, saved while no tailer runs (one not tailing keeps it). */
  #position: LogPosition | undefined;

  constructor(opts: UsageServiceOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    const now = this.#now();
    let recorder: UsageRecorder | undefined;
    let position: LogPosition | undefined;
    if (opts.stateFile !== undefined) {
      let text: string | undefined;
      try {
        text = readFileSync(opts.stateFile, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (text !== undefined) {
        try {
          const saved = JSON.parse(text) as SavedState;
          recorder = UsageRecorder.fromState(saved.recorder, opts.recorder, now, opts.known);
          position = saved.queryLog;
        } catch (err) {
          // A state file that does not load is not worth refusing to serve queries for.
          opts.logger.error(
            { path: opts.stateFile },
            `usage state not loaded, starting afresh: ${(err as Error).message}`,
          );
        }
      }
    }
    this.recorder = recorder ?? new UsageRecorder(opts.recorder, now, opts.known);
    position = this.#takeOver(now, position);
    if (opts.queryLog !== undefined) {
      this.#tailer = new QueryLogTailer({
        path: opts.queryLog.path,
        pollMs: opts.queryLog.pollMs,
        start: position,
        onLine: (line) => this.#onLogLine(line),
        onTooLong: () => this.#metrics?.queryLogLine('too_long'),
        logger: opts.logger,
      });
    }
  }

  /**
   * Adds each orphaned state file's counts to the recorder, saves, then removes the files; a
   * crash before the removal counts their reads twice, never loses them. A file that cannot be
   * read stays for the next start. Returns the query log position to go on from: this state's,
   * or without one the first orphan's.
   */
  #takeOver(now: number, position: LogPosition | undefined): LogPosition | undefined {
    const taken: string[] = [];
    for (const path of this.#opts.takeOver ?? []) {
      try {
        const saved = JSON.parse(readFileSync(path, 'utf8')) as SavedState;
        const other = UsageRecorder.fromState(saved.recorder, this.#opts.recorder, now, this.#opts.known);
        this.recorder.absorb(other, now);
        position ??= saved.queryLog;
        taken.push(path);
      } catch (err) {
        this.#opts.logger.error(
          { path },
          `usage state of a former worker not taken over, it stays: ${(err as Error).message}`,
        );
      }
    }
    this.#position = position;
    if (taken.length === 0) return position;
    if (!this.save()) return position;
    for (const path of taken) {
      try {
        unlinkSync(path);
      } catch (err) {
        this.#opts.logger.error({ err, path }, 'removing a taken-over usage state failed');
      }
    }
    this.#opts.logger.info({ files: taken }, 'usage state of former workers taken over');
    return position;
  }

  /** Starts the tailer and the periodic save; `metrics` are told of lines and saves. */
  start(metrics: QueryMetrics): void {
    this.#metrics = metrics;
    this.#tailer?.start();
    if (this.#opts.stateFile !== undefined) {
      this.#timer = setInterval(() => this.save(), this.#opts.saveIntervalMs);
      this.#timer.unref();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#tailer?.close();
    this.save();
  }

  /** One read request's reads. */
  record(reads: RequestReads, reader: string, nowMs: number): void {
    this.recorder.record(reads.names, reads.patterns, reader, nowMs);
  }

  #onLogLine(line: string): void {
    this.#logLines++;
    const entry = parseQueryLogLine(line);
    if (entry === 'invalid' || entry === 'other') {
      this.#metrics?.queryLogLine(entry);
      return;
    }
    this.#metrics?.queryLogLine('rule');
    this.#ruleEvaluations++;
    const reads = emptyReads();
    addExpression(reads, entry.query);
    this.#metrics?.expressions(reads.parsed, reads.unparsed, reads.unnamed);
    this.record(reads, ruleGroupReader(entry.file, entry.group), this.#now());
  }

  /** Writes the state file now; failures are logged and counted, never thrown. True when written. */
  save(): boolean {
    const path = this.#opts.stateFile;
    if (path === undefined) return false;
    const state: SavedState = {
      recorder: this.recorder.toState(this.#now()),
      queryLog: this.#tailer?.position() ?? this.#position,
    };
    const tmp = `${path}.tmp`;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, JSON.stringify(state));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      this.#metrics?.stateSave(true);
      return true;
    } catch (err) {
      this.#metrics?.stateSave(false);
      this.#opts.logger.error({ err, path }, 'writing the usage state failed');
      return false;
    }
  }

  /** The report of GET /api/v1/stats/usage. */
  report(
    q: UsageQuery,
    ingest: {
      readonly lookup: (name: string) => IngestRow | undefined;
      readonly largest: (n: number) => string[];
    },
    readPath: boolean,
  ): UsageReportJson {
    const now = this.#now();
    const knownSet = new Set<string>(this.#opts.known.names());
    return buildUsageReport(
      {
        ...this.#state(readPath),
        nowMs: now,
        trackedMetrics: this.recorder.trackedMetrics,
        rows: this.recorder.rows(now, q.readers),
        readers: this.recorder.readers(),
        known: (name) => knownSet.has(name),
        ingest: ingest.lookup,
        largest: ingest.largest,
      },
      q,
    );
  }

  /** This worker's reads for the usage report of --workers N. O(tracked metrics × readers per metric). */
  part(readPath: boolean): UsageReadsPart {
    const rows = this.recorder.rows(this.#now(), this.#opts.recorder.readersPerMetric);
    const knownSet = new Set<string>(this.#opts.known.names());
    return {
      ...this.#state(readPath),
      rows,
      known: Uint8Array.from(rows, (r) => (knownSet.has(r.metric) ? 1 : 0)),
      readers: this.recorder.readers(),
    };
  }

  #state(readPath: boolean) {
    return {
      readPath,
      sinceMs: this.recorder.sinceMs,
      maxTrackedMetrics: this.#opts.recorder.maxMetrics,
      bytesPerMetric: bytesPerMetric(this.#opts.recorder.readersPerMetric),
      untrackedReads: this.recorder.untracked,
      patternReads: this.recorder.patternReads,
      missingKnown: this.#opts.upstreamNamesKnown(),
      queryLog:
        this.#opts.queryLog === undefined
          ? null
          : { path: this.#opts.queryLog.path, ruleEvaluations: this.#ruleEvaluations, lines: this.#logLines },
    };
  }
}

/** The report of GET /api/v1/stats/usage from what it is made of, for query `q`. */
export function buildUsageReport(input: UsageInput, q: UsageQuery): UsageReportJson {
  const rows = input.rows.map((r) => ({ ...r, readers: r.readers.slice(0, q.readers) }));
  const byName = new Set(rows.map((r) => r.metric));
  // The costliest metrics nobody reads are the point of the report: ingest's largest join in.
  for (const name of input.largest(q.limit)) {
    if (!byName.has(name)) {
      rows.push({
        metric: name,
        reads1h: 0,
        reads24h: 0,
        reads30d: 0,
        readsTotal: 0,
        lastRead: 0,
        readers: [],
      });
      byName.add(name);
    }
  }
  const metrics: UsageMetricJson[] = rows.map((r) => {
    const ing = input.ingest(r.metric) ?? null;
    const weight = ing === null ? 0 : ing.activeSeries * ing.samplesPerSecond;
    return {
      metric: r.metric,
      reads: { '1h': r.reads1h, '24h': r.reads24h, '30d': r.reads30d, total: r.readsTotal },
      lastRead: r.lastRead > 0 ? iso(r.lastRead) : null,
      readers: r.readers.map((x) => ({ reader: x.reader, reads: x.reads, lastRead: iso(x.lastRead) })),
      known: ing !== null || input.known(r.metric),
      ingest: ing,
      costPerRead: ing === null || r.reads30d === 0 ? null : round(weight / r.reads30d),
    };
  });
  const weightOf = (m: UsageMetricJson) =>
    m.ingest === null ? 0 : m.ingest.activeSeries * m.ingest.samplesPerSecond;
  const lastOf = (m: UsageMetricJson) => (m.lastRead === null ? 0 : Date.parse(m.lastRead));
  const byMetric = (a: UsageMetricJson, b: UsageMetricJson) =>
    a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0;
  const sorts: Record<UsageSort, (a: UsageMetricJson, b: UsageMetricJson) => number> = {
    reads: (a, b) => b.reads['30d'] - a.reads['30d'] || lastOf(b) - lastOf(a) || byMetric(a, b),
    lastRead: (a, b) => lastOf(b) - lastOf(a) || byMetric(a, b),
    // Unread first, the heaviest first; then the highest cost per read.
    cost: (a, b) =>
      (a.reads['30d'] === 0 ? 0 : 1) - (b.reads['30d'] === 0 ? 0 : 1) ||
      (a.reads['30d'] === 0 ? weightOf(b) - weightOf(a) : (b.costPerRead ?? 0) - (a.costPerRead ?? 0)) ||
      byMetric(a, b),
  };
  metrics.sort(sorts[q.sort]);
  const missing = input.missingKnown
    ? metrics
        .filter((m) => !m.known && m.lastRead !== null)
        .sort((a, b) => b.reads['30d'] - a.reads['30d'] || byMetric(a, b))
        .slice(0, q.limit)
        .map((m) => ({ metric: m.metric, reads30d: m.reads['30d'], lastRead: m.lastRead ?? '' }))
    : [];
  return {
    readPath: input.readPath,
    since: iso(input.sinceMs),
    now: iso(input.nowMs),
    trackedMetrics: input.trackedMetrics,
    maxTrackedMetrics: input.maxTrackedMetrics,
    bytesPerMetric: input.bytesPerMetric,
    untrackedReads: input.untrackedReads,
    patternReads: input.patternReads,
    metrics: metrics.slice(0, q.limit),
    metricsTotal: metrics.length,
    readers: input.readers
      .slice(0, q.limit)
      .map((r) => ({ reader: r.reader, reads: r.reads, lastRead: iso(r.lastRead) })),
    missingKnown: input.missingKnown,
    missing,
    queryLog: input.queryLog,
  };
}

function round(n: number): number {
  return n === 0 ? 0 : Number(n.toPrecision(4));
}

/**
 * The state files this process takes over, given the entries of the state file's directory: those
 * of former workers, `<state-file>.worker-<j>`, by the rule of the queue directories
 * (proxy/queue/takeover.ts: a single process every one, worker i of N each j >= N with
 * j mod N = i), and for worker 0 of N the single process's `<state-file>` itself. Pure.
 */
export function orphanedStateFiles(
  stateFile: string,
  entries: readonly string[],
  worker: { readonly index: number; readonly count: number } | undefined,
): string[] {
  const base = basename(stateFile);
  const out = worker?.index === 0 && entries.includes(base) ? [stateFile] : [];
  const numbered = entries
    .flatMap((name) => {
      if (!name.startsWith(`${base}.worker-`)) return [];
      const j = name.slice(base.length + '.worker-'.length);
      return /^\d{1,9}$/.test(j) ? [{ name, j: Number(j) }] : [];
    })
    .sort((a, b) => a.j - b.j);
  for (const d of numbered) if (ownsOrphan(d.j, worker)) out.push(join(dirname(stateFile), d.name));
  return out;
}
