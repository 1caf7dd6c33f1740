// The queue's on-disk format. Pure functions over buffers; proxy/queue/queue.ts owns the files.
//
// A queue directory holds segment files named by a 16-digit sequence number (`0000000000000001.seg`)
// and one `ack` file.
//
// Segment file, format version 1:
//   header  8 bytes: the magic "CRDQ", the format version (u8), three zero bytes
//   records one after another:
//     u32 LE  payload length
//     u32 LE  CRC-32C of the payload
//     payload:
//       u8     protocol (1 = remote-write 1.0, 2 = remote-write 2.0)
//       u8     flags (bit 0: a tenant is present)
//       u16 LE tenant length in bytes
//       f64 LE time the record was enqueued, ms since the epoch
//       u32 LE series, samples, histograms, exemplars, metadata entries (five counters)
//       tenant bytes (UTF-8)
//       body: the snappy-compressed remote-write message that would have been forwarded
//
// A record is complete when its length, checksum and payload are all on disk and the checksum
// matches; anything else at the end of a segment is a torn write of a record that was never
// acknowledged, and anything else before the end is corruption.
//
// Ack file, format version 1 (44 bytes, replaced atomically by rename):
//   "CRDA", u8 version, three zero bytes, f64 LE acked segment, f64 LE acked offset,
//   f64 LE sent segment, f64 LE sent offset, u32 LE CRC-32C of the preceding 40 bytes.

import type { ProtocolVersion } from '../ingest/negotiate.js';
import { crc32c } from './crc32c.js';

export const FORMAT_VERSION = 1;
export const SEGMENT_MAGIC = 'CRDQ';
export const SEGMENT_HEADER_BYTES = 8;
export const RECORD_HEADER_BYTES = 8;
export const PAYLOAD_FIXED_BYTES = 32;
export const ACK_MAGIC = 'CRDA';
export const ACK_FILE_BYTES = 44;
/** Larger lengths are corruption: no request the proxy accepts comes near it. */
export const MAX_PAYLOAD_BYTES = 1 << 30;

/** What the queue keeps of one accepted request. */
export interface QueueEntry {
  readonly version: ProtocolVersion;
  readonly tenant: string | undefined;
  readonly enqueuedAtMs: number;
  readonly series: number;
  readonly samples: number;
  readonly histograms: number;
  readonly exemplars: number;
  readonly metadata: number;
  /** The snappy-compressed message. */
  readonly body: Uint8Array;
}

/** A place in the queue: a segment's sequence number and a byte offset in it. */
export interface Position {
  readonly segment: number;
  readonly offset: number;
}

export function comparePositions(a: Position, b: Position): number {
  return a.segment - b.segment || a.offset - b.offset;
}

export function segmentFileName(segment: number): string {
  return `${String(segment).padStart(16, '0')}.seg`;
}

/** The sequence number of a segment file name, or undefined for any other file. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = /^(\d{16})\.seg$/.exec(name);
  return m === null ? undefined : Number(m[1]);
}

export function encodeSegmentHeader(): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  b.write(SEGMENT_MAGIC, 0, 'latin1');
  b[4] = FORMAT_VERSION;
  return b;
}

export type HeaderCheck =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'short' | 'magic' | 'version'; readonly version?: number };

export function checkSegmentHeader(b: Uint8Array): HeaderCheck {
  if (b.length < SEGMENT_HEADER_BYTES) return { ok: false, reason: 'short' };
  if (Buffer.from(b.subarray(0, 4)).toString('latin1') !== SEGMENT_MAGIC)
    return { ok: false, reason: 'magic' };
  if (b[4] !== FORMAT_VERSION) return { ok: false, reason: 'version', version: b[4]! };
  return { ok: true };
}

/** The bytes one entry takes on disk, record header included. */
export function encodedSize(entry: QueueEntry, tenantBytes = byteLength(entry.tenant)): number {
  return RECORD_HEADER_BYTES + PAYLOAD_FIXED_BYTES + tenantBytes + entry.body.length;
}

function byteLength(s: string | undefined): number {
  return s === undefined ? 0 : Buffer.byteLength(s, 'utf8');
}

export function encodeRecord(entry: QueueEntry): Buffer {
  const tenantLen = byteLength(entry.tenant);
  if (tenantLen > 0xffff) throw new RangeError(`tenant of ${tenantLen} bytes exceeds 65535`);
  const b = Buffer.allocUnsafe(encodedSize(entry, tenantLen));
  const p = RECORD_HEADER_BYTES;
  b[p] = entry.version === '1.0' ? 1 : 2;
  b[p + 1] = entry.tenant === undefined ? 0 : 1;
  b.writeUInt16LE(tenantLen, p + 2);
  b.writeDoubleLE(entry.enqueuedAtMs, p + 4);
  b.writeUInt32LE(entry.series, p + 12);
  b.writeUInt32LE(entry.samples, p + 16);
  b.writeUInt32LE(entry.histograms, p + 20);
  b.writeUInt32LE(entry.exemplars, p + 24);
  b.writeUInt32LE(entry.metadata, p + 28);
  if (entry.tenant !== undefined) b.write(entry.tenant, p + PAYLOAD_FIXED_BYTES, 'utf8');
  b.set(entry.body, p + PAYLOAD_FIXED_BYTES + tenantLen);
  b.writeUInt32LE(b.length - RECORD_HEADER_BYTES, 0);
  b.writeUInt32LE(crc32c(b, RECORD_HEADER_BYTES), 4);
  return b;
}

export type ParseResult =
  | { readonly kind: 'record'; readonly entry: QueueEntry; readonly size: number }
  /** The buffer ends before the record does: more bytes are needed, or the tail is torn. */
  | { readonly kind: 'incomplete'; readonly need: number }
  | { readonly kind: 'corrupt'; readonly reason: 'checksum' | 'length' | 'payload' };

/**
 * Parses the record starting at `buf[pos]`. `buf` may end anywhere; 'incomplete' says how many
 * bytes from `pos` the record needs. The entry's body is a view into `buf`.
 */
export function parseRecord(buf: Uint8Array, pos: number): ParseResult {
  if (buf.length - pos < RECORD_HEADER_BYTES) return { kind: 'incomplete', need: RECORD_HEADER_BYTES };
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = view.readUInt32LE(pos);
  if (len < PAYLOAD_FIXED_BYTES || len > MAX_PAYLOAD_BYTES) return { kind: 'corrupt', reason: 'length' };
  const size = RECORD_HEADER_BYTES + len;
  if (buf.length - pos < size) return { kind: 'incomplete', need: size };
  const start = pos + RECORD_HEADER_BYTES;
  if (crc32c(buf, start, start + len) !== view.readUInt32LE(pos + 4)) {
    return { kind: 'corrupt', reason: 'checksum' };
  }
  const protocol = view[start];
  const flags = view[start + 1]!;
  const tenantLen = view.readUInt16LE(start + 2);
  if ((protocol !== 1 && protocol !== 2) || PAYLOAD_FIXED_BYTES + tenantLen > len || (flags & ~1) !== 0) {
    return { kind: 'corrupt', reason: 'payload' };
  }
  const tenantStart = start + PAYLOAD_FIXED_BYTES;
  const entry: QueueEntry = {
    version: protocol === 1 ? '1.0' : '2.0',
    tenant: flags & 1 ? view.toString('utf8', tenantStart, tenantStart + tenantLen) : undefined,
    enqueuedAtMs: view.readDoubleLE(start + 4),
    series: view.readUInt32LE(start + 12),
    samples: view.readUInt32LE(start + 16),
    histograms: view.readUInt32LE(start + 20),
    exemplars: view.readUInt32LE(start + 24),
    metadata: view.readUInt32LE(start + 28),
    body: buf.subarray(tenantStart + tenantLen, start + len),
  };
  return { kind: 'record', entry, size };
}

export interface AckState {
  /** Everything before this position reached the upstream (or was dropped and counted). */
  readonly acked: Position;
  /**
   * The end of the batch being sent when this was written. After a crash, the first batch is cut
   * exactly here, so that it repeats the batch the upstream may already hold, byte for byte.
   */
  readonly sent: Position;
}

export function encodeAck(state: AckState): Buffer {
  const b = Buffer.alloc(ACK_FILE_BYTES);
  b.write(ACK_MAGIC, 0, 'latin1');
  b[4] = FORMAT_VERSION;
  b.writeDoubleLE(state.acked.segment, 8);
  b.writeDoubleLE(state.acked.offset, 16);
  b.writeDoubleLE(state.sent.segment, 24);
  b.writeDoubleLE(state.sent.offset, 32);
  b.writeUInt32LE(crc32c(b, 0, 40), 40);
  return b;
}

/** Returns the state, or a reason why the file cannot be trusted. */
export function decodeAck(b: Uint8Array): AckState | string {
  if (b.length !== ACK_FILE_BYTES) return `${b.length} bytes, expected ${ACK_FILE_BYTES}`;
  const view = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (view.toString('latin1', 0, 4) !== ACK_MAGIC) return 'bad magic';
  if (view[4] !== FORMAT_VERSION) return `format version ${view[4]}, this proxy reads ${FORMAT_VERSION}`;
  if (crc32c(view, 0, 40) !== view.readUInt32LE(40)) return 'checksum mismatch';
  const num = (at: number) => view.readDoubleLE(at);
  const acked = { segment: num(8), offset: num(16) };
  const sent = { segment: num(24), offset: num(32) };
  for (const v of [acked.segment, acked.offset, sent.segment, sent.offset]) {
    if (!Number.isSafeInteger(v) || v < 0) return 'positions are not non-negative integers';
  }
  return { acked, sent };
}
