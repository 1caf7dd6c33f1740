// The usage recorder: per metric name, read requests in all and over the last hour, day and 30
// days, the last read, and a bounded list of its recent readers. Fed by the read path (one call
// per request) and by the query-log tailer (one call per rule evaluation).
//
// Memory is bounded and counted: every tracked metric costs a fixed number of typed-array slots
// (BYTES_PER_METRIC below) plus its name in one Map; the arrays grow by doubling up to
// `maxMetrics`, and reads of metrics beyond it are counted as untracked. The windows are rings of
// buckets (12 of 5 minutes, 24 of an hour, 30 of a day) shared by every metric: when the clock
// enters a new bucket its column is cleared for all metrics at once, so recording is O(1) and the
// windows are exact to their bucket.

import { type AnchoredRegex, compileAnchored } from '../../policy/regex.js';

export const MINUTE_BUCKET_MS = 5 * 60_000;
export const HOUR_BUCKET_MS = 3_600_000;
export const DAY_BUCKET_MS = 86_400_000;
const RINGS = [
  { name: 'minute', ms: MINUTE_BUCKET_MS, size: 12 },
  { name: 'hour', ms: HOUR_BUCKET_MS, size: 24 },
  { name: 'day', ms: DAY_BUCKET_MS, size: 30 },
] as const;
type RingName = (typeof RINGS)[number]['name'];

export interface RecorderOptions {
  /** Metric names tracked at most. */
  readonly maxMetrics: number;
  /** Distinct readers tracked at most; later ones are counted as `other`. */
  readonly maxReaders: number;
  /** Recent readers kept per metric; a new one replaces the one read least recently. */
  readonly readersPerMetric: number;
}

/**
 * Bytes of typed arrays per tracked metric with `readersPerMetric` readers: two float64 (reads,
 * last read), 66 uint32 buckets, and per reader an int32 index, a uint32 count and a float64 time.
 * The name and its Map entry come on top (about 80 bytes plus the name).
 */
export function bytesPerMetric(readersPerMetric: number): number {
  return 16 + 4 * (12 + 24 + 30) + readersPerMetric * 16 + 4;
}

/** Where pattern reads (regex matchers on __name__) are resolved: the metric names known to exist. */
export interface KnownNames {
  /** Changes whenever `names` may have changed. */
  generation(): number;
  names(): Iterable<string>;
}

export interface ReaderRow {
  reader: string;
  reads: number;
  lastRead: number;
}

export interface MetricUsageRow {
  metric: string;
  reads1h: number;
  reads24h: number;
  reads30d: number;
  readsTotal: number;
  /** Milliseconds since the epoch. */
  lastRead: number;
  /** Recent readers, the most reads first. */
  readers: ReaderRow[];
}

/** The state file's content, version 1. */
export interface RecorderState {
  version: 1;
  sinceMs: number;
  savedAtMs: number;
  rings: Record<RingName, number>;
  metrics: {
    name: string;
    total: number;
    last: number;
    minute: number[];
    hour: number[];
    day: number[];
    readers: [string, number, number][];
  }[];
  readers: [string, number, number][];
  counters: { untracked: number; patternReads: number; invalidPatterns: number };
}

/** The reader the reads of readers beyond `maxReaders` are counted as. */
export const OTHER_READER = 'other';
const MAX_PATTERNS_CACHED = 512;

export class UsageRecorder {
  readonly #opts: RecorderOptions;
  readonly #known: KnownNames | undefined;
  #sinceMs: number;
  #capacity = 0;
  readonly #index = new Map<string, number>();
  readonly #names: string[] = [];
  #total = new Float64Array(0);
  #last = new Float64Array(0);
  #seen = new Uint32Array(0);
  #request = 0;
  readonly #rings: Record<RingName, { slot: number; counts: Uint32Array }>;
  #rdId = new Int32Array(0);
  #rdCount = new Uint32Array(0);
  #rdLast = new Float64Array(0);
  readonly #readerIndex = new Map<string, number>([[OTHER_READER, 0]]);
  readonly #readerNames: string[] = [OTHER_READER];
  readonly #readerReads: number[] = [0];
  readonly #readerLast: number[] = [0];
  readonly #patterns = new Map<string, { gen: number; re: AnchoredRegex | undefined; names: string[] }>();
  /** Reads of metrics not tracked because `maxMetrics` were. */
  untracked = 0;
  /** Metric reads that came from a pattern. */
  patternReads = 0;
  /** Patterns that are not valid RE2: they match nothing. */
  invalidPatterns = 0;

  constructor(opts: RecorderOptions, nowMs: number, known?: KnownNames) {
    if (!(opts.maxMetrics >= 1 && opts.readersPerMetric >= 1 && opts.maxReaders >= 1)) {
      throw new RangeError('maxMetrics, maxReaders and readersPerMetric must be at least 1');
    }
    this.#opts = opts;
    this.#known = known;
    this.#sinceMs = nowMs;
    this.#rings = {
      minute: { slot: Math.floor(nowMs / MINUTE_BUCKET_MS), counts: new Uint32Array(0) },
      hour: { slot: Math.floor(nowMs / HOUR_BUCKET_MS), counts: new Uint32Array(0) },
      day: { slot: Math.floor(nowMs / DAY_BUCKET_MS), counts: new Uint32Array(0) },
    };
  }

  /** When counting began (the earliest of the recorders it absorbed). */
  get sinceMs(): number {
    return this.#sinceMs;
  }

  get trackedMetrics(): number {
    return this.#names.length;
  }

  get trackedReaders(): number {
    return this.#readerNames.length - 1;
  }

  /** Whether `name` has been read. */
  has(name: string): boolean {
    return this.#index.has(name);
  }

  /** Every tracked name, in the order first read. */
  names(): readonly string[] {
    return this.#names;
  }

  #grow(): boolean {
    if (this.#capacity >= this.#opts.maxMetrics) return false;
    const cap = Math.min(this.#opts.maxMetrics, Math.max(256, this.#capacity * 2));
    const k = this.#opts.readersPerMetric;
    const grow = <T extends Float64Array | Uint32Array | Int32Array>(a: T, n: number, fill?: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      if (fill !== undefined) b.fill(fill);
      b.set(a);
      return b;
    };
    this.#total = grow(this.#total, cap);
    this.#last = grow(this.#last, cap);
    this.#seen = grow(this.#seen, cap);
    for (const r of RINGS) this.#rings[r.name].counts = grow(this.#rings[r.name].counts, cap * r.size);
    this.#rdId = grow(this.#rdId, cap * k, -1);
    this.#rdCount = grow(this.#rdCount, cap * k);
    this.#rdLast = grow(this.#rdLast, cap * k);
    this.#capacity = cap;
    return true;
  }

  /** The index of `name`, tracked from now on; -1 when `maxMetrics` are tracked already. */
  #metric(name: string): number {
    const i = this.#index.get(name);
    if (i !== undefined) return i;
    const next = this.#names.length;
    if (next >= this.#capacity && !this.#grow()) return -1;
    this.#index.set(name, next);
    this.#names.push(name);
    return next;
  }

  #reader(name: string): number {
    const i = this.#readerIndex.get(name);
    if (i !== undefined) return i;
    if (this.#readerNames.length > this.#opts.maxReaders) return 0;
    const next = this.#readerNames.length;
    this.#readerIndex.set(name, next);
    this.#readerNames.push(name);
    this.#readerReads.push(0);
    this.#readerLast.push(0);
    return next;
  }

  /** Moves every ring to the bucket of `nowMs`, clearing the buckets it enters. */
  advance(nowMs: number): void {
    for (const r of RINGS) {
      const ring = this.#rings[r.name];
      const slot = Math.floor(nowMs / r.ms);
      if (slot <= ring.slot) continue;
      const steps = Math.min(slot - ring.slot, r.size);
      const n = this.#names.length;
      for (let s = 1; s <= steps; s++) {
        const col = (ring.slot + s) % r.size;
        for (let m = 0; m < n; m++) ring.counts[m * r.size + col] = 0;
      }
      ring.slot = slot;
    }
  }

  /** The known names matching `pattern`, cached until the known names change. */
  #matching(pattern: string): string[] {
    // Both only grow: their sum changes whenever either does.
    const gen = (this.#known?.generation() ?? 0) + this.#names.length;
    let entry = this.#patterns.get(pattern);
    if (entry === undefined) {
      if (this.#patterns.size >= MAX_PATTERNS_CACHED) this.#patterns.clear();
      let re: AnchoredRegex | undefined;
      try {
        re = compileAnchored(pattern);
      } catch {
        this.invalidPatterns++;
      }
      entry = { gen: -1, re, names: [] };
      this.#patterns.set(pattern, entry);
    }
    if (entry.gen !== gen && entry.re !== undefined) {
      const re = entry.re;
      const out = new Set<string>();
      for (const n of this.#known?.names() ?? []) if (re.matches(n)) out.add(n);
      for (const n of this.#names) if (re.matches(n)) out.add(n);
      entry.names = [...out];
      entry.gen = gen;
    }
    return entry.names;
  }

  /**
   * One read request by `reader` at `nowMs`: each metric of `names`, and each known metric a
   * pattern of `patterns` matches, is read once, however often the request names it.
   */
  record(names: Iterable<string>, patterns: Iterable<string>, reader: string, nowMs: number): void {
    this.advance(nowMs);
    this.#request = (this.#request + 1) >>> 0 || 1;
    const request = this.#request;
    const r = this.#reader(reader);
    this.#readerReads[r]! += 1;
    if (nowMs > this.#readerLast[r]!) this.#readerLast[r] = nowMs;
    for (const n of names) this.#readOne(n, r, request, nowMs);
    for (const p of patterns) {
      for (const n of this.#matching(p)) {
        if (this.#readOne(n, r, request, nowMs)) this.patternReads++;
      }
    }
  }

  #readOne(name: string, reader: number, request: number, nowMs: number): boolean {
    const m = this.#metric(name);
    if (m < 0) {
      this.untracked++;
      return false;
    }
    if (this.#seen[m] === request) return false;
    this.#seen[m] = request;
    this.#total[m]! += 1;
    if (nowMs > this.#last[m]!) this.#last[m] = nowMs;
    for (const r of RINGS) {
      const ring = this.#rings[r.name];
      ring.counts[m * r.size + (ring.slot % r.size)]! += 1;
    }
    // The reader's slot, or the free one, or the one read least recently.
    const k = this.#opts.readersPerMetric;
    const base = m * k;
    let victim = base;
    for (let i = base; i < base + k; i++) {
      const id = this.#rdId[i]!;
      if (id === reader) {
        this.#rdCount[i]! += 1;
        if (nowMs > this.#rdLast[i]!) this.#rdLast[i] = nowMs;
        return true;
      }
      if (id === -1) {
        victim = i;
        break;
      }
      if (this.#rdLast[i]! < this.#rdLast[victim]!) victim = i;
    }
    this.#rdId[victim] = reader;
    this.#rdCount[victim] = 1;
    this.#rdLast[victim] = nowMs;
    return true;
  }

  #sum(ring: RingName, m: number): number {
    const r = RINGS.find((x) => x.name === ring)!;
    const counts = this.#rings[ring].counts;
    let n = 0;
    for (let i = m * r.size; i < (m + 1) * r.size; i++) n += counts[i]!;
    return n;
  }

  /** One row per tracked metric, in the order first read. */
  rows(nowMs: number, readersPerRow: number): MetricUsageRow[] {
    this.advance(nowMs);
    const k = this.#opts.readersPerMetric;
    const out: MetricUsageRow[] = [];
    for (let m = 0; m < this.#names.length; m++) {
      const readers: ReaderRow[] = [];
      if (readersPerRow > 0) {
        for (let i = m * k; i < (m + 1) * k; i++) {
          const id = this.#rdId[i]!;
          if (id < 0) continue;
          readers.push({
            reader: this.#readerNames[id]!,
            reads: this.#rdCount[i]!,
            lastRead: this.#rdLast[i]!,
          });
        }
        readers.sort((a, b) => b.reads - a.reads || b.lastRead - a.lastRead);
        readers.length = Math.min(readers.length, readersPerRow);
      }
      out.push({
        metric: this.#names[m]!,
        reads1h: this.#sum('minute', m),
        reads24h: this.#sum('hour', m),
        reads30d: this.#sum('day', m),
        readsTotal: this.#total[m]!,
        lastRead: this.#last[m]!,
        readers,
      });
    }
    return out;
  }

  /** Every reader with its requests, the most first. */
  readers(): ReaderRow[] {
    const out: ReaderRow[] = [];
    for (let i = 0; i < this.#readerNames.length; i++) {
      if (this.#readerReads[i] === 0) continue;
      out.push({
        reader: this.#readerNames[i]!,
        reads: this.#readerReads[i]!,
        lastRead: this.#readerLast[i]!,
      });
    }
    return out.sort((a, b) => b.reads - a.reads || (a.reader < b.reader ? -1 : 1));
  }

  toState(nowMs: number): RecorderState {
    this.advance(nowMs);
    const k = this.#opts.readersPerMetric;
    const slice = (ring: RingName, m: number) => {
      const size = RINGS.find((x) => x.name === ring)!.size;
      return Array.from(this.#rings[ring].counts.subarray(m * size, (m + 1) * size));
    };
    return {
      version: 1,
      sinceMs: this.sinceMs,
      savedAtMs: nowMs,
      rings: { minute: this.#rings.minute.slot, hour: this.#rings.hour.slot, day: this.#rings.day.slot },
      metrics: this.#names.map((name, m) => {
        const readers: [string, number, number][] = [];
        for (let i = m * k; i < (m + 1) * k; i++) {
          const id = this.#rdId[i]!;
          if (id >= 0) readers.push([this.#readerNames[id]!, this.#rdCount[i]!, this.#rdLast[i]!]);
        }
        return {
          name,
          total: this.#total[m]!,
          last: this.#last[m]!,
          minute: slice('minute', m),
          hour: slice('hour', m),
          day: slice('day', m),
          readers,
        };
      }),
      readers: this.#readerNames.map((r, i) => [r, this.#readerReads[i]!, this.#readerLast[i]!]),
      counters: {
        untracked: this.untracked,
        patternReads: this.patternReads,
        invalidPatterns: this.invalidPatterns,
      },
    };
  }

  /**
   * Adds `other`'s counts to this recorder's, both moved to `nowMs` first: reads per metric and
   * bucket, per reader, and the counters summed, the latest reads the latest of either. Each
   * metric keeps the readers that read it most recently; a metric beyond `maxMetrics` counts its
   * reads as untracked. `other` is left moved to `nowMs`, its counts unchanged.
   */
  absorb(other: UsageRecorder, nowMs: number): void {
    this.advance(nowMs);
    other.advance(nowMs);
    const k = this.#opts.readersPerMetric;
    const ko = other.#opts.readersPerMetric;
    for (let o = 0; o < other.#names.length; o++) {
      const m = this.#metric(other.#names[o]!);
      if (m < 0) {
        this.untracked += other.#total[o]!;
        continue;
      }
      this.#total[m]! += other.#total[o]!;
      this.#last[m] = Math.max(this.#last[m]!, other.#last[o]!);
      for (const r of RINGS) {
        const into = this.#rings[r.name].counts;
        const from = other.#rings[r.name].counts;
        for (let c = 0; c < r.size; c++) into[m * r.size + c]! += from[o * r.size + c]!;
      }
      const readers = new Map<number, { count: number; last: number }>();
      const add = (id: number, count: number, last: number) => {
        const had = readers.get(id);
        if (had === undefined) readers.set(id, { count, last });
        else {
          had.count += count;
          had.last = Math.max(had.last, last);
        }
      };
      for (let i = m * k; i < (m + 1) * k; i++) {
        if (this.#rdId[i]! >= 0) add(this.#rdId[i]!, this.#rdCount[i]!, this.#rdLast[i]!);
      }
      for (let i = o * ko; i < (o + 1) * ko; i++) {
        const id = other.#rdId[i]!;
        if (id >= 0) add(this.#reader(other.#readerNames[id]!), other.#rdCount[i]!, other.#rdLast[i]!);
      }
      const kept = [...readers].sort((a, b) => b[1].last - a[1].last).slice(0, k);
      for (let i = 0; i < k; i++) {
        const r = kept[i];
        this.#rdId[m * k + i] = r === undefined ? -1 : r[0];
        this.#rdCount[m * k + i] = r?.[1].count ?? 0;
        this.#rdLast[m * k + i] = r?.[1].last ?? 0;
      }
    }
    for (let i = 0; i < other.#readerNames.length; i++) {
      if (other.#readerReads[i] === 0) continue;
      const id = this.#reader(other.#readerNames[i]!);
      this.#readerReads[id]! += other.#readerReads[i]!;
      this.#readerLast[id] = Math.max(this.#readerLast[id]!, other.#readerLast[i]!);
    }
    this.untracked += other.untracked;
    this.patternReads += other.patternReads;
    this.invalidPatterns += other.invalidPatterns;
    this.#sinceMs = Math.min(this.#sinceMs, other.#sinceMs);
  }

  /**
   * A recorder continuing `state` (as toState wrote it) at `nowMs`: the buckets the clock moved
   * past since it was saved are cleared. Throws a TypeError naming the first field that is wrong.
   */
  static fromState(state: unknown, opts: RecorderOptions, nowMs: number, known?: KnownNames): UsageRecorder {
    const s = checkState(state);
    const rec = new UsageRecorder(opts, s.sinceMs, known);
    rec.#rings.minute.slot = s.rings.minute;
    rec.#rings.hour.slot = s.rings.hour;
    rec.#rings.day.slot = s.rings.day;
    for (const row of s.metrics) {
      const m = rec.#metric(row.name);
      if (m < 0) break;
      rec.#total[m] = row.total;
      rec.#last[m] = row.last;
      for (const r of RINGS) rec.#rings[r.name].counts.set(row[r.name].slice(0, r.size), m * r.size);
      const k = opts.readersPerMetric;
      row.readers.slice(0, k).forEach(([name, count, last], i) => {
        const id = rec.#reader(name);
        rec.#rdId[m * k + i] = id;
        rec.#rdCount[m * k + i] = count;
        rec.#rdLast[m * k + i] = last;
      });
    }
    for (const [name, reads, last] of s.readers) {
      const id = rec.#reader(name);
      rec.#readerReads[id]! += reads;
      rec.#readerLast[id] = Math.max(rec.#readerLast[id]!, last);
    }
    rec.untracked = s.counters.untracked;
    rec.patternReads = s.counters.patternReads;
    rec.invalidPatterns = s.counters.invalidPatterns;
    rec.advance(nowMs);
    return rec;
  }
}

function checkState(x: unknown): RecorderState {
  const fail = (what: string): never => {
    throw new TypeError(`${what}: invalid`);
  };
  const o = (x ?? {}) as Partial<RecorderState>;
  if (o.version !== 1) fail('version (want 1)');
  const num = (v: unknown, what: string) =>
    typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : fail(what);
  num(o.sinceMs, 'sinceMs');
  for (const r of RINGS) num(o.rings?.[r.name], `rings.${r.name}`);
  if (!Array.isArray(o.metrics)) fail('metrics');
  o.metrics!.forEach((m, i) => {
    if (typeof m?.name !== 'string' || m.name === '') fail(`metrics[${i}].name`);
    num(m.total, `metrics[${i}].total`);
    num(m.last, `metrics[${i}].last`);
    for (const r of RINGS) {
      const a = m[r.name];
      if (!Array.isArray(a) || a.length !== r.size) fail(`metrics[${i}].${r.name}`);
      for (const [j, v] of a.entries()) num(v, `metrics[${i}].${r.name}[${j}]`);
    }
    if (!Array.isArray(m.readers)) fail(`metrics[${i}].readers`);
    m.readers.forEach((r, j) => {
      if (!Array.isArray(r) || typeof r[0] !== 'string') fail(`metrics[${i}].readers[${j}]`);
      num(r[1], `metrics[${i}].readers[${j}][1]`);
      num(r[2], `metrics[${i}].readers[${j}][2]`);
    });
  });
  if (!Array.isArray(o.readers)) fail('readers');
  o.readers!.forEach((r, j) => {
    if (!Array.isArray(r) || typeof r[0] !== 'string') fail(`readers[${j}]`);
    num(r[1], `readers[${j}][1]`);
    num(r[2], `readers[${j}][2]`);
  });
  const c = o.counters ?? fail('counters');
  num(c.untracked, 'counters.untracked');
  num(c.patternReads, 'counters.patternReads');
  num(c.invalidPatterns, 'counters.invalidPatterns');
  return o as RecorderState;
}
