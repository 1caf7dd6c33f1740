// The byte-level output builder: the request to forward, built from the sender's own bytes. Series
// that pass unchanged are copied as they came; dropped ones are cut out; rewritten ones are
// re-encoded with their new labels (v1 Label records, or v2 label references into the request's
// symbols, new symbols appended); series merged onto one (overflow, aggregation, collisions)
// are combined per timestamp. Knows nothing of policies: the pipeline tells it what to do.

import {
  afterValue,
  afterVarint,
  readLabelRefsV2,
  readLabelsV1,
  type SeriesIndex,
  varintAt,
} from './scan.js';
import type { Label } from './types.js';

/** How samples of one timestamp of merged series are combined. */
export type CollisionMode = 'sum' | 'max' | 'min' | 'last';

/** A series several series of a request are merged onto (see OutputBuilder.aggregate). */
export interface AggregateSeries {
  /** Identifies the merged series: the hash of its final labels. */
  readonly hash: number;
  readonly mode: CollisionMode;
  /** v1 encoding of its labels (Label records). */
  readonly encoded: Uint8Array | undefined;
  /** Its labels (needed for v2, whose labels are symbol references). */
  readonly labels: readonly Label[] | undefined;
}

/** Decodes Label records as encodeLabelsV1 writes them; only for series new to the statistics. */
export function decodeLabelRecords(bytes: Uint8Array): Label[] {
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
export function labelsV1(buf: Buffer, index: SeriesIndex, i: number): Label[] {
  const labels: Label[] = [];
  readLabelsV1(buf, index, i, (ns, ne, vs, ve) => {
    labels.push({ name: buf.toString('utf8', ns, ne), value: buf.toString('utf8', vs, ve) });
  });
  return labels;
}

/** Decodes the labels of v2 series `i`, decoding each symbol once per request. */
export function labelsV2(
  buf: Buffer,
  index: SeriesIndex,
  i: number,
  symbols: (string | undefined)[],
): Label[] {
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
export function encodeLabelsV1(labels: readonly Label[]): Buffer {
  const lengths: number[] = [];
  let size = 0;
  for (const l of labels) {
    const n = Buffer.byteLength(l.name);
    const v = Buffer.byteLength(l.value);
    const len = (n ? 1 + varintSize(n) + n : 0) + (v ? 1 + varintSize(v) + v : 0);
    lengths.push(n, v, len);
    size += 1 + varintSize(len) + len;
  }
  // From Node's shared pool: the encodings made one after another (a request's new series, in
  // the order the output builder copies them) lie side by side in memory. Every byte is written.
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let k = 0; k < labels.length; k++) {
    const l = labels[k]!;
    const n = lengths[3 * k]!;
    const v = lengths[3 * k + 1]!;
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, lengths[3 * k + 2]!);
    if (n) {
      out[pos++] = 0x0a;
      pos = writeVarint(out, pos, n);
      pos += out.write(l.name, pos);
    }
    if (v) {
      out[pos++] = 0x12;
      pos = writeVarint(out, pos, v);
      pos += out.write(l.value, pos);
    }
  }
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
 * Builds the forwarded message from the original: the original bytes with dropped series cut out
 * and rewritten ones re-encoded in their place, then merged series, then (v2) the new symbols.
 * Repeated fields may come in any order in protobuf, and v2 symbols appended after all original
 * ones get the next indices, so the original series' references stay valid.
 */
export class OutputBuilder<E extends AggregateSeries> {
  changed = false;
  aggregateSeries = 0;
  aggregateSamples = 0;
  #aggregates: Map<number, { entry: E; byTs: Map<number, number> }> | undefined;
  readonly #buf: Buffer;
  readonly #index: SeriesIndex;
  /**
   * The forwarded message, written in one buffer sized up front to the request (rewriting keeps
   * most series about their size) and doubled when that is not enough: unchanged runs of the
   * original copied as they come, rewritten series in their place, merged series and new symbols
   * at the end. One copy per series, no pieces concatenated at the end.
   */
  #out: Buffer | undefined;
  #outLength = 0;
  #copiedTo = 0;
  #symbols: Map<string, number> | undefined;
  #newSymbols: string[] = [];

  /**
   * `scratch`, when given, is written into instead of a new buffer while it is large enough: the
   * caller lends it and must not read what finish() returned once it lends it again.
   */
  constructor(buf: Buffer, index: SeriesIndex, scratch?: Buffer) {
    this.#buf = buf;
    this.#index = index;
    this.#out = scratch;
  }

  /** The buffer the output is written in (grown from the scratch, or new), for lending again. */
  get buffer(): Buffer | undefined {
    return this.#out;
  }

  #cut(i: number): void {
    const start = this.#index.start[i]!;
    if (start > this.#copiedTo) this.#copy(this.#copiedTo, start);
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
    const end = this.#index.end[i]!;
    const head = v1 ? encodedV1 : this.#labelRefs(labels);
    const tag = v1 ? 0x0a : 0x2a;
    // Labels first and nothing but labels in their region (what every sender writes): the rest of
    // the series is one run of bytes, copied straight from the request. Otherwise pick the other
    // records out one by one.
    if (this.#index.labelsStart[i] === payload && onlyField(buf, payload, labelsEnd, 1)) {
      let pos = this.#record(tag, head.length + end - labelsEnd);
      const tail = this.#out!;
      tail.set(head, pos);
      pos += head.length;
      // Mostly one Sample record: a loop beats a call for so few bytes.
      if (end - labelsEnd <= 64) for (let k = labelsEnd; k < end; k++) tail[pos++] = buf[k]!;
      else {
        tail.set(buf.subarray(labelsEnd, end), pos);
        pos += end - labelsEnd;
      }
      this.#outLength = pos;
      return;
    }
    const rest = recordsExcept(buf, payload, end, 1);
    let len = head.length;
    for (const r of rest) len += r.length;
    let pos = this.#record(tag, len);
    const tail = this.#out!;
    for (const part of [head, ...rest]) {
      tail.set(part, pos);
      pos += part.length;
    }
    this.#outLength = pos;
  }

  /** Makes room for `n` more bytes at the end of the output. */
  #reserve(n: number): Buffer {
    const need = this.#outLength + n;
    let out = this.#out;
    if (out === undefined || out.length < need) {
      const grown = Buffer.allocUnsafe(
        Math.max(need, this.#buf.length + 1024, out === undefined ? 0 : 2 * out.length),
      );
      if (out !== undefined) out.copy(grown, 0, 0, this.#outLength);
      this.#out = grown;
      out = grown;
    }
    return out;
  }

  /** Appends buf[from, to) of the original to the output. */
  #copy(from: number, to: number): void {
    const out = this.#reserve(to - from);
    this.#buf.copy(out, this.#outLength, from, to);
    this.#outLength += to - from;
  }

  /**
   * Makes room at the end of the output for a record of `tag` with a `len`-byte payload, writes
   * its tag and length, and returns where its payload goes; the caller writes it and sets
   * #outLength.
   */
  #record(tag: number, len: number): number {
    const out = this.#reserve(1 + varintSize(len) + len);
    out[this.#outLength] = tag;
    return writeVarint(out, this.#outLength + 1, len);
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
  aggregate(i: number, entry: E): void {
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
    leftOut: (entry: E, samples: number) => void,
  ): Uint8Array {
    if (this.#copiedTo < this.#buf.length) this.#copy(this.#copiedTo, this.#buf.length);
    this.#copiedTo = this.#buf.length;
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
      let pos = this.#record(this.#index.version === 1 ? 0x0a : 0x2a, len);
      const out = this.#out!;
      for (const part of [head, ...samples]) {
        out.set(part, pos);
        pos += part.length;
      }
      this.#outLength = pos;
      this.aggregateSeries++;
      this.aggregateSamples += times.length;
    }
    for (const s of this.#newSymbols) {
      const bytes = Buffer.from(s);
      let pos = this.#record(0x22, bytes.length);
      this.#out!.set(bytes, pos);
      pos += bytes.length;
      this.#outLength = pos;
    }
    const out = this.#out ?? Buffer.alloc(0);
    return out.subarray(0, this.#outLength);
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
