// The door check: what a receiver would refuse, found before the proxy acknowledges a request.
// With the durable queue a sender is answered before the upstream sees the data, so anything the
// upstream refuses later is lost to the sender; without the queue a 5xx refusal (Prometheus 2.42
// answers 500 to a duplicate label name or an empty label set) makes the sender retry forever.
//
// The rules are the label-set rules of remote-write 1.0 ("Labels") and 2.0 ("Series Labels"): a
// `__name__` label, label names that are valid and not repeated, names sorted lexicographically,
// no empty label name, UTF-8 everywhere; plus what Prometheus's TSDB refuses: an empty label set,
// a native histogram whose count does not match its buckets, and samples far from the proxy's
// clock (a sample at 2^62 ms moves a Prometheus head so far that every later write is "out of
// bounds").
//
// Labels that are merely unsorted are sorted here instead of refused: vmagent sends them in scrape
// order unless -sortLabels is set, and Prometheus sorts them on receipt, so refusing would break a
// sender that works against Prometheus. Sorting permutes whole label records (1.0) or reference
// pairs (2.0) inside the series, which keeps every length and offset of the body valid.
//
// Allocation-free on the common path (valid, sorted, ASCII labels, float samples); the details of
// a problem are put into words only for the first one.

import { decodeHistogram } from './proto.js';
import {
  afterValue,
  afterVarint,
  readLabelRefsV2,
  readLabelsV1,
  type SeriesIndex,
  varintAt,
} from './scan.js';

/** Why a series is refused. A fixed set: label values of the proxy's metrics. */
export type CheckReason =
  | 'missing_name'
  | 'invalid_name'
  | 'invalid_label_name'
  | 'duplicate_label'
  | 'unsorted_labels'
  | 'empty_labels'
  | 'invalid_utf8'
  | 'histogram_count'
  | 'too_new'
  | 'too_old';

export const CHECK_REASONS: readonly CheckReason[] = [
  'missing_name',
  'invalid_name',
  'invalid_label_name',
  'duplicate_label',
  'unsorted_labels',
  'empty_labels',
  'invalid_utf8',
  'histogram_count',
  'too_new',
  'too_old',
];

export interface CheckOptions {
  readonly nowMs: number;
  /** Samples more than this far ahead of `nowMs` are refused; 0 turns the check off. */
  readonly maxFutureMs: number;
  /** Samples more than this far behind `nowMs` are refused; 0 turns the check off. */
  readonly maxAgeMs: number;
  /**
   * legacy: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names `[a-zA-Z_][a-zA-Z0-9_]*`, what
   * Prometheus 2 stores and queries; utf8: any non-empty UTF-8 (remote-write 2.0, "Series Labels").
   */
  readonly names: 'legacy' | 'utf8';
  /** Use the quick paths for valid series of the common shape (default). Off only to test them. */
  readonly fastPath?: boolean;
}

export interface CheckProblem {
  readonly series: number;
  readonly reason: CheckReason;
  /** The field path and what is wrong, e.g. `timeseries[3].labels: duplicate label name "a"`. */
  readonly detail: string;
}

export interface CheckResult {
  /** The first problem, in words; undefined when every series passes. */
  readonly first: CheckProblem | undefined;
  /** Per series, 1 when it has a problem; undefined when none has. */
  readonly bad: Uint8Array | undefined;
  /** Series with problems, and their float and histogram samples, by reason. */
  readonly series: Partial<Record<CheckReason, number>>;
  readonly samples: Partial<Record<CheckReason, number>>;
  /** A copy of the body with unsorted label sets sorted; undefined when all were sorted. */
  readonly sorted: Buffer | undefined;
}

const NAME = Buffer.from('__name__');
const LEN = 2;

/**
 * Checks every series of a scanned request (`buf` as scanned into `index`). Series with problems
 * are reported, not removed; see withoutSeries.
 */
export function checkRequest(buf: Buffer, index: SeriesIndex, opts: CheckOptions): CheckResult {
  const v1 = index.version === 1;
  let first: CheckProblem | undefined;
  let bad: Uint8Array | undefined;
  let sorted: Buffer | undefined;
  const series: Partial<Record<CheckReason, number>> = {};
  const samples: Partial<Record<CheckReason, number>> = {};

  // Per-series state the visitors fill; one set of closures per request, not per series.
  let reason: CheckReason | undefined;
  let where = '';
  let count = 0;
  let hasName = false;
  let unsorted = false;
  let prevStart = -1;
  let prevEnd = -1;
  // Returns true, so that a visitor can `return problem(...)`; the visitors' results are ignored.
  const problem = (r: CheckReason, w: string): boolean => {
    if (reason === undefined) {
      reason = r;
      where = w;
    }
    return true;
  };
  const label = (ns: number, ne: number, vs: number, ve: number): boolean => {
    const k = count++;
    if (reason !== undefined) return true;
    if (ne === ns) return problem('invalid_label_name', `labels[${k}]: empty label name`);
    if (!utf8(buf, ns, ne) || !utf8(buf, vs, ve)) {
      return problem('invalid_utf8', `labels[${k}]: label name or value is not valid UTF-8`);
    }
    const isName = equalsAt(buf, ns, ne, NAME);
    if (isName) {
      hasName = true;
      if (ve === vs) return problem('missing_name', 'labels: __name__ is empty');
      if (opts.names === 'legacy' && !legacyName(buf, vs, ve, true)) {
        return problem('invalid_name', `labels[${k}]: metric name ${quote(buf, vs, ve)} is not valid`);
      }
    } else if (opts.names === 'legacy' && !legacyName(buf, ns, ne, false)) {
      return problem('invalid_label_name', `labels[${k}]: label name ${quote(buf, ns, ne)} is not valid`);
    }
    if (prevStart >= 0) {
      const c = compareAt(buf, prevStart, prevEnd, ns, ne);
      if (c === 0) return problem('duplicate_label', `labels: label name ${quote(buf, ns, ne)} is repeated`);
      if (c > 0) unsorted = true;
    }
    prevStart = ns;
    prevEnd = ne;
    return false;
  };
  // The visitors set `reason`; read it through a call, which the compiler does not narrow.
  const current = (): CheckReason | undefined => reason;
  const ref = (nameRef: number, valueRef: number): void => {
    label(
      index.symbolStart[nameRef]!,
      index.symbolEnd[nameRef]!,
      index.symbolStart[valueRef]!,
      index.symbolEnd[valueRef]!,
    );
  };

  const fast = opts.fastPath ?? true;
  const legacy = opts.names === 'legacy';
  const maxT = opts.maxFutureMs > 0 ? opts.nowMs + opts.maxFutureMs : Number.POSITIVE_INFINITY;
  const minT = opts.maxAgeMs > 0 ? opts.nowMs - opts.maxAgeMs : Number.NEGATIVE_INFINITY;
  if (fast && !v1) resetSymbolClasses(index.symbolCount);
  if (fast && v1) viewWords(buf);

  for (let i = 0; i < index.count; i++) {
    reason = undefined;
    const quick = !fast
      ? SLOW
      : v1
        ? quickLabelsV1(buf, index.labelsStart[i]!, index.labelsEnd[i]!, legacy)
        : quickLabelsV2(buf, index, index.labelsStart[i]!, index.labelsEnd[i]!, legacy);
    if (quick === SLOW) {
      count = 0;
      hasName = false;
      unsorted = false;
      prevStart = -1;
      prevEnd = -1;
      if (v1) readLabelsV1(buf, index, i, label);
      else readLabelRefsV2(buf, index, i, ref);
      if (reason === undefined && count === 0) problem('empty_labels', 'labels: the label set is empty');
      if (reason === undefined && !hasName) problem('missing_name', 'labels: no __name__ label');
    } else {
      unsorted = quick === UNSORTED;
    }
    if (reason === undefined && unsorted) {
      // Sorting: a repeated name may hide anywhere in an unsorted set.
      const dup = duplicateName(buf, index, i);
      if (dup !== undefined) problem('duplicate_label', `labels: label name ${dup} is repeated`);
      else {
        sorted ??= Buffer.from(buf);
        if (!sortLabels(sorted, index, i)) {
          problem('unsorted_labels', 'labels: not sorted by name, and split over several records');
        }
      }
    }
    if (
      current() === undefined &&
      !(
        fast &&
        index.labelsStart[i] === seriesPayload(buf, index, i) &&
        quickSamples(buf, index.labelsEnd[i]!, index.end[i]!, minT, maxT)
      )
    )
      checkSamples(buf, index, i, opts, problem);
    const r = current();
    if (r === undefined) continue;
    bad ??= new Uint8Array(index.count);
    bad[i] = 1;
    series[r] = (series[r] ?? 0) + 1;
    samples[r] = (samples[r] ?? 0) + index.samples[i]! + index.histograms[i]!;
    first ??= { series: i, reason: r, detail: `timeseries[${i}] ${describeSeries(buf, index, i)}: ${where}` };
  }
  return { first, bad, series, samples, sorted };
}

// Quick paths. Nearly every series a sender writes is valid, and has the shape the scanner's fast
// path accepts: Label records of exactly a name and a value (1.0) or one packed labels_refs record
// (2.0), then Sample records of a double and a varint timestamp. For such a series these functions
// answer "valid" (sorted or not) in straight-line code over the bytes: a class table for legacy
// names, an ASCII loop before full UTF-8 decoding, and in 2.0 each symbol classified once per
// request instead of once per reference. On anything else (another shape, any problem) they answer
// SLOW, and the full check above runs on that series: it alone puts problems into words, so every
// refusal and its message are the full check's. The unit test runs both over the same bodies.

const OK = 0;
const UNSORTED = 1;
const SLOW = 2;

// Byte classes for legacy names: `[a-zA-Z_]` first and `[a-zA-Z0-9_]` after for label names, the
// same with `:` for metric names (legacyName is the reference).
const LABEL_FIRST = 1;
const LABEL_NEXT = 2;
const METRIC_FIRST = 4;
const METRIC_NEXT = 8;
const CLASSES = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
  const digit = c >= 0x30 && c <= 0x39;
  CLASSES[c] =
    (letter ? LABEL_FIRST | LABEL_NEXT | METRIC_FIRST | METRIC_NEXT : 0) |
    (digit ? LABEL_NEXT | METRIC_NEXT : 0) |
    (c === 0x3a ? METRIC_FIRST | METRIC_NEXT : 0);
}

/** Whether buf[from, to) is non-empty, its first byte of class `first` and the rest of `next`. */
function classed(buf: Uint8Array, from: number, to: number, first: number, next: number): boolean {
  if (to === from || (CLASSES[buf[from]!]! & first) === 0) return false;
  for (let p = from + 1; p < to; p++) if ((CLASSES[buf[p]!]! & next) === 0) return false;
  return true;
}

/** utf8(), with a loop for the ASCII prefix, which is all of nearly every label. */
function text(buf: Uint8Array, from: number, to: number): boolean {
  for (let p = from; p < to; p++) if (buf[p]! >= 0x80) return utf8(buf, p, to);
  return true;
}

// The request body as 32-bit words, for ascii(): `words[k]` holds body bytes
// [4k - wordsShift, 4k - wordsShift + 4). Set per request by viewWords.
let words: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
let wordsShift = 0;

function viewWords(buf: Uint8Array): void {
  wordsShift = buf.byteOffset & 3;
  const base = buf.byteOffset - wordsShift;
  words = new Uint32Array(buf.buffer, base, (buf.byteOffset + buf.length - base) >>> 2);
}

/**
 * Whether buf[from, to) (the body viewWords was given) has no byte of 0x80 or more: four bytes a
 * load, the unaligned ends and the bytes past the last whole word one by one.
 */
function ascii(buf: Uint8Array, from: number, to: number): boolean {
  let any = 0;
  let p = from;
  for (; p < to && ((p + wordsShift) & 3) !== 0; p++) any |= buf[p]!;
  const lastWord = Math.min((to + wordsShift) >>> 2, words.length);
  let w = (p + wordsShift) >>> 2;
  for (; w < lastWord; w++) any |= words[w]!;
  for (p = Math.max(p, 4 * w - wordsShift); p < to; p++) any |= buf[p]!;
  return (any & 0x80808080) === 0;
}

/** Whether the 8 bytes at `at` are `__name__`. */
function isNameAt(buf: Uint8Array, at: number): boolean {
  for (let k = 0; k < 8; k++) if (buf[at + k] !== NAME[k]) return false;
  return true;
}

// Where quickLen leaves the position after the varint it read.
let after = 0;

/** The varint at `pos` of a scanned buffer (a length or a reference); sets `after`. */
function quickLen(buf: Uint8Array, pos: number): number {
  const b = buf[pos]!;
  if (b < 0x80) {
    after = pos + 1;
    return b;
  }
  after = afterVarint(buf, pos);
  return varintAt(buf, pos);
}

/** The labels region buf[from, to) of a 1.0 series: OK, UNSORTED (otherwise valid) or SLOW. */
function quickLabelsV1(buf: Uint8Array, from: number, to: number, legacy: boolean): number {
  // A region without a byte of 0x80 or more holds only ASCII text (and one-byte lengths): then no
  // name or value needs its own UTF-8 check.
  const anyText = !ascii(buf, from, to);
  let prevStart = -1;
  let prevEnd = -1;
  let hasName = false;
  let unsorted = false;
  for (let p = from; p < to; ) {
    if (buf[p] !== 0x0a) return SLOW;
    // Lengths below 128 are one byte; the varint readers only for longer ones.
    let len = buf[p + 1]!;
    let ns = p + 2;
    if (len >= 0x80) {
      len = varintAt(buf, p + 1);
      ns = afterVarint(buf, p + 1);
    }
    const recordEnd = ns + len;
    if (ns >= recordEnd || buf[ns] !== 0x0a) return SLOW;
    let nameLen = buf[ns + 1]!;
    if (nameLen >= 0x80) {
      nameLen = varintAt(buf, ns + 1);
      ns = afterVarint(buf, ns + 1);
    } else ns += 2;
    const ne = ns + nameLen;
    if (ne >= recordEnd || buf[ne] !== 0x12) return SLOW;
    let valueLen = buf[ne + 1]!;
    let vs = ne + 2;
    if (valueLen >= 0x80) {
      valueLen = varintAt(buf, ne + 1);
      vs = afterVarint(buf, ne + 1);
    }
    const ve = vs + valueLen;
    if (ve !== recordEnd || ne === ns) return SLOW;
    if (nameLen === 8 && isNameAt(buf, ns)) {
      hasName = true;
      if (ve === vs) return SLOW;
      if (legacy ? !classed(buf, vs, ve, METRIC_FIRST, METRIC_NEXT) : anyText && !text(buf, vs, ve))
        return SLOW;
    } else {
      if (legacy ? !classed(buf, ns, ne, LABEL_FIRST, LABEL_NEXT) : anyText && !text(buf, ns, ne))
        return SLOW;
      if (anyText && !text(buf, vs, ve)) return SLOW;
    }
    if (prevStart >= 0) {
      const c = compareAt(buf, prevStart, prevEnd, ns, ne);
      if (c === 0) return SLOW;
      if (c > 0) unsorted = true;
    }
    prevStart = ns;
    prevEnd = ne;
    p = recordEnd;
  }
  if (!hasName) return SLOW;
  return unsorted ? UNSORTED : OK;
}

// 2.0 symbols, classified on first use in a request: KNOWN once classified, then what they are.
const KNOWN = 1;
const TEXT = 2;
const LABEL_NAME = 4;
const METRIC_NAME = 8;
const IS_NAME = 16;
const EMPTY = 32;
let symbolClasses = new Uint8Array(1024);

function resetSymbolClasses(count: number): void {
  if (symbolClasses.length < count) symbolClasses = new Uint8Array(Math.max(count, 2 * symbolClasses.length));
  else symbolClasses.fill(0, 0, count);
}

function symbolClass(buf: Uint8Array, index: SeriesIndex, k: number): number {
  const known = symbolClasses[k]!;
  if (known !== 0) return known;
  const s = index.symbolStart[k]!;
  const e = index.symbolEnd[k]!;
  const c =
    KNOWN |
    (text(buf, s, e) ? TEXT : 0) |
    (classed(buf, s, e, LABEL_FIRST, LABEL_NEXT) ? LABEL_NAME : 0) |
    (classed(buf, s, e, METRIC_FIRST, METRIC_NEXT) ? METRIC_NAME : 0) |
    (e - s === 8 && isNameAt(buf, s) ? IS_NAME : 0) |
    (e === s ? EMPTY : 0);
  symbolClasses[k] = c;
  return c;
}

/** The labels region buf[from, to) of a 2.0 series: OK, UNSORTED (otherwise valid) or SLOW. */
function quickLabelsV2(
  buf: Uint8Array,
  index: SeriesIndex,
  from: number,
  to: number,
  legacy: boolean,
): number {
  if (from >= to || buf[from] !== 0x0a) return SLOW;
  const len = quickLen(buf, from + 1);
  if (after + len !== to) return SLOW;
  let prev = -1;
  let hasName = false;
  let unsorted = false;
  for (let p = after; p < to; ) {
    const n = quickLen(buf, p);
    const v = quickLen(buf, after);
    p = after;
    const cn = symbolClass(buf, index, n);
    const cv = symbolClass(buf, index, v);
    if ((cn & (TEXT | EMPTY)) !== TEXT || (cv & TEXT) === 0) return SLOW;
    if ((cn & IS_NAME) !== 0) {
      hasName = true;
      if ((cv & EMPTY) !== 0 || (legacy && (cv & METRIC_NAME) === 0)) return SLOW;
    } else if (legacy && (cn & LABEL_NAME) === 0) return SLOW;
    if (prev >= 0) {
      const c =
        prev === n
          ? 0
          : compareAt(
              buf,
              index.symbolStart[prev]!,
              index.symbolEnd[prev]!,
              index.symbolStart[n]!,
              index.symbolEnd[n]!,
            );
      if (c === 0) return SLOW;
      if (c > 0) unsorted = true;
    }
    prev = n;
  }
  if (!hasName) return SLOW;
  return unsorted ? UNSORTED : OK;
}

/**
 * Whether buf[from, to), the rest of a series after its labels, is only Sample records of the
 * common shape whose timestamps lie within [minT, maxT]. False leaves it to checkSamples.
 */
function quickSamples(buf: Uint8Array, from: number, to: number, minT: number, maxT: number): boolean {
  for (let p = from; p < to; ) {
    if (buf[p] !== 0x12) return false;
    const len = quickLen(buf, p + 1);
    const end = after + len;
    let q = after;
    if (q < end && buf[q] === 0x09) q += 9;
    let t = 0;
    if (q < end && buf[q] === 0x10) {
      // At most 7 bytes (49 bits), exact in a double; longer ones (and negative) are checkSamples'.
      let scale = 1;
      let b: number;
      const limit = q + 8;
      q++;
      do {
        b = buf[q++]!;
        t += (b & 0x7f) * scale;
        scale *= 128;
      } while (b >= 0x80 && q < limit);
      if (b >= 0x80) return false;
    }
    if (q !== end || t > maxT || t < minT) return false;
    p = end;
  }
  return true;
}

/**
 * The request without the series marked in `bad`: their top-level records are cut out. Symbols of
 * a 2.0 request stay, so the other series' references remain valid.
 */
export function withoutSeries(buf: Uint8Array, index: SeriesIndex, bad: Uint8Array): Buffer {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < index.count; i++) {
    if (bad[i] !== 1) continue;
    parts.push(buf.subarray(from, index.start[i]!));
    from = index.end[i]!;
  }
  parts.push(buf.subarray(from));
  return Buffer.concat(parts);
}

function seriesPayload(buf: Uint8Array, index: SeriesIndex, i: number): number {
  return afterVarint(buf, afterVarint(buf, index.start[i]!));
}

/** Samples' and histograms' timestamps within the window; histograms' counts consistent. */
function checkSamples(
  buf: Buffer,
  index: SeriesIndex,
  i: number,
  opts: CheckOptions,
  problem: (r: CheckReason, w: string) => boolean,
): boolean {
  const histField = index.version === 1 ? 4 : 3;
  const maxT = opts.maxFutureMs > 0 ? opts.nowMs + opts.maxFutureMs : Number.POSITIVE_INFINITY;
  const minT = opts.maxAgeMs > 0 ? opts.nowMs - opts.maxAgeMs : Number.NEGATIVE_INFINITY;
  const end = index.end[i]!;
  let s = 0;
  let h = 0;
  for (let pos = seriesPayload(buf, index, i); pos < end; ) {
    const tag = varintAt(buf, pos);
    const value = afterVarint(buf, pos);
    pos = afterValue(buf, value, tag & 7);
    const field = tag >>> 3;
    if ((tag & 7) !== LEN || (field !== 2 && field !== histField)) continue;
    const from = afterVarint(buf, value);
    if (field === 2) {
      const t = sampleTimestamp(buf, from, pos);
      // The field path is put into words only for a problem: this runs for every sample.
      const k = s++;
      if (t > maxT)
        return problem(
          'too_new',
          `samples[${k}].timestamp: ${t} is more than ${opts.maxFutureMs} ms ahead of the proxy's clock`,
        );
      if (t < minT)
        return problem(
          'too_old',
          `samples[${k}].timestamp: ${t} is more than ${opts.maxAgeMs} ms behind the proxy's clock`,
        );
      continue;
    }
    const hist = decodeHistogram(buf.subarray(from, pos));
    const at = `histograms[${h++}]`;
    if (hist.timestamp > maxT)
      return problem(
        'too_new',
        `${at}.timestamp: ${hist.timestamp} is more than ${opts.maxFutureMs} ms ahead of the proxy's clock`,
      );
    if (hist.timestamp < minT)
      return problem(
        'too_old',
        `${at}.timestamp: ${hist.timestamp} is more than ${opts.maxAgeMs} ms behind the proxy's clock`,
      );
    const bad = histogramProblem(hist);
    if (bad !== undefined) return problem('histogram_count', `${at}: ${bad}`);
  }
  return false;
}

/** The timestamp (field 2, int64) of a Sample payload buf[from, to). */
function sampleTimestamp(buf: Uint8Array, from: number, to: number): number {
  let t = 0;
  for (let p = from; p < to; ) {
    const tag = buf[p++]!;
    if (tag === 0x10) {
      const to = afterVarint(buf, p);
      if (to - p <= 7) {
        t = varintAt(buf, p);
      } else {
        // Beyond 2^49, and int64 two's complement: a negative timestamp is a 10-byte varint of
        // 2^64 + t, which a double cannot hold exactly.
        let v = 0n;
        for (let k = to - 1; k >= p; k--) v = (v << 7n) | BigInt(buf[k]! & 0x7f);
        t = Number(BigInt.asIntN(64, v));
      }
      p = to;
    } else {
      p = afterValue(buf, p, tag & 7);
    }
  }
  return t;
}

interface HistogramLike {
  countInt?: number;
  countFloat?: number;
  sum: number;
  zeroCountInt?: number;
  zeroCountFloat?: number;
  negativeSpans: { length: number }[];
  negativeDeltas: number[];
  negativeCounts: number[];
  positiveSpans: { length: number }[];
  positiveDeltas: number[];
  positiveCounts: number[];
}

/**
 * What Prometheus's TSDB checks of a native histogram before it stores one: as many bucket counts
 * as the spans say, no negative bucket count, and the observations in the buckets (zero bucket
 * included) equal to the count, or not above it when the sum is NaN (NaN observations are in the
 * count, in no bucket). Float histograms only must not exceed the count. Undefined when consistent.
 */
export function histogramProblem(h: HistogramLike): string | undefined {
  const isFloat =
    h.positiveCounts.length > 0 ||
    h.negativeCounts.length > 0 ||
    (h.countFloat ?? 0) > 0 ||
    (h.zeroCountFloat ?? 0) > 0;
  let inBuckets = isFloat ? (h.zeroCountFloat ?? 0) : (h.zeroCountInt ?? 0);
  for (const [side, spans, deltas, counts] of [
    ['negative', h.negativeSpans, h.negativeDeltas, h.negativeCounts],
    ['positive', h.positiveSpans, h.positiveDeltas, h.positiveCounts],
  ] as const) {
    let want = 0;
    for (const sp of spans) want += sp.length;
    const got = isFloat ? counts.length : deltas.length;
    if (got !== want) return `${side} spans cover ${want} buckets, but ${got} bucket counts are given`;
    let abs = 0;
    for (let k = 0; k < got; k++) {
      if (!isFloat) abs += deltas[k]!;
      const c = isFloat ? counts[k]! : abs;
      if (c < 0) return `${side} bucket ${k} has the negative count ${c}`;
      inBuckets += c;
    }
  }
  const count = isFloat ? (h.countFloat ?? 0) : (h.countInt ?? 0);
  if (isFloat || Number.isNaN(h.sum)) {
    if (inBuckets > count * (1 + 1e-9))
      return `${inBuckets} observations in buckets, but the count is ${count}`;
  } else if (inBuckets !== count) {
    return `${inBuckets} observations in buckets, but the count is ${count}`;
  }
  return undefined;
}

/** Whether buf[from, to) is valid UTF-8 (RFC 3629: no overlongs, surrogates or values past U+10FFFF). */
function utf8(buf: Uint8Array, from: number, to: number): boolean {
  let p = from;
  while (p < to) {
    const b = buf[p]!;
    if (b < 0x80) {
      p++;
      continue;
    }
    let n: number;
    let min: number;
    let cp: number;
    if (b >= 0xc2 && b <= 0xdf) {
      n = 1;
      min = 0x80;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      min = 0x800;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      min = 0x10000;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (p + n >= to) return false;
    for (let k = 1; k <= n; k++) {
      const c = buf[p + k]!;
      if ((c & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += n + 1;
  }
  return true;
}

function legacyName(buf: Uint8Array, from: number, to: number, metric: boolean): boolean {
  if (to === from) return false;
  for (let p = from; p < to; p++) {
    const c = buf[p]!;
    const letter =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || (metric && c === 0x3a);
    if (letter) continue;
    if (p > from && c >= 0x30 && c <= 0x39) continue;
    return false;
  }
  return true;
}

function equalsAt(buf: Uint8Array, from: number, to: number, want: Uint8Array): boolean {
  if (to - from !== want.length) return false;
  for (let k = 0; k < want.length; k++) if (buf[from + k] !== want[k]) return false;
  return true;
}

/** Byte-wise comparison of buf[as, ae) and buf[bs, be): UTF-8 order is code-point order. */
function compareAt(buf: Uint8Array, as: number, ae: number, bs: number, be: number): number {
  const n = Math.min(ae - as, be - bs);
  for (let k = 0; k < n; k++) {
    const d = buf[as + k]! - buf[bs + k]!;
    if (d !== 0) return d;
  }
  return ae - as - (be - bs);
}

function quote(buf: Buffer, from: number, to: number): string {
  const s = buf.toString('utf8', from, Math.min(to, from + 100));
  return JSON.stringify(to - from > 100 ? `${s}...` : s);
}

interface LabelRange {
  ns: number;
  ne: number;
  /** The bytes to move: the whole Label record (1.0) or the two varints of the pair (2.0). */
  rs: number;
  re: number;
}

/** The series' labels as ranges of `buf`, in wire order; undefined if they are split or interleaved. */
function labelRanges(buf: Uint8Array, index: SeriesIndex, i: number): LabelRange[] | undefined {
  const out: LabelRange[] = [];
  const start = index.labelsStart[i]!;
  const end = index.labelsEnd[i]!;
  if (index.version === 1) {
    for (let pos = start; pos < end; ) {
      const tag = varintAt(buf, pos);
      if (tag !== 0x0a) return undefined;
      const len = afterVarint(buf, pos + 1);
      const to = len + varintAt(buf, pos + 1);
      let ns = to;
      let ne = to;
      for (let p = len; p < to; ) {
        const t = varintAt(buf, p);
        p = afterVarint(buf, p);
        if (t === 0x0a) {
          ns = afterVarint(buf, p);
          ne = ns + varintAt(buf, p);
        }
        p = afterValue(buf, p, t & 7);
      }
      out.push({ ns, ne, rs: pos, re: to });
      pos = to;
    }
    return out;
  }
  // 2.0: one packed labels_refs record holding all pairs, as every sender writes it.
  if (buf[start] !== 0x0a) return undefined;
  const from = afterVarint(buf, start + 1);
  const to = from + varintAt(buf, start + 1);
  if (to !== end) return undefined;
  for (let p = from; p < to; ) {
    const rs = p;
    const name = varintAt(buf, p);
    p = afterVarint(buf, afterVarint(buf, p));
    out.push({ ns: index.symbolStart[name]!, ne: index.symbolEnd[name]!, rs, re: p });
  }
  return out;
}

function duplicateName(buf: Buffer, index: SeriesIndex, i: number): string | undefined {
  const names: string[] = [];
  if (index.version === 1)
    readLabelsV1(buf, index, i, (ns, ne) => names.push(buf.toString('latin1', ns, ne)));
  else
    readLabelRefsV2(buf, index, i, (n) =>
      names.push(buf.toString('latin1', index.symbolStart[n]!, index.symbolEnd[n]!)),
    );
  names.sort();
  for (let k = 1; k < names.length; k++) {
    if (names[k] === names[k - 1]) return JSON.stringify(Buffer.from(names[k]!, 'latin1').toString('utf8'));
  }
  return undefined;
}

/**
 * Sorts the labels of series `i` in `out` (a copy of the scanned buffer, so the ranges read from it
 * are still those of the scan) by permuting their bytes in place. False when the labels are split
 * or interleaved with other fields, which no known sender does.
 */
function sortLabels(out: Buffer, index: SeriesIndex, i: number): boolean {
  const ranges = labelRanges(out, index, i);
  if (ranges === undefined) return false;
  const names = out; // 2.0 names live in the symbols, which sorting does not move.
  ranges.sort((a, b) => compareAt(names, a.ns, a.ne, b.ns, b.ne));
  const bytes = Buffer.concat(ranges.map((r) => Buffer.from(out.subarray(r.rs, r.re))));
  const at = index.version === 1 ? index.labelsStart[i]! : afterVarint(out, index.labelsStart[i]! + 1);
  bytes.copy(out, at);
  return true;
}

/** `{__name__="x", a="b"}` of series `i`, bounded, for a message. */
function describeSeries(buf: Buffer, index: SeriesIndex, i: number): string {
  const pairs: string[] = [];
  const add = (ns: number, ne: number, vs: number, ve: number) => {
    if (pairs.length < 12)
      pairs.push(`${buf.toString('utf8', ns, Math.min(ne, ns + 60))}=${quote(buf, vs, ve)}`);
  };
  if (index.version === 1) readLabelsV1(buf, index, i, add);
  else
    readLabelRefsV2(buf, index, i, (n, v) =>
      add(index.symbolStart[n]!, index.symbolEnd[n]!, index.symbolStart[v]!, index.symbolEnd[v]!),
    );
  return `{${pairs.join(', ')}}`;
}
