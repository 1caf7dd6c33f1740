// Snappy for remote-write bodies. Both remote-write 1.0 and 2.0 ("Protocol": Content-Encoding
// snappy) use the snappy *block* format, not the framed/streaming format: a varint holding the
// uncompressed length, then literal and copy elements (google/snappy format_description.txt).
//
// Measured 2026-11-22 on a 2-core Intel Xeon VM (Node 20.20, snappy 7.4.3 napi, snappyjs 0.7.0) with
// one 602,700-byte remote-write 1.0 body (3,000 series of 8 labels and one sample; 96 KB compressed).
// Mean per operation, a plain loop of 2,000 runs after warm-up / `vitest bench` (snappy.bench.ts):
//   decompress  native, copyOutputData: true   0.19-0.37 ms / 0.47 ms
//               native, binding default        2.9-3.7 ms   / 0.67 ms
//               snappyjs                       1.1-1.2 ms   / 1.21 ms
//   compress    native, copyOutputData: true   0.29-0.34 ms / 0.29 ms
//               native, binding default        3.2-4.1 ms   / 0.39 ms
//               snappyjs                       1.4-1.5 ms   / 1.83 ms
// So the native binding is used, with copyOutputData: true: by default it returns buffers backed by
// external memory, and one of those per request makes the garbage collector run so often that the
// mean cost grows up to tenfold, past snappyjs. Minimum times were ~0.12-0.2 ms for native either way.

import snappy from 'snappy';
import { CardinalError } from '../errors.js';

/**
 * Reads the uncompressed length from a snappy block's preamble: a little-endian base-128 varint of
 * at most 32 bits, so at most 5 bytes. Returns -1 when the preamble is missing or malformed.
 */
export function snappyDecodedLength(body: Uint8Array): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 5 && i < body.length; i++) {
    const b = body[i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return value > 0xffffffff ? -1 : value;
    scale *= 128;
  }
  return -1;
}

/** The length a snappy block's preamble declares; MALFORMED_SNAPPY when the preamble is bad. */
export function snappyDeclaredLength(body: Uint8Array): number {
  const size = snappyDecodedLength(body);
  if (size < 0) {
    throw new CardinalError(
      'MALFORMED_SNAPPY',
      `bad length preamble in the first bytes of a ${body.length}-byte body`,
    );
  }
  return size;
}

/**
 * Decompresses a snappy block. The declared length is checked against `maxDecodedBytes` before
 * anything is allocated, so a small body cannot make the proxy allocate a huge buffer.
 * Throws CardinalError BODY_TOO_LARGE when the declared size exceeds the limit, MALFORMED_SNAPPY
 * when the block is not valid.
 */
export function snappyDecode(body: Uint8Array, maxDecodedBytes: number): Buffer {
  const size = snappyCheckedLength(body, maxDecodedBytes);
  let out: string | Buffer;
  try {
    out = snappy.uncompressSync(body, { asBuffer: true, copyOutputData: true });
  } catch (err) {
    const what = err instanceof Error ? err.message : String(err);
    throw new CardinalError('MALFORMED_SNAPPY', `${what} (${body.length}-byte body)`, { cause: err });
  }
  // The binding returns a string only when asked to with asBuffer: false.
  const decoded = out as Buffer;
  if (decoded.length !== size) {
    throw new CardinalError('MALFORMED_SNAPPY', `decoded ${decoded.length} bytes, preamble says ${size}`);
  }
  return decoded;
}

/**
 * The decoded length a snappy block declares, once it is known to be one the proxy may allocate:
 * the checks of `snappyDecode`, before any decoding, with the same errors.
 */
export function snappyCheckedLength(body: Uint8Array, maxDecodedBytes: number): number {
  const size = snappyDeclaredLength(body);
  // The most a snappy block can expand: a 3-byte copy element (2-byte offset) writes at most 64
  // bytes (google/snappy format_description.txt, "Copy with 2-byte offset"); every other element
  // expands less. A preamble declaring more than that is corrupt, not a large body (400, not 413).
  if (size > Math.ceil((body.length * 64) / 3)) {
    throw new CardinalError(
      'MALFORMED_SNAPPY',
      `the preamble declares ${size} bytes, more than a ${body.length}-byte block can hold`,
    );
  }
  if (size > maxDecodedBytes) {
    throw new CardinalError(
      'BODY_TOO_LARGE',
      `decoded size ${size} bytes exceeds the limit of ${maxDecodedBytes} bytes`,
    );
  }
  return size;
}

/** Compresses into a snappy block, as a remote-write sender must. */
export function snappyEncode(raw: Uint8Array): Buffer {
  return snappy.compressSync(raw, { copyOutputData: true });
}
