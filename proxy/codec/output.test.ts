import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeLabelRecords, encodeLabelsV1 } from './output.js';
import { encodeWriteRequestV1 } from './proto.js';
import { afterVarint } from './scan.js';
import type { Label } from './types.js';

/** The Label records of a 1.0 series as the protobuf encoder writes them (the series' payload). */
function reference(labels: Label[]): Uint8Array {
  const body = encodeWriteRequestV1({
    timeseries: [{ labels, samples: [], exemplars: [], histograms: [] }],
    metadata: [],
  });
  return body.subarray(afterVarint(body, 1));
}

describe('encodeLabelsV1', () => {
  const label = fc.record({
    name: fc.string({ unit: 'grapheme', maxLength: 20 }),
    value: fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constant('')),
  });

  it('property: the bytes the protobuf encoder writes for the same labels, and they decode back', () => {
    fc.assert(
      fc.property(fc.array(label, { maxLength: 12 }), (labels) => {
        const encoded = encodeLabelsV1(labels);
        expect(Buffer.from(encoded).equals(Buffer.from(reference(labels)))).toBe(true);
        expect(decodeLabelRecords(encoded)).toEqual(labels);
      }),
      { numRuns: 1000 },
    );
  });

  it('writes long values with multi-byte lengths, and text that is not well-formed as Node encodes it', () => {
    const long = 'é'.repeat(300);
    const encoded = encodeLabelsV1([{ name: 'a', value: long }]);
    expect(Buffer.from(encoded).equals(Buffer.from(reference([{ name: 'a', value: long }])))).toBe(true);
    // A lone surrogate becomes U+FFFD, as Buffer.from writes it.
    const lone = encodeLabelsV1([{ name: 'a', value: '\ud800' }]);
    expect([...lone]).toEqual([0x0a, 8, 0x0a, 1, 0x61, 0x12, 3, 0xef, 0xbf, 0xbd]);
  });
});
