/** The smallest buffer reusableBuffer gives. */
export const MIN_REUSABLE_BYTES = 1 << 16;

/**
 * A new buffer of at least `size` bytes, grown in powers of two from 64 KiB, so that memory reused
 * from request to request (decoded bodies, request bodies) settles on one size for bodies of
 * varying size.
 */
export function reusableBuffer(size: number): Buffer {
  let want = MIN_REUSABLE_BYTES;
  while (want < size) want *= 2;
  return Buffer.allocUnsafeSlow(want);
}
