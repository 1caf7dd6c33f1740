// Batches of queued records as outgoing requests: merging many small records into one message,
// and splitting a message the upstream refused as too large. Pure functions over messages.

import { requestV2ToWriteRequestV1 } from '../codec/convert.js';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
} from '../codec/proto.js';
import { snappyDecode, snappyDecodedLength, snappyEncode } from '../codec/snappy.js';
import type { RequestV2, TimeSeriesV2, WriteRequestV1 } from '../codec/types.js';
import type { ProtocolVersion } from '../ingest/negotiate.js';
import type { QueueEntry } from './format.js';
import { mergeRequestsV2 } from './merge-v2.js';

/** Queued bodies were limited by --max-decoded-bytes when accepted; this only guards the type. */
const DECODE_LIMIT = 1 << 30;

/** One outgoing request: a complete snappy-compressed message and what it carries. */
export interface Piece {
  readonly version: ProtocolVersion;
  readonly tenant: string | undefined;
  readonly body: Uint8Array;
  /** Queued records this piece carries in whole (0 for a part of one record). */
  readonly records: number;
  /** Float and histogram samples. */
  readonly samples: number;
  /** The records merged into this piece, when there are several: a failure can split along them. */
  readonly entries: readonly QueueEntry[];
}

/**
 * Merges records of one tenant and protocol version into one request. One record is sent as it was
 * queued. Remote-write 1.0: a WriteRequest has only repeated fields, and concatenated encodings of
 * a message are the encoding of the merged message (protobuf encoding, "Last One Wins" / repeated
 * fields are appended), so the decompressed bodies are concatenated, which for snappy blocks needs
 * no decompression (concatSnappyBlocks). 2.0: series refer to their
 * request's symbols table by index, so the table is rebuilt and the references renumbered
 * (mergeRequestsV2).
 */
export function mergeEntries(entries: readonly QueueEntry[]): Piece {
  const first = entries[0];
  if (first === undefined) throw new RangeError('mergeEntries: no entries');
  let samples = 0;
  for (const e of entries) {
    if (e.version !== first.version || e.tenant !== first.tenant) {
      throw new RangeError('mergeEntries: a batch must not mix tenants or protocol versions');
    }
    samples += e.samples + e.histograms;
  }
  const piece = { version: first.version, tenant: first.tenant, records: entries.length, samples, entries };
  if (entries.length === 1) return { ...piece, body: first.body };
  if (first.version === '1.0') {
    const body =
      concatSnappyBlocks(entries.map((e) => e.body)) ??
      snappyEncode(Buffer.concat(entries.map((e) => snappyDecode(e.body, DECODE_LIMIT))));
    return { ...piece, body };
  }
  const raw = mergeRequestsV2(entries.map((e) => snappyDecode(e.body, DECODE_LIMIT)));
  return { ...piece, body: snappyEncode(raw) };
}

/**
 * Joins snappy blocks into one block that decompresses to the concatenation of their contents,
 * without decompressing anything. A block is its uncompressed length as a varint, then literal and
 * copy elements (google/snappy format_description.txt); a copy reaches back from the current output
 * position by its offset, and in a valid block never before the block's own start, so every
 * element stays valid after the blocks before it. Only the length preamble is rewritten.
 * Undefined when a preamble is malformed or the total exceeds the format's 32-bit length.
 */
export function concatSnappyBlocks(blocks: readonly Uint8Array[]): Buffer | undefined {
  let total = 0;
  const parts: Uint8Array[] = [];
  for (const b of blocks) {
    const size = snappyDecodedLength(b);
    if (size < 0) return undefined;
    let preamble = 1;
    while (b[preamble - 1]! >= 0x80) preamble++;
    total += size;
    parts.push(b.subarray(preamble));
  }
  if (total > 0xffffffff) return undefined;
  const header: number[] = [];
  let v = total;
  while (v >= 0x80) {
    header.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  header.push(v);
  return Buffer.concat([Buffer.from(header), ...parts]);
}

/**
 * Halves a piece the upstream refused with 413: along its records when it has several, otherwise
 * along its series. Undefined when it holds a single series, which cannot be split further.
 */
export function splitPiece(p: Piece): [Piece, Piece] | undefined {
  if (p.entries.length > 1) {
    const mid = Math.ceil(p.entries.length / 2);
    return [mergeEntries(p.entries.slice(0, mid)), mergeEntries(p.entries.slice(mid))];
  }
  const raw = snappyDecode(p.body, DECODE_LIMIT);
  const part = (body: Uint8Array, samples: number): Piece => ({
    version: p.version,
    tenant: p.tenant,
    body: snappyEncode(body),
    records: 0,
    samples,
    entries: [],
  });
  if (p.version === '1.0') {
    const req = decodeWriteRequestV1(raw);
    if (req.timeseries.length < 2) return undefined;
    const mid = Math.ceil(req.timeseries.length / 2);
    // Metadata entries are small and ride with the first half.
    const a: WriteRequestV1 = { timeseries: req.timeseries.slice(0, mid), metadata: req.metadata };
    const b: WriteRequestV1 = { timeseries: req.timeseries.slice(mid), metadata: [] };
    return [
      part(encodeWriteRequestV1(a), countSamples(a.timeseries)),
      part(encodeWriteRequestV1(b), countSamples(b.timeseries)),
    ];
  }
  const req = decodeRequestV2(raw);
  if (req.timeseries.length < 2) return undefined;
  const mid = Math.ceil(req.timeseries.length / 2);
  const halves = [req.timeseries.slice(0, mid), req.timeseries.slice(mid)] as const;
  const [a, b] = halves.map((series) => rebuildSymbols([{ symbols: req.symbols, series }])) as [
    RequestV2,
    RequestV2,
  ];
  return [
    part(encodeRequestV2(a), countSamples(a.timeseries)),
    part(encodeRequestV2(b), countSamples(b.timeseries)),
  ];
}

/**
 * A 2.0 piece as 1.0, for an upstream that answered 415 (remote-write 2.0, "Content negotiation":
 * a receiver that does not accept 2.0 says so with 415, and the sender falls back to 1.0). The
 * queue already acknowledged the data, so it falls back itself rather than drop it.
 */
export function downConvert(p: Piece): Piece {
  const v1 = requestV2ToWriteRequestV1(decodeRequestV2(snappyDecode(p.body, DECODE_LIMIT)));
  return {
    version: '1.0',
    tenant: p.tenant,
    body: snappyEncode(encodeWriteRequestV1(v1)),
    records: p.records,
    samples: p.samples,
    entries: [],
  };
}

/** The records of a merged piece as pieces of their own, in order. */
export function separate(p: Piece): Piece[] | undefined {
  return p.entries.length > 1 ? p.entries.map((e) => mergeEntries([e])) : undefined;
}

function countSamples(series: readonly { samples: unknown[]; histograms: unknown[] }[]): number {
  let n = 0;
  for (const s of series) n += s.samples.length + s.histograms.length;
  return n;
}

/**
 * Builds one 2.0 request from series of one or more requests, each with its own symbols table:
 * a fresh table holding only the symbols used, with every reference (labels, exemplar labels,
 * metadata help and unit) renumbered into it. Index 0 is the empty string, as the 2.0 spec
 * requires ("symbols", io.prometheus.write.v2.Request).
 */
export function rebuildSymbols(
  parts: readonly { symbols: readonly string[]; series: readonly TimeSeriesV2[] }[],
): RequestV2 {
  const symbols = [''];
  const index = new Map<string, number>([['', 0]]);
  const timeseries: TimeSeriesV2[] = [];
  for (const part of parts) {
    const ref = (r: number): number => {
      const s = part.symbols[r] ?? '';
      let i = index.get(s);
      if (i === undefined) {
        i = symbols.length;
        symbols.push(s);
        index.set(s, i);
      }
      return i;
    };
    for (const ts of part.series) {
      timeseries.push({
        ...ts,
        labelsRefs: ts.labelsRefs.map(ref),
        exemplars: ts.exemplars.map((e) => ({ ...e, labelsRefs: e.labelsRefs.map(ref) })),
        metadata: {
          type: ts.metadata.type,
          helpRef: ref(ts.metadata.helpRef),
          unitRef: ref(ts.metadata.unitRef),
        },
      });
    }
  }
  return { symbols, timeseries };
}

/** The labels of a piece's first series, for a log line about what was dropped. */
export function firstSeries(p: Piece): string {
  try {
    const raw = snappyDecode(p.body, DECODE_LIMIT);
    if (p.version === '1.0') {
      const ts = decodeWriteRequestV1(raw).timeseries[0];
      return ts === undefined
        ? ''
        : `{${ts.labels.map((l) => `${l.name}=${JSON.stringify(l.value)}`).join(', ')}}`;
    }
    const req = decodeRequestV2(raw);
    const refs = req.timeseries[0]?.labelsRefs ?? [];
    const pairs: string[] = [];
    for (let i = 0; i + 1 < refs.length; i += 2) {
      pairs.push(`${req.symbols[refs[i]!]}=${JSON.stringify(req.symbols[refs[i + 1]!])}`);
    }
    return `{${pairs.join(', ')}}`;
  } catch {
    return '(undecodable)';
  }
}
