// The Pushgateway's protobuf push format: length-delimited io.prometheus.client.MetricFamily
// messages (client_model metrics.proto; Content-Type `application/vnd.google.protobuf;
// proto=io.prometheus.client.MetricFamily; encoding=delimited`). A protobuf push is turned into
// the text format 0.0.4 and then checked and forwarded exactly like a text push, so every rule
// applies to it the same way; problems name lines of that text rendering, which the answer says.

import protobuf from 'protobufjs';
import { CardinalError } from '../../errors.js';
import { escapeHelp, escapeLabelValue, formatValue } from './render.js';

// The fields the proxy reads; protobufjs skips the others (exemplars, created timestamps).
// Field numbers and types are those of client_model's metrics.proto.
const SCHEMA = `
syntax = "proto2";
package io.prometheus.client;
message LabelPair { optional string name = 1; optional string value = 2; }
enum MetricType { COUNTER = 0; GAUGE = 1; SUMMARY = 2; UNTYPED = 3; HISTOGRAM = 4; GAUGE_HISTOGRAM = 5; }
message Gauge { optional double value = 1; }
message Counter { optional double value = 1; }
message Untyped { optional double value = 1; }
message Quantile { optional double quantile = 1; optional double value = 2; }
message Summary { optional uint64 sample_count = 1; optional double sample_sum = 2; repeated Quantile quantile = 3; }
message Bucket { optional uint64 cumulative_count = 1; optional double cumulative_count_float = 4; optional double upper_bound = 2; }
message BucketSpan { optional sint32 offset = 1; optional uint32 length = 2; }
message Histogram {
  optional uint64 sample_count = 1; optional double sample_count_float = 4; optional double sample_sum = 2;
  repeated Bucket bucket = 3; optional sint32 schema = 5;
  repeated BucketSpan negative_span = 9; repeated BucketSpan positive_span = 12;
}
message Metric {
  repeated LabelPair label = 1; optional Gauge gauge = 2; optional Counter counter = 3; optional Summary summary = 4;
  optional Untyped untyped = 5; optional Histogram histogram = 7; optional int64 timestamp_ms = 6;
}
message MetricFamily { optional string name = 1; optional string help = 2; optional MetricType type = 3; repeated Metric metric = 4; }
`;

const familyType = protobuf.parse(SCHEMA).root.lookupType('io.prometheus.client.MetricFamily');

interface LabelPair {
  name?: string;
  value?: string;
}
interface Bucket {
  cumulativeCount?: number;
  cumulativeCountFloat?: number;
  upperBound?: number;
}
interface Metric {
  label?: LabelPair[];
  gauge?: { value?: number };
  counter?: { value?: number };
  untyped?: { value?: number };
  summary?: { sampleCount?: number; sampleSum?: number; quantile?: { quantile?: number; value?: number }[] };
  histogram?: {
    sampleCount?: number;
    sampleCountFloat?: number;
    sampleSum?: number;
    bucket?: Bucket[];
    schema?: number;
    positiveSpan?: unknown[];
    negativeSpan?: unknown[];
  };
  timestampMs?: number;
}
interface Family {
  name?: string;
  help?: string;
  type?: number;
  metric?: Metric[];
}

const TYPE_NAMES = ['counter', 'gauge', 'summary', 'untyped', 'histogram', 'gaugehistogram'] as const;

/** True for the Content-Type of a delimited protobuf push. */
export function isProtobufPush(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const parts = contentType.split(';').map((p) => p.trim().toLowerCase());
  return (
    parts[0] === 'application/vnd.google.protobuf' &&
    parts.includes('proto=io.prometheus.client.metricfamily') &&
    parts.includes('encoding=delimited')
  );
}

/**
 * Decodes a delimited protobuf push into the equivalent text-format body. Throws INVALID_PUSH
 * naming the message and byte offset for a malformed body, and for native histograms, which the
 * text format cannot carry.
 */
export function protobufPushToText(body: Uint8Array): string {
  const reader = protobuf.Reader.create(body);
  let out = '';
  let n = 0;
  while (reader.pos < reader.len) {
    n++;
    const start = reader.pos;
    let family: Family;
    try {
      const length = reader.uint32();
      if (reader.pos + length > reader.len) throw new Error(`length ${length} runs past the end of the body`);
      family = familyType.toObject(familyType.decode(reader, length), { longs: Number }) as Family;
    } catch (err) {
      throw new CardinalError(
        'INVALID_PUSH',
        `protobuf MetricFamily ${n} (byte ${start}): ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    out += familyText(family, n);
  }
  return out;
}

function familyText(f: Family, n: number): string {
  const name = f.name ?? '';
  const type = TYPE_NAMES[f.type ?? 0] ?? 'untyped';
  let out = '';
  if (f.help !== undefined && f.help !== '') out += `# HELP ${name} ${escapeHelp(f.help)}\n`;
  // The text format has no gauge histogram; its samples are rendered as a histogram's would be.
  out += `# TYPE ${name} ${type === 'gaugehistogram' ? 'histogram' : type}\n`;
  for (const m of f.metric ?? []) {
    const ts = m.timestampMs === undefined ? '' : ` ${m.timestampMs}`;
    const line = (suffix: string, value: number, extra?: [string, string]) =>
      `${name}${suffix}${labelText(m.label ?? [], extra)} ${formatValue(value)}${ts}\n`;
    if (type === 'histogram' || type === 'gaugehistogram') {
      const h = m.histogram ?? {};
      const buckets = h.bucket ?? [];
      if (
        buckets.length === 0 &&
        (h.schema !== undefined || (h.positiveSpan?.length ?? 0) > 0 || (h.negativeSpan?.length ?? 0) > 0)
      ) {
        throw new CardinalError(
          'INVALID_PUSH',
          `protobuf MetricFamily ${n} (${name}): native histograms cannot be pushed through the proxy; push classic buckets`,
        );
      }
      const count = h.sampleCountFloat ?? h.sampleCount ?? 0;
      let sawInf = false;
      for (const b of buckets) {
        const ub = b.upperBound ?? 0;
        if (ub === Number.POSITIVE_INFINITY) sawInf = true;
        out += line('_bucket', b.cumulativeCountFloat ?? b.cumulativeCount ?? 0, ['le', formatValue(ub)]);
      }
      // As the Pushgateway's own exposition does: the +Inf bucket is the count when not sent.
      if (!sawInf) out += line('_bucket', count, ['le', '+Inf']);
      out += line('_sum', h.sampleSum ?? 0);
      out += line('_count', count);
    } else if (type === 'summary') {
      const s = m.summary ?? {};
      for (const q of s.quantile ?? [])
        out += line('', q.value ?? 0, ['quantile', formatValue(q.quantile ?? 0)]);
      out += line('_sum', s.sampleSum ?? 0);
      out += line('_count', s.sampleCount ?? 0);
    } else {
      const v = type === 'counter' ? m.counter?.value : type === 'gauge' ? m.gauge?.value : m.untyped?.value;
      out += line('', v ?? 0);
    }
  }
  return out;
}

function labelText(labels: readonly LabelPair[], extra: [string, string] | undefined): string {
  const pairs = labels.map((l) => `${l.name ?? ''}="${escapeLabelValue(l.value ?? '')}"`);
  if (extra !== undefined) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}
