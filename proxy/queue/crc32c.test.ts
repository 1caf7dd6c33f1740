import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c } from './crc32c.js';

/** The textbook bit-at-a-time definition, to check the table-driven one against. */
function reference(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('crc32c', () => {
  // Check values from RFC 3720 appendix B.4 and the common "123456789" test vector.
  it.each([
    ['123456789', Buffer.from('123456789'), 0xe3069283],
    ['32 zero bytes', Buffer.alloc(32, 0), 0x8a9136aa],
    ['32 bytes of 0xff', Buffer.alloc(32, 0xff), 0x62a8ab43],
    ['0..31', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
  ])('%s', (_name, buf, want) => {
    expect(crc32c(buf)).toBe(want);
  });

  it('equals the bit-wise definition and can continue over split input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (buf, cut) => {
        const at = buf.length === 0 ? 0 : cut % buf.length;
        expect(crc32c(buf)).toBe(reference(buf));
        expect(crc32c(buf, at, buf.length, crc32c(buf, 0, at))).toBe(reference(buf));
      }),
    );
  });
});
