import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from './units.js';

describe('parseSize', () => {
  it.each([
    ['33554432', 33554432],
    ['32MiB', 32 * 2 ** 20],
    ['32 MiB', 32 * 2 ** 20],
    ['32mib', 32 * 2 ** 20],
    ['512Mi', 512 * 2 ** 20],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['4GB', 4e9],
    ['10k', 10_000],
    ['128B', 128],
  ])('%j is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    ['32 megs', 'is not a size such as 32MiB'],
    ['-1', 'is not a size'],
    ['0', 'must be more than zero bytes'],
    ['0.5B', 'is not a whole number of bytes'],
    ['', 'is not a size'],
    ['99999999TiB', 'is not a whole number of bytes below 2^53'],
  ])('%j is refused: %s', (text, message) => {
    expect(() => parseSize(text)).toThrow(message);
  });

  it('property: a formatted size parses back to itself', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 52 }), (n) => {
        expect(parseSize(formatSize(n))).toBe(n);
      }),
    );
  });
});
