import { describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { negotiate } from './negotiate.js';

describe('negotiate', () => {
  it.each([
    [undefined, undefined, '1.0'],
    ['', 'snappy', '1.0'],
    ['application/x-protobuf', 'snappy', '1.0'],
    ['application/x-protobuf;proto=prometheus.WriteRequest', 'snappy', '1.0'],
    ['application/x-protobuf; proto=io.prometheus.write.v2.Request', 'snappy', '2.0'],
    ['Application/X-Protobuf;proto="io.prometheus.write.v2.Request"', 'SNAPPY', '2.0'],
    ['application/x-protobuf;charset=utf-8;proto=io.prometheus.write.v2.Request', undefined, '2.0'],
  ] as const)('Content-Type %j with Content-Encoding %j is remote-write %s', (type, encoding, version) => {
    expect(negotiate(type, encoding)).toBe(version);
  });

  it.each([
    [
      'application/json',
      'snappy',
      415,
      'unsupported Content-Type: "application/json"; expected application/x-protobuf',
    ],
    [
      'application/x-protobuf;proto=io.prometheus.write.v3.Request',
      'snappy',
      415,
      'proto=io.prometheus.write.v3.Request is not supported',
    ],
    ['application/x-protobuf', 'gzip', 415, 'unsupported Content-Encoding: "gzip"; only snappy is supported'],
    ['application/x-protobuf', 'zstd', 415, 'unsupported Content-Encoding: "zstd"'],
  ])('rejects Content-Type %j, Content-Encoding %j with %i', (type, encoding, status, message) => {
    let caught: unknown;
    try {
      negotiate(type, encoding);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CardinalError);
    expect((caught as CardinalError).status).toBe(status);
    expect((caught as CardinalError).message).toContain(message);
  });
});
