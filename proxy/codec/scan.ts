// The hot-path scanner: one pass over a decoded (decompressed) remote-write body that validates its
// protobuf structure and records, per series, byte offsets into the body. Nothing is decoded into
// objects and no strings are made; the only allocations are one state object per request and the
// doubling growth of the index's typed arrays, which a caller reuses across requests via `into`.
//
// Protobuf encoding facts this relies on (protobuf.dev, "Encoding"):
// - A message is a sequence of records `tag value`; the tag is a varint `field_number << 3 | wire_type`.
//   Field numbers are 1..2^29-1, so a valid tag is below 2^32.
// - Wire types: 0 VARINT, 1 I64 (8 bytes little-endian), 2 LEN (varint length, then that many
//   bytes), 3/4 SGROUP/EGROUP (deprecated groups; neither remote-write schema has any, so they are
//   rejected), 5 I32 (4 bytes). 6 and 7 do not exist.
// - A varint is at most 10 bytes: 7 bits per byte, least significant group first, high bit set on
//   every byte but the last.
// - Records may come in any order and a repeated field may be interleaved with others; a parser
//   must skip unknown fields and accept a repeated scalar both packed (one LEN record holding
//   concatenated values) and unpacked (one record per value), even split over several records.
//
// Validation is structural (MALFORMED_PROTOBUF) plus the references remote-write 2.0 defines
// ("Symbols" and "Labels" sections of the 2.0 spec), which are INVALID_WRITE_REQUEST: symbols[0]
// must be the empty string, every label and exemplar label reference and every metadata help/unit
// reference must index into symbols, and label reference lists have an even length. A reference
// whose varint does not fit in 32 bits is reported as out of range rather than truncated as some
// decoders do. Label names, sorting and duplicates are the pipeline's business, not this file's.

import { CardinalError, type ErrorCode } from '../errors.js';

/**
 * Where every series of one request lives in its decoded body. All offsets are byte offsets into
 * the buffer that was scanned; the caller must keep that buffer unchanged while using the index.
 */
export interface SeriesIndex {
  version: 1 | 2;
  /** Number of TimeSeries; only the first `count` entries of the per-series arrays are meaningful. */
  count: number;
  /** Offset of the tag of the top-level TimeSeries record, so that `subarray(start, end)` is a complete record. */
  start: Int32Array;
  /** One past the end of that record. */
  end: Int32Array;
  /**
   * The labels region: from the tag of the first labels record (v1 `labels`, v2 `labels_refs`) to
   * one past the end of the last one; empty (start === end) for a series without labels. It holds
   * whole records, not a bare payload, because protobuf lets a sender split or interleave them. Every
   * sender we know writes labels first and contiguously, and a v2 sender writes one packed record,
   * but when records are interleaved the region also holds other fields: read it with
   * `readLabelsV1`/`readLabelRefsV2`, which skip those. For v1 the region bytes are a sound cache key
   * for the label set (interleaved fields only cost cache misses); for v2 they hold request-local
   * symbol indices.
   */
  labelsStart: Int32Array;
  labelsEnd: Int32Array;
  /** Per-series counts of Sample, Histogram and Exemplar records. */
  samples: Int32Array;
  histograms: Int32Array;
  exemplars: Int32Array;
  totalSamples: number;
  totalHistograms: number;
  totalExemplars: number;
  /** v1: number of top-level MetricMetadata records. v2: number of series carrying a metadata field. */
  metadataCount: number;
  /** v2 only (0 for v1): the symbols table, as payload offsets of each string. */
  symbolCount: number;
  symbolStart: Int32Array;
  symbolEnd: Int32Array;
}

/** Makes an empty index; pass it as `into` to reuse its arrays across requests. */
export function createSeriesIndex(capacity = 64): SeriesIndex {
  const n = Math.max(1, capacity);
  return {
    version: 1,
    count: 0,
    start: new Int32Array(n),
    end: new Int32Array(n),
    labelsStart: new Int32Array(n),
    labelsEnd: new Int32Array(n),
    samples: new Int32Array(n),
    histograms: new Int32Array(n),
    exemplars: new Int32Array(n),
    totalSamples: 0,
    totalHistograms: 0,
    totalExemplars: 0,
    metadataCount: 0,
    symbolCount: 0,
    symbolStart: new Int32Array(n),
    symbolEnd: new Int32Array(n),
  };
}

// Wire types.
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const SGROUP = 3;
const EGROUP = 4;
const I32 = 5;

// How the scanner checks a known field.
const K_VARINT = 0; // integer or enum: wire type 0
const K_I64 = 1; // double: wire type 1
const K_BYTES = 2; // string: wire type 2, content not inspected
const K_MESSAGE = 3; // embedded message: wire type 2, scanned recursively
const K_PACKED_VARINT = 4; // repeated integer: packed (2) or one value per record (0)
const K_PACKED_I64 = 5; // repeated double: packed (2, length a multiple of 8) or one per record (1)
const K_SYMREF = 6; // uint32 index into symbols: wire type 0
const K_SYMREFS = 7; // repeated uint32 indices into symbols, packed or not; even count in total

interface FieldSpec {
  readonly name: string;
  readonly kind: number;
  readonly message?: MessageSpec;
  readonly repeated: boolean;
}

interface MessageSpec {
  /** Indexed by field number; holes are unknown fields. */
  readonly fields: readonly (FieldSpec | undefined)[];
  /** Whether per-field occurrence counters are needed (embedded messages or reference lists). */
  readonly counted: boolean;
  /** K_SYMREFS fields whose total element count must be even. */
  readonly pairFields: readonly number[];
  /** The field whose records make up the labels region, or -1. */
  readonly regionField: number;
}

function field(name: string, kind: number, repeated = false, message?: MessageSpec): FieldSpec {
  return message === undefined ? { name, kind, repeated } : { name, kind, repeated, message };
}

function spec(byNumber: Record<number, FieldSpec>, regionField = -1): MessageSpec {
  const fields: (FieldSpec | undefined)[] = [];
  let counted = false;
  const pairFields: number[] = [];
  for (const [key, f] of Object.entries(byNumber)) {
    const n = Number(key);
    fields[n] = f;
    if (f.kind === K_MESSAGE || f.kind === K_SYMREFS) counted = true;
    if (f.kind === K_SYMREFS) pairFields.push(n);
  }
  for (let n = 0; n < fields.length; n++) fields[n] ??= undefined;
  return Object.freeze({ fields: Object.freeze(fields), counted, pairFields, regionField });
}

// Schemas, field numbers from prometheus/prometheus prompb/types.proto, prompb/remote.proto (1.0)
// and prompb/io/prometheus/write/v2/types.proto (2.0).
const SAMPLE = spec({ 1: field('value', K_I64), 2: field('timestamp', K_VARINT) });
const BUCKET_SPAN = spec({ 1: field('offset', K_VARINT), 2: field('length', K_VARINT) });
// Histogram is the same message in both versions.
const HISTOGRAM = spec({
  1: field('count_int', K_VARINT),
  2: field('count_float', K_I64),
  3: field('sum', K_I64),
  4: field('schema', K_VARINT),
  5: field('zero_threshold', K_I64),
  6: field('zero_count_int', K_VARINT),
  7: field('zero_count_float', K_I64),
  8: field('negative_spans', K_MESSAGE, true, BUCKET_SPAN),
  9: field('negative_deltas', K_PACKED_VARINT, true),
  10: field('negative_counts', K_PACKED_I64, true),
  11: field('positive_spans', K_MESSAGE, true, BUCKET_SPAN),
  12: field('positive_deltas', K_PACKED_VARINT, true),
  13: field('positive_counts', K_PACKED_I64, true),
  14: field('reset_hint', K_VARINT),
  15: field('timestamp', K_VARINT),
  16: field('custom_values', K_PACKED_I64, true),
});
const LABEL = spec({ 1: field('name', K_BYTES), 2: field('value', K_BYTES) });
const EXEMPLAR_V1 = spec({
  1: field('labels', K_MESSAGE, true, LABEL),
  2: field('value', K_I64),
  3: field('timestamp', K_VARINT),
});
const SERIES_V1 = spec(
  {
    1: field('labels', K_MESSAGE, true, LABEL),
    2: field('samples', K_MESSAGE, true, SAMPLE),
    3: field('exemplars', K_MESSAGE, true, EXEMPLAR_V1),
    4: field('histograms', K_MESSAGE, true, HISTOGRAM),
  },
  1,
);
const METADATA_V1 = spec({
  1: field('type', K_VARINT),
  2: field('metric_family_name', K_BYTES),
  4: field('help', K_BYTES),
  5: field('unit', K_BYTES),
});
const EXEMPLAR_V2 = spec({
  1: field('labels_refs', K_SYMREFS, true),
  2: field('value', K_I64),
  3: field('timestamp', K_VARINT),
});
const METADATA_V2 = spec({
  1: field('type', K_VARINT),
  3: field('help_ref', K_SYMREF),
  4: field('unit_ref', K_SYMREF),
});
const SERIES_V2 = spec(
  {
    1: field('labels_refs', K_SYMREFS, true),
    2: field('samples', K_MESSAGE, true, SAMPLE),
    3: field('histograms', K_MESSAGE, true, HISTOGRAM),
    4: field('exemplars', K_MESSAGE, true, EXEMPLAR_V2),
    5: field('metadata', K_MESSAGE, false, METADATA_V2),
    6: field('created_timestamp', K_VARINT),
  },
  1,
);

// Occurrence counters: one row of SLOTS per nesting depth. The schemas nest at most four deep
// (request, series, exemplar, label) and use field numbers up to 16.
const SLOTS = 17;
const MAX_DEPTH = 6;

/** Per-request scratch. `next` is the position after the last varint read. */
interface ScanState {
  root: string;
  next: number;
  symbolCount: number;
  depth: number;
  names: string[];
  indices: Int32Array;
  occ: Int32Array;
  regionStart: number;
  regionEnd: number;
}

function newState(root: string): ScanState {
  return {
    root,
    next: 0,
    symbolCount: 0,
    depth: 0,
    names: new Array<string>(MAX_DEPTH).fill(''),
    indices: new Int32Array(MAX_DEPTH),
    occ: new Int32Array(MAX_DEPTH * SLOTS),
    regionStart: -1,
    regionEnd: -1,
  };
}

// Error text. Only runs when a request is rejected, so it may build strings freely.
function path(st: ScanState, leaf?: string): string {
  let out = '';
  for (let d = 0; d < st.depth; d++) {
    const index = st.indices[d]!;
    out += `${d === 0 ? '' : '.'}${st.names[d]}${index >= 0 ? `[${index}]` : ''}`;
  }
  if (leaf !== undefined) out += out === '' ? leaf : `.${leaf}`;
  return out === '' ? st.root : out;
}

function fail(st: ScanState, code: ErrorCode, leaf: string | undefined, what: string): CardinalError {
  return new CardinalError(code, `${path(st, leaf)}: ${what}`);
}

function readVarint(st: ScanState, buf: Uint8Array, pos: number, end: number): number {
  if (pos < end) {
    const b = buf[pos]!;
    if (b < 0x80) {
      st.next = pos + 1;
      return b;
    }
  }
  // Float arithmetic: exact below 2^53, merely huge above, which every caller treats as invalid.
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const p = pos + i;
    if (p >= end) throw fail(st, 'MALFORMED_PROTOBUF', undefined, `truncated varint at byte ${pos}`);
    const b = buf[p]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      st.next = p + 1;
      return value;
    }
    scale *= 128;
  }
  throw fail(st, 'MALFORMED_PROTOBUF', undefined, `varint longer than 10 bytes at byte ${pos}`);
}

/** Reads a LEN record's length at `pos` and returns the end of its payload; `st.next` is its start. */
function readLength(st: ScanState, buf: Uint8Array, pos: number, end: number, name: string): number {
  const len = readVarint(st, buf, pos, end);
  const left = end - st.next;
  if (len > left) {
    throw fail(st, 'MALFORMED_PROTOBUF', name, `length ${len} exceeds the ${left} bytes left at byte ${pos}`);
  }
  return st.next + len;
}

function skipFixed(st: ScanState, pos: number, end: number, size: number, name: string): number {
  if (pos + size > end) {
    throw fail(st, 'MALFORMED_PROTOBUF', name, `${size}-byte value truncated at byte ${pos}`);
  }
  return pos + size;
}

function skipUnknown(
  st: ScanState,
  buf: Uint8Array,
  pos: number,
  end: number,
  tag: number,
  tagAt: number,
): number {
  const name = `field ${tag >>> 3}`;
  switch (tag & 7) {
    case VARINT:
      readVarint(st, buf, pos, end);
      return st.next;
    case I64:
      return skipFixed(st, pos, end, 8, name);
    case LEN:
      return readLength(st, buf, pos, end, name);
    case I32:
      return skipFixed(st, pos, end, 4, name);
    case SGROUP:
    case EGROUP:
      throw fail(
        st,
        'MALFORMED_PROTOBUF',
        name,
        `group wire type ${tag & 7} is not supported at byte ${tagAt}`,
      );
    default:
      throw fail(st, 'MALFORMED_PROTOBUF', name, `invalid wire type ${tag & 7} at byte ${tagAt}`);
  }
}

/** Reads a tag and rejects field number 0 and tags that cannot hold a field number. */
function readTag(st: ScanState, buf: Uint8Array, pos: number, end: number): number {
  const tag = readVarint(st, buf, pos, end);
  if (tag < 8 || tag > 0xffffffff) {
    throw fail(
      st,
      'MALFORMED_PROTOBUF',
      undefined,
      `invalid field number ${Math.floor(tag / 8)} at byte ${pos}`,
    );
  }
  return tag;
}

function wrongWire(st: ScanState, f: FieldSpec, wt: number, expected: string, tagAt: number): CardinalError {
  return fail(st, 'MALFORMED_PROTOBUF', f.name, `wire type ${wt}, expected ${expected} at byte ${tagAt}`);
}

function checkRef(st: ScanState, value: number, at: number, leaf: string): void {
  if (value >= st.symbolCount) {
    throw new CardinalError(
      'INVALID_WRITE_REQUEST',
      `${path(st, leaf)}=${value} out of range (symbols: ${st.symbolCount}) at byte ${at}`,
    );
  }
}

/** Validates the message payload buf[start, end) against `spec`, at the current path depth. */
function scanMessage(st: ScanState, buf: Uint8Array, start: number, end: number, spec: MessageSpec): void {
  const base = st.depth * SLOTS;
  const occ = st.occ;
  if (spec.counted) occ.fill(0, base, base + SLOTS);
  const fields = spec.fields;
  let pos = start;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(st, buf, pos, end);
    pos = st.next;
    const fno = tag >>> 3;
    const wt = tag & 7;
    const f = fno < fields.length ? fields[fno] : undefined;
    if (f === undefined) {
      pos = skipUnknown(st, buf, pos, end, tag, tagAt);
      continue;
    }
    switch (f.kind) {
      case K_VARINT:
        if (wt !== VARINT) throw wrongWire(st, f, wt, '0', tagAt);
        readVarint(st, buf, pos, end);
        pos = st.next;
        break;
      case K_I64:
        if (wt !== I64) throw wrongWire(st, f, wt, '1', tagAt);
        pos = skipFixed(st, pos, end, 8, f.name);
        break;
      case K_BYTES:
        if (wt !== LEN) throw wrongWire(st, f, wt, '2', tagAt);
        pos = readLength(st, buf, pos, end, f.name);
        break;
      case K_MESSAGE: {
        if (wt !== LEN) throw wrongWire(st, f, wt, '2', tagAt);
        const to = readLength(st, buf, pos, end, f.name);
        const from = st.next;
        const d = st.depth;
        st.names[d] = f.name;
        const k = occ[base + fno]!;
        occ[base + fno] = k + 1;
        st.indices[d] = f.repeated ? k : -1;
        st.depth = d + 1;
        scanMessage(st, buf, from, to, f.message!);
        st.depth = d;
        pos = to;
        break;
      }
      case K_PACKED_VARINT:
        if (wt === LEN) {
          const to = readLength(st, buf, pos, end, f.name);
          for (let p = st.next; p < to; p = st.next) readVarint(st, buf, p, to);
          pos = to;
        } else if (wt === VARINT) {
          readVarint(st, buf, pos, end);
          pos = st.next;
        } else {
          throw wrongWire(st, f, wt, '2 or 0', tagAt);
        }
        break;
      case K_PACKED_I64:
        if (wt === LEN) {
          const to = readLength(st, buf, pos, end, f.name);
          if ((to - st.next) % 8 !== 0) {
            throw fail(
              st,
              'MALFORMED_PROTOBUF',
              f.name,
              `packed length ${to - st.next} is not a multiple of 8 at byte ${tagAt}`,
            );
          }
          pos = to;
        } else if (wt === I64) {
          pos = skipFixed(st, pos, end, 8, f.name);
        } else {
          throw wrongWire(st, f, wt, '2 or 1', tagAt);
        }
        break;
      case K_SYMREF: {
        if (wt !== VARINT) throw wrongWire(st, f, wt, '0', tagAt);
        const ref = readVarint(st, buf, pos, end);
        checkRef(st, ref, pos, f.name);
        pos = st.next;
        break;
      }
      case K_SYMREFS:
        if (wt === LEN) {
          const to = readLength(st, buf, pos, end, f.name);
          for (let p = st.next; p < to; p = st.next) {
            const ref = readVarint(st, buf, p, to);
            if (ref >= st.symbolCount) checkRef(st, ref, p, `${f.name}[${occ[base + fno]}]`);
            occ[base + fno]!++;
          }
          pos = to;
        } else if (wt === VARINT) {
          const ref = readVarint(st, buf, pos, end);
          if (ref >= st.symbolCount) checkRef(st, ref, pos, `${f.name}[${occ[base + fno]}]`);
          occ[base + fno]!++;
          pos = st.next;
        } else {
          throw wrongWire(st, f, wt, '2 or 0', tagAt);
        }
        break;
    }
    if (fno === spec.regionField) {
      if (st.regionStart < 0) st.regionStart = tagAt;
      st.regionEnd = pos;
    }
  }
  for (const fno of spec.pairFields) {
    const n = occ[base + fno]!;
    if (n % 2 !== 0) {
      throw new CardinalError(
        'INVALID_WRITE_REQUEST',
        `${path(st, fields[fno]!.name)}: odd number of refs (${n}) at byte ${start}`,
      );
    }
  }
}

function reset(into: SeriesIndex | undefined, version: 1 | 2): SeriesIndex {
  const index = into ?? createSeriesIndex();
  index.version = version;
  index.count = 0;
  index.totalSamples = 0;
  index.totalHistograms = 0;
  index.totalExemplars = 0;
  index.metadataCount = 0;
  index.symbolCount = 0;
  return index;
}

function grown(a: Int32Array, need: number): Int32Array {
  if (need <= a.length) return a;
  let cap = a.length * 2;
  while (cap < need) cap *= 2;
  const b = new Int32Array(cap);
  b.set(a);
  return b;
}

function ensureSeries(index: SeriesIndex, need: number): void {
  if (need <= index.start.length) return;
  index.start = grown(index.start, need);
  index.end = grown(index.end, need);
  index.labelsStart = grown(index.labelsStart, need);
  index.labelsEnd = grown(index.labelsEnd, need);
  index.samples = grown(index.samples, need);
  index.histograms = grown(index.histograms, need);
  index.exemplars = grown(index.exemplars, need);
}

/**
 * Scans the series at buf[payload, end) (already recorded in `index.start/end` at `i`) and fills
 * in its labels region and counts. The caller has pushed nothing; this pushes `timeseries[i]`.
 */
function scanSeries(
  st: ScanState,
  buf: Uint8Array,
  index: SeriesIndex,
  i: number,
  payload: number,
  spec: MessageSpec,
): void {
  const end = index.end[i]!;
  st.names[0] = 'timeseries';
  st.indices[0] = i;
  st.depth = 1;
  st.regionStart = -1;
  scanMessage(st, buf, payload, end, spec);
  st.depth = 0;
  const hasLabels = st.regionStart >= 0;
  index.labelsStart[i] = hasLabels ? st.regionStart : payload;
  index.labelsEnd[i] = hasLabels ? st.regionEnd : payload;
  // Occurrence counters of the series level are row 1; field numbers differ between versions.
  const occ = st.occ;
  const v1 = index.version === 1;
  const samples = occ[SLOTS + 2]!;
  const histograms = occ[SLOTS + (v1 ? 4 : 3)]!;
  const exemplars = occ[SLOTS + (v1 ? 3 : 4)]!;
  index.samples[i] = samples;
  index.histograms[i] = histograms;
  index.exemplars[i] = exemplars;
  index.totalSamples += samples;
  index.totalHistograms += histograms;
  index.totalExemplars += exemplars;
  if (!v1 && occ[SLOTS + 5]! > 0) index.metadataCount++;
}

export interface ScanOptions {
  /** Use the fast paths for common series shapes (default). Off only to test them against the generic scanner. */
  readonly fastPath?: boolean;
}

// Fast paths. Nearly every series a real sender writes has the same shape: labels first, then
// samples, every record with the canonical tag byte, every Label a name and a value, every Sample
// a double and a varint timestamp. For that shape these functions validate exactly what
// scanMessage validates, several times faster because they are straight-line code with no schema
// lookups. On anything else (histograms, exemplars, metadata, unknown fields, interleaved labels,
// any error) they return false without touching the index, and the caller runs the generic
// scanner on that series, which accepts what is valid and names what is not.

/** Reads a length varint of at most 5 bytes at `pos`; returns -1 if malformed or past `end`. */
function lenAt(buf: Uint8Array, pos: number, end: number, out: Int32Array): number {
  let b = pos < end ? buf[pos]! : 0x80;
  if (b < 0x80) {
    out[0] = pos + 1;
    return b;
  }
  let value = b & 0x7f;
  let shift = 7;
  for (let p = pos + 1; p < end && p < pos + 5; p++) {
    b = buf[p]!;
    value |= (b & 0x7f) << shift;
    if (b < 0x80) {
      out[0] = p + 1;
      return value < 0 ? -1 : value;
    }
    shift += 7;
  }
  return -1;
}

/** Position after a varint of at most 10 bytes at `pos`, or -1. */
function skipVarintAt(buf: Uint8Array, pos: number, end: number): number {
  const limit = Math.min(end, pos + 10);
  for (let p = pos; p < limit; p++) if (buf[p]! < 0x80) return p + 1;
  return -1;
}

const cursor = new Int32Array(1);

/** Validates one Sample payload buf[pos, end): optional 0x09 double, optional 0x10 varint. */
function fastSample(buf: Uint8Array, pos: number, end: number): boolean {
  let p = pos;
  if (p < end && buf[p] === 0x09) {
    p += 9;
    if (p > end) return false;
  }
  if (p < end && buf[p] === 0x10) {
    p = skipVarintAt(buf, p + 1, end);
    if (p < 0) return false;
  }
  return p === end;
}

/**
 * The rest of a fast-path series, in both versions: Sample records (tag 0x12) up to the end of the
 * series, and nothing else. Records the series' labels region and counts on success.
 */
function fastSamples(
  buf: Uint8Array,
  index: SeriesIndex,
  i: number,
  payload: number,
  labelsEnd: number,
): boolean {
  const end = index.end[i]!;
  const c = cursor;
  let p = labelsEnd;
  let samples = 0;
  while (p < end && buf[p] === 0x12) {
    const len = lenAt(buf, p + 1, end, c);
    if (len < 0) return false;
    const to = c[0]! + len;
    if (to > end || !fastSample(buf, c[0]!, to)) return false;
    samples++;
    p = to;
  }
  if (p !== end) return false;
  index.labelsStart[i] = payload;
  index.labelsEnd[i] = labelsEnd;
  index.samples[i] = samples;
  index.histograms[i] = 0;
  index.exemplars[i] = 0;
  index.totalSamples += samples;
  return true;
}

/**
 * The common v1 series: Label records (tag 0x0a) holding name (0x0a) and value (0x12) strings,
 * then Sample records (tag 0x12). Fills labels region and counts of series `i` on success.
 */
function fastSeriesV1(buf: Uint8Array, index: SeriesIndex, i: number, payload: number): boolean {
  const end = index.end[i]!;
  const c = cursor;
  let p = payload;
  while (p < end && buf[p] === 0x0a) {
    const len = lenAt(buf, p + 1, end, c);
    if (len < 0) return false;
    const to = c[0]! + len;
    if (to > end) return false;
    let q = c[0]!;
    if (q < to && buf[q] === 0x0a) {
      const n = lenAt(buf, q + 1, to, c);
      if (n < 0 || c[0]! + n > to) return false;
      q = c[0]! + n;
    }
    if (q < to && buf[q] === 0x12) {
      const n = lenAt(buf, q + 1, to, c);
      if (n < 0 || c[0]! + n > to) return false;
      q = c[0]! + n;
    }
    if (q !== to) return false;
    p = to;
  }
  const labelsEnd = p;
  return fastSamples(buf, index, i, payload, labelsEnd);
}

/**
 * The common v2 series: one packed labels_refs record (tag 0x0a) with an even number of refs all
 * below `symbolCount`, then Sample records (tag 0x12). Series with histograms, exemplars, metadata
 * (0x2a) or a created timestamp (0x30) are left to the generic scanner.
 */
function fastSeriesV2(
  buf: Uint8Array,
  index: SeriesIndex,
  i: number,
  payload: number,
  symbolCount: number,
): boolean {
  const end = index.end[i]!;
  const c = cursor;
  let p = payload;
  let labelsEnd = payload;
  if (p < end && buf[p] === 0x0a) {
    const len = lenAt(buf, p + 1, end, c);
    if (len < 0) return false;
    const to = c[0]! + len;
    if (to > end) return false;
    let refs = 0;
    for (let q = c[0]!; q < to; refs++) {
      const ref = lenAt(buf, q, to, c);
      if (ref < 0 || ref >= symbolCount) return false;
      q = c[0]!;
    }
    if (refs % 2 !== 0) return false;
    p = to;
    labelsEnd = to;
  }
  return fastSamples(buf, index, i, payload, labelsEnd);
}

/**
 * Scans a prometheus.WriteRequest (remote-write 1.0): timeseries = 1, metadata = 3.
 * Throws CardinalError MALFORMED_PROTOBUF on any structural error.
 */
export function scanWriteRequestV1(buf: Uint8Array, into?: SeriesIndex, options?: ScanOptions): SeriesIndex {
  const fast = options?.fastPath ?? true;
  const index = reset(into, 1);
  const st = newState('WriteRequest');
  const end = buf.length;
  let pos = 0;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(st, buf, pos, end);
    pos = st.next;
    const fno = tag >>> 3;
    if (fno !== 1 && fno !== 3) {
      pos = skipUnknown(st, buf, pos, end, tag, tagAt);
      continue;
    }
    const name = fno === 1 ? 'timeseries' : 'metadata';
    if ((tag & 7) !== LEN) {
      throw fail(st, 'MALFORMED_PROTOBUF', name, `wire type ${tag & 7}, expected 2 at byte ${tagAt}`);
    }
    const to = readLength(st, buf, pos, end, name);
    const payload = st.next;
    if (fno === 1) {
      const i = index.count;
      ensureSeries(index, i + 1);
      index.start[i] = tagAt;
      index.end[i] = to;
      if (!(fast && fastSeriesV1(buf, index, i, payload))) scanSeries(st, buf, index, i, payload, SERIES_V1);
      index.count = i + 1;
    } else {
      st.names[0] = 'metadata';
      st.indices[0] = index.metadataCount;
      st.depth = 1;
      scanMessage(st, buf, payload, to, METADATA_V1);
      st.depth = 0;
      index.metadataCount++;
    }
    pos = to;
  }
  return index;
}

/**
 * Scans an io.prometheus.write.v2.Request (remote-write 2.0): symbols = 4, timeseries = 5.
 * Two passes, because protobuf allows the symbols after the series that reference them: the first
 * walks the top level only, recording symbols and series bounds; the second scans each series.
 * Throws MALFORMED_PROTOBUF on structural errors and INVALID_WRITE_REQUEST on bad references.
 */
export function scanRequestV2(buf: Uint8Array, into?: SeriesIndex, options?: ScanOptions): SeriesIndex {
  const fast = options?.fastPath ?? true;
  const index = reset(into, 2);
  const st = newState('Request');
  const end = buf.length;
  let pos = 0;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(st, buf, pos, end);
    pos = st.next;
    const fno = tag >>> 3;
    if (fno !== 4 && fno !== 5) {
      pos = skipUnknown(st, buf, pos, end, tag, tagAt);
      continue;
    }
    const name = fno === 4 ? 'symbols' : 'timeseries';
    if ((tag & 7) !== LEN) {
      throw fail(st, 'MALFORMED_PROTOBUF', name, `wire type ${tag & 7}, expected 2 at byte ${tagAt}`);
    }
    const to = readLength(st, buf, pos, end, name);
    if (fno === 4) {
      const k = index.symbolCount;
      if (k >= index.symbolStart.length) {
        index.symbolStart = grown(index.symbolStart, k + 1);
        index.symbolEnd = grown(index.symbolEnd, k + 1);
      }
      index.symbolStart[k] = st.next;
      index.symbolEnd[k] = to;
      index.symbolCount = k + 1;
    } else {
      const i = index.count;
      ensureSeries(index, i + 1);
      index.start[i] = tagAt;
      index.end[i] = to;
      // The payload offset is parked in labelsStart until the second pass overwrites it.
      index.labelsStart[i] = st.next;
      index.count = i + 1;
    }
    pos = to;
  }
  if (index.symbolCount > 0 && index.symbolEnd[0] !== index.symbolStart[0]) {
    const len = index.symbolEnd[0]! - index.symbolStart[0]!;
    throw new CardinalError(
      'INVALID_WRITE_REQUEST',
      `symbols[0] is not the empty string (${len} bytes) at byte ${index.symbolStart[0]}`,
    );
  }
  st.symbolCount = index.symbolCount;
  for (let i = 0; i < index.count; i++) {
    const payload = index.labelsStart[i]!;
    if (!(fast && fastSeriesV2(buf, index, i, payload, index.symbolCount)))
      scanSeries(st, buf, index, i, payload, SERIES_V2);
  }
  return index;
}

// Accessors over a scanned buffer. They trust the scan: the buffer must be the one scanned and
// unchanged, so they do no bounds checks of their own.

/** The varint at `pos` of a scanned buffer. */
export function varintAt(buf: Uint8Array, pos: number): number {
  let value = 0;
  let scale = 1;
  let b: number;
  do {
    b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    scale *= 128;
  } while (b >= 0x80);
  return value;
}

/** The position after the varint at `pos` of a scanned buffer. */
export function afterVarint(buf: Uint8Array, pos: number): number {
  let p = pos;
  while (buf[p]! >= 0x80) p++;
  return p + 1;
}

/** Position after the value of a record with wire type `wt` whose value starts at `pos`. */
export function afterValue(buf: Uint8Array, pos: number, wt: number): number {
  switch (wt) {
    case VARINT:
      return afterVarint(buf, pos);
    case I64:
      return pos + 8;
    case LEN: {
      const p = afterVarint(buf, pos);
      return p + varintAt(buf, pos);
    }
    default:
      return pos + 4;
  }
}

/** Receives one label as byte ranges of the scanned buffer (UTF-8, not decoded). */
export type LabelVisitor = (nameStart: number, nameEnd: number, valueStart: number, valueEnd: number) => void;

/**
 * Calls `visit` for each label of v1 series `i`, in wire order, and returns how many there were.
 * A Label that repeats its name or value field keeps the last one (protobuf "last one wins"); a
 * missing one is the empty range. Allocation-free; pass a visitor made once per request.
 */
export function readLabelsV1(buf: Uint8Array, index: SeriesIndex, i: number, visit: LabelVisitor): number {
  let pos = index.labelsStart[i]!;
  const end = index.labelsEnd[i]!;
  let n = 0;
  while (pos < end) {
    const tag = varintAt(buf, pos);
    pos = afterVarint(buf, pos);
    if (tag >>> 3 !== 1) {
      pos = afterValue(buf, pos, tag & 7);
      continue;
    }
    const labelStart = afterVarint(buf, pos);
    const labelEnd = labelStart + varintAt(buf, pos);
    let nameStart = labelEnd;
    let nameEnd = labelEnd;
    let valueStart = labelEnd;
    let valueEnd = labelEnd;
    let p = labelStart;
    while (p < labelEnd) {
      const t = varintAt(buf, p);
      p = afterVarint(buf, p);
      const fno = t >>> 3;
      if ((fno === 1 || fno === 2) && (t & 7) === LEN) {
        const s = afterVarint(buf, p);
        const e = s + varintAt(buf, p);
        if (fno === 1) {
          nameStart = s;
          nameEnd = e;
        } else {
          valueStart = s;
          valueEnd = e;
        }
        p = e;
      } else {
        p = afterValue(buf, p, t & 7);
      }
    }
    visit(nameStart, nameEnd, valueStart, valueEnd);
    n++;
    pos = labelEnd;
  }
  return n;
}

/** Receives one label of a v2 series as indices into the symbols table. */
export type LabelRefVisitor = (nameRef: number, valueRef: number) => void;

/**
 * Calls `visit` for each (name, value) reference pair of v2 series `i`, in wire order, and returns
 * the number of pairs. Handles packed, unpacked and split labels_refs records alike.
 */
export function readLabelRefsV2(
  buf: Uint8Array,
  index: SeriesIndex,
  i: number,
  visit: LabelRefVisitor,
): number {
  let pos = index.labelsStart[i]!;
  const end = index.labelsEnd[i]!;
  let pending = -1;
  let n = 0;
  while (pos < end) {
    const tag = varintAt(buf, pos);
    pos = afterVarint(buf, pos);
    if (tag >>> 3 !== 1) {
      pos = afterValue(buf, pos, tag & 7);
      continue;
    }
    let p = pos;
    let to: number;
    if ((tag & 7) === LEN) {
      p = afterVarint(buf, pos);
      to = p + varintAt(buf, pos);
    } else {
      to = afterVarint(buf, pos);
    }
    while (p < to) {
      const ref = varintAt(buf, p);
      p = afterVarint(buf, p);
      if (pending < 0) {
        pending = ref;
      } else {
        visit(pending, ref);
        pending = -1;
        n++;
      }
    }
    pos = to;
  }
  return n;
}

/** The UTF-8 bytes of symbol `k` of a scanned v2 request, as a view of `buf` (no copy). */
export function symbolBytes(buf: Uint8Array, index: SeriesIndex, k: number): Uint8Array {
  return buf.subarray(index.symbolStart[k]!, index.symbolEnd[k]!);
}
