// Snappy block decoding into memory the caller keeps from request to request.
//
// The native binding (snappy.ts) returns a fresh buffer for every body: about half a megabyte per
// remote-write request of 2,000 series. On Node 24 such ArrayBuffer churn is reclaimed by full
// mark-compact collections (V8 starts one each time 64 MB of external memory has been allocated
// since the last), each of them a pause of several milliseconds on the event loop. Decoding into a
// reused buffer allocates nothing per request. The format is google/snappy format_description.txt:
// a varint preamble holding the decoded length, then literal and copy elements.

import { reusableBuffer } from '../buffers.js';
import { CardinalError } from '../errors.js';
import { snappyCheckedLength, snappyDeclaredLength } from './snappy.js';

/** Literals longer than this go through one native copy, not a loop. */
const BULK = 32;

/** Bytes `out` must hold beyond the decoded length: copies write whole words and may run over. */
export const SNAPPY_SLACK = 4;

/** A decode buffer larger than this serves its request only: one huge body does not pin its memory. */
const MAX_KEPT_BYTES = 8 << 20;

/**
 * `snappyDecode` (the same checks and errors) into `scratch` when it is large enough, else into
 * a new buffer. `decoded` is a view of `buffer`, valid until the buffer is used again; `buffer`
 * is the one to pass as `scratch` next time, undefined when it is too large to keep.
 */
export function snappyDecodeReusing(
  body: Uint8Array,
  maxDecodedBytes: number,
  scratch: Buffer | undefined,
): { decoded: Buffer; buffer: Buffer | undefined } {
  const size = snappyCheckedLength(body, maxDecodedBytes);
  let buffer = scratch;
  if (buffer === undefined || buffer.length < size + SNAPPY_SLACK)
    buffer = reusableBuffer(size + SNAPPY_SLACK);
  const decoded = buffer.subarray(0, snappyDecodeInto(body, buffer));
  return { decoded, buffer: buffer.length <= MAX_KEPT_BYTES ? buffer : undefined };
}

/**
 * Decodes the snappy block `body` into `out`, which must hold the preamble's length
 * (`snappyDeclaredLength`) plus SNAPPY_SLACK; returns the decoded length. Bytes of `out` past it
 * are left undefined. Every element is bounds-checked: a block
 * that reads past its end, writes past the declared length, copies from before the start or ends
 * short is MALFORMED_SNAPPY, and nothing past `out[length + SNAPPY_SLACK)` is written.
 */
export function snappyDecodeInto(body: Uint8Array, out: Uint8Array): number {
  const size = snappyDeclaredLength(body);
  if (out.length < size + SNAPPY_SLACK)
    throw new RangeError(`output holds ${out.length} bytes, the block needs ${size} + ${SNAPPY_SLACK}`);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  let s = 0;
  while (body[s]! >= 0x80) s++;
  s++;
  const n = body.length;
  let d = 0;
  while (s < n) {
    const tag = body[s++]!;
    const kind = tag & 3;
    let len: number;
    if (kind === 0) {
      // Literal: length - 1 in the tag's upper six bits, or in the 1 to 4 bytes after it.
      len = tag >>> 2;
      if (len >= 60) {
        const extra = len - 59;
        if (s + extra > n) return malformed(body, 'a literal length past the end of the block');
        len = body[s]!;
        if (extra > 1) len |= body[s + 1]! << 8;
        if (extra > 2) len |= body[s + 2]! << 16;
        if (extra > 3) len = (len | (body[s + 3]! << 24)) >>> 0;
        s += extra;
      }
      len += 1;
      if (len > n - s) return malformed(body, 'a literal past the end of the block');
      if (len > size - d) return malformed(body, `more than the ${size} bytes the preamble declares`);
      if (len > BULK) {
        out.set(body.subarray(s, s + len), d);
        d += len;
        s += len;
      } else {
        const end = s + len;
        while (s < end) out[d++] = body[s++]!;
      }
      continue;
    }
    let offset: number;
    if (kind === 1) {
      // Copy with a 1-byte offset: length 4 to 11, an 11-bit offset.
      if (s >= n) return malformed(body, 'a copy element past the end of the block');
      len = 4 + ((tag >>> 2) & 7);
      offset = ((tag >>> 5) << 8) | body[s++]!;
    } else if (kind === 2) {
      if (s + 2 > n) return malformed(body, 'a copy element past the end of the block');
      len = 1 + (tag >>> 2);
      offset = body[s]! | (body[s + 1]! << 8);
      s += 2;
    } else {
      if (s + 4 > n) return malformed(body, 'a copy element past the end of the block');
      len = 1 + (tag >>> 2);
      offset = (body[s]! | (body[s + 1]! << 8) | (body[s + 2]! << 16) | (body[s + 3]! << 24)) >>> 0;
      s += 4;
    }
    if (offset === 0 || offset > d) return malformed(body, 'a copy from before the start of the output');
    if (len > size - d) return malformed(body, `more than the ${size} bytes the preamble declares`);
    let from = d - offset;
    if (offset >= 4) {
      // Four bytes at a time, front to back: with the source at least four bytes behind, each
      // word read is already final. The last word may run up to three bytes past the copy, into
      // the slack, where the next elements overwrite it.
      for (let k = 0; k < len; k += 4) view.setUint32(d + k, view.getUint32(from + k, true), true);
      d += len;
    } else {
      // Overlapping copies repeat the last `offset` bytes: byte by byte, front to back.
      const end = d + len;
      while (d < end) out[d++] = out[from++]!;
    }
  }
  if (d !== size) return malformed(body, `decoded ${d} bytes, preamble says ${size}`);
  return size;
}

function malformed(body: Uint8Array, what: string): never {
  throw new CardinalError('MALFORMED_SNAPPY', `${what} (${body.length}-byte body)`);
}
