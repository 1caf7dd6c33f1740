// Snappy for remote-write bodies. Both remote-write 1.0 and 2.0 ("Protocol": Content-Encoding
// snappy) use the snappy *block* format, not the framed/streaming format: a varint holding the
// uncompressed length, then literal and copy elements (google/snappy format_description.txt).
//
// MEASURED_PLACEHOLDER

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

/**
 * Decompresses a snappy block. The declared length is checked against `maxDecodedBytes` before
 * anything is allocated, so a small body cannot make the proxy allocate a huge buffer.
 * Throws CardinalError BODY_TOO_LARGE when the declared size exceeds the limit, MALFORMED_SNAPPY
 * when the block is not valid.
 */
export function snappyDecode(body: Uint8Array, maxDecodedBytes: number): Buffer {
  const size = snappyDecodedLength(body);
  if (size < 0) {
    throw new CardinalError(
      'MALFORMED_SNAPPY',
      `bad length preamble in the first bytes of a ${body.length}-byte body`,
    );
  }
  if (size > maxDecodedBytes) {
    throw new CardinalError(
      'BODY_TOO_LARGE',
      `decoded size ${size} bytes exceeds the limit of ${maxDecodedBytes} bytes`,
    );
  }
  let out: string | Buffer;
  try {
    out = snappy.uncompressSync(body, { asBuffer: true });
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

/** Compresses into a snappy block, as a remote-write sender must. */
export function snappyEncode(raw: Uint8Array): Buffer {
  return snappy.compressSync(raw);
}
