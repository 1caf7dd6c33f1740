import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { isProtobufPush, protobufPushToText } from './protobuf.js';

// Messages are written field by field with the numbers of client_model's metrics.proto, so the
// test does not share the schema it checks.
const w = () => protobuf.Writer.create();
const label = (name: string, value: string) => w().uint32(10).string(name).uint32(18).string(value).finish();
const sub = (writer: protobuf.Writer, field: number, bytes: Uint8Array) =>
  writer.uint32((field << 3) | 2).bytes(bytes);
const dbl = (field: number, v: number) =>
  w()
    .uint32((field << 3) | 1)
    .double(v)
    .finish();

function family(name: string, help: string | undefined, type: number, metrics: Uint8Array[]): Uint8Array {
  const f = w().uint32(10).string(name);
  if (help !== undefined) f.uint32(18).string(help);
  f.uint32(24).int32(type);
  for (const m of metrics) sub(f, 4, m);
  return f.finish();
}
const delimited = (...messages: Uint8Array[]) => {
  const out = w();
  for (const m of messages) out.bytes(m);
  return out.finish();
};

describe('protobufPushToText', () => {
  it('renders counters, gauges, summaries and histograms in the text format', () => {
    const counter = sub(sub(w(), 1, label('kind', 'a')), 3, dbl(1, 3)).finish();
    const gauge = sub(w(), 2, dbl(1, 1.5)).finish();
    const q = w().uint32(9).double(0.5).uint32(17).double(0.2).finish();
    const summary = sub(w(), 4, sub(w().uint32(8).uint64(4).uint32(17).double(2), 3, q).finish()).finish();
    const bucket = w().uint32(8).uint64(1).uint32(17).double(1).finish();
    const histogram = sub(
      w(),
      7,
      sub(w().uint32(8).uint64(2).uint32(17).double(3), 3, bucket).finish(),
    ).finish();
    const text = protobufPushToText(
      delimited(
        family('jobs_total', 'Jobs "run".\\', 0, [counter]),
        family('depth', undefined, 1, [gauge]),
        family('rpc_seconds', 'RPCs.', 2, [summary]),
        family('run_seconds', 'Runs.', 4, [histogram]),
      ),
    );
    expect(text).toBe(
      [
        '# HELP jobs_total Jobs "run".\\\\',
        '# TYPE jobs_total counter',
        'jobs_total{kind="a"} 3',
        '# TYPE depth gauge',
        'depth 1.5',
        '# HELP rpc_seconds RPCs.',
        '# TYPE rpc_seconds summary',
        'rpc_seconds{quantile="0.5"} 0.2',
        'rpc_seconds_sum 2',
        'rpc_seconds_count 4',
        '# HELP run_seconds Runs.',
        '# TYPE run_seconds histogram',
        'run_seconds_bucket{le="1"} 1',
        'run_seconds_bucket{le="+Inf"} 2',
        'run_seconds_sum 3',
        'run_seconds_count 2',
        '',
      ].join('\n'),
    );
  });

  it('keeps a timestamp, so the push is refused for it like a text push', () => {
    const gauge = sub(w(), 2, dbl(1, 1)).uint32(48).int64(1_700_000_000_000).finish();
    expect(protobufPushToText(delimited(family('g', undefined, 1, [gauge])))).toBe(
      '# TYPE g gauge\ng 1 1700000000000\n',
    );
  });

  it.each([
    [
      'a length past the end',
      Uint8Array.from([0x20, 0x0a, 0x01]),
      'protobuf MetricFamily 1 (byte 0): length 32 runs past the end of the body',
    ],
    ['a truncated field', Uint8Array.from([0x02, 0x0a, 0x05]), 'protobuf MetricFamily 1 (byte 0):'],
  ])('refuses %s with where it is', (_name, body, message) => {
    expect(() => protobufPushToText(body)).toThrow(message);
  });

  it('refuses native histograms, which the text format cannot carry', () => {
    const native = sub(w(), 7, w().uint32(8).uint64(2).uint32(40).sint32(3).finish()).finish();
    expect(() => protobufPushToText(delimited(family('h', undefined, 4, [native])))).toThrow(
      'protobuf MetricFamily 1 (h): native histograms cannot be pushed through the proxy',
    );
  });

  it.each([
    ['application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited', true],
    ['application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited', true],
    ['application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text', false],
    ['text/plain', false],
  ])('%s is a protobuf push: %s', (type, yes) => {
    expect(isProtobufPush(type)).toBe(yes);
  });
});
