// Full decoding and encoding of the remote-write messages, for the paths that need objects: the
// down-conversion of 2.0 requests for 1.0 receivers, tests and tools. The per-request hot path uses
// scan.ts instead.
//
// Decoding: the body is first validated by the scanner (so both paths accept and reject exactly the
// same bodies, including remote-write 2.0 reference checks), then decoded by protobufjs from the
// schemas below and converted to plain objects with 64-bit integers as numbers.
//
// Encoding is written out by hand on protobufjs's Writer rather than generated, for two reasons:
// protobufjs writes every field that is present on the object, even proto3 defaults, and in this
// version does not pack repeated scalars of a parsed proto3 schema. The hand-written encoders emit
// the canonical form Prometheus itself sends: fields in number order, proto3 default scalars
// omitted (a double is default only when it is +0, so -0 survives), oneof members written whenever
// present, repeated scalars packed.

import protobuf from 'protobufjs';
import { CardinalError } from '../errors.js';
import { scanRequestV2, scanWriteRequestV1 } from './scan.js';
import type {
  BucketSpan,
  ExemplarV1,
  ExemplarV2,
  Histogram,
  Label,
  MetadataV2,
  MetricMetadataV1,
  RequestV2,
  Sample,
  TimeSeriesV1,
  TimeSeriesV2,
  WriteRequestV1,
} from './types.js';

// The schemas as published in prometheus/prometheus: prompb/remote.proto and prompb/types.proto
// (remote-write 1.0, the messages a WriteRequest uses) and prompb/io/prometheus/write/v2/types.proto
// (remote-write 2.0). gogoproto options are left out; they do not change the wire format.
// prometheus.Histogram and io.prometheus.write.v2.Histogram have the same fields and numbers; only
// their ResetHint enum names differ, so each schema declares its own enum before these fields.
const HISTOGRAM_FIELDS = `  oneof count { uint64 count_int = 1; double count_float = 2; }
  double sum = 3;
  sint32 schema = 4;
  double zero_threshold = 5;
  oneof zero_count { uint64 zero_count_int = 6; double zero_count_float = 7; }
  repeated BucketSpan negative_spans = 8;
  repeated sint64 negative_deltas = 9;
  repeated double negative_counts = 10;
  repeated BucketSpan positive_spans = 11;
  repeated sint64 positive_deltas = 12;
  repeated double positive_counts = 13;
  ResetHint reset_hint = 14;
  int64 timestamp = 15;
  repeated double custom_values = 16;
}
message BucketSpan { sint32 offset = 1; uint32 length = 2; }
`;

const SCHEMA_V1 = `
syntax = "proto3";
package prometheus;
message WriteRequest {
  repeated TimeSeries timeseries = 1;
  reserved 2;
  repeated MetricMetadata metadata = 3;
}
message MetricMetadata {
  enum MetricType {
    UNKNOWN = 0; COUNTER = 1; GAUGE = 2; HISTOGRAM = 3; GAUGEHISTOGRAM = 4; SUMMARY = 5; INFO = 6; STATESET = 7;
  }
  MetricType type = 1;
  string metric_family_name = 2;
  string help = 4;
  string unit = 5;
}
message Sample { double value = 1; int64 timestamp = 2; }
message Exemplar { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
message Histogram {
  enum ResetHint { UNKNOWN = 0; YES = 1; NO = 2; GAUGE = 3; }
${HISTOGRAM_FIELDS}message TimeSeries {
  repeated Label labels = 1;
  repeated Sample samples = 2;
  repeated Exemplar exemplars = 3;
  repeated Histogram histograms = 4;
}
message Label { string name = 1; string value = 2; }
`;

const SCHEMA_V2 = `
syntax = "proto3";
package io.prometheus.write.v2;
message Request {
  reserved 1 to 3;
  repeated string symbols = 4;
  repeated TimeSeries timeseries = 5;
}
message TimeSeries {
  repeated uint32 labels_refs = 1;
  repeated Sample samples = 2;
  repeated Histogram histograms = 3;
  repeated Exemplar exemplars = 4;
  Metadata metadata = 5;
  int64 created_timestamp = 6;
}
message Exemplar { repeated uint32 labels_refs = 1; double value = 2; int64 timestamp = 3; }
message Sample { double value = 1; int64 timestamp = 2; }
message Metadata {
  enum MetricType {
    METRIC_TYPE_UNSPECIFIED = 0; METRIC_TYPE_COUNTER = 1; METRIC_TYPE_GAUGE = 2; METRIC_TYPE_HISTOGRAM = 3;
    METRIC_TYPE_GAUGEHISTOGRAM = 4; METRIC_TYPE_SUMMARY = 5; METRIC_TYPE_INFO = 6; METRIC_TYPE_STATESET = 7;
  }
  MetricType type = 1;
  uint32 help_ref = 3;
  uint32 unit_ref = 4;
}
message Histogram {
  enum ResetHint { RESET_HINT_UNSPECIFIED = 0; RESET_HINT_YES = 1; RESET_HINT_NO = 2; RESET_HINT_GAUGE = 3; }
${HISTOGRAM_FIELDS}`;

/** The protobufjs message types, parsed once from the embedded schemas (no file is read at run time). */
export const writeRequestV1Type: protobuf.Type = protobuf
  .parse(SCHEMA_V1)
  .root.lookupType('prometheus.WriteRequest');
export const requestV2Type: protobuf.Type = protobuf
  .parse(SCHEMA_V2)
  .root.lookupType('io.prometheus.write.v2.Request');

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true };

const histogramType: protobuf.Type = writeRequestV1Type.root.lookupType('prometheus.Histogram');

/** Decodes one Histogram message (the same in both versions); the buffer must have been scanned. */
export function decodeHistogram(buf: Uint8Array): Histogram {
  return decodeWith(histogramType, buf) as unknown as Histogram;
}

function decodeWith(type: protobuf.Type, buf: Uint8Array): Record<string, unknown> {
  const reader = protobuf.Reader.create(buf);
  let message: protobuf.Message;
  try {
    message = type.decode(reader);
  } catch (err) {
    const what = err instanceof Error ? err.message : String(err);
    throw new CardinalError(
      'MALFORMED_PROTOBUF',
      `${type.fullName.slice(1)}: ${what} at byte ${reader.pos}`,
      {
        cause: err,
      },
    );
  }
  return type.toObject(message, TO_OBJECT);
}

/**
 * Decodes a prometheus.WriteRequest. Throws CardinalError MALFORMED_PROTOBUF on a malformed body.
 */
export function decodeWriteRequestV1(buf: Uint8Array): WriteRequestV1 {
  scanWriteRequestV1(buf);
  return decodeWith(writeRequestV1Type, buf) as unknown as WriteRequestV1;
}

const NO_METADATA: Readonly<MetadataV2> = Object.freeze({ type: 0, helpRef: 0, unitRef: 0 });

/**
 * Decodes an io.prometheus.write.v2.Request. Throws CardinalError MALFORMED_PROTOBUF on a malformed
 * body and INVALID_WRITE_REQUEST when references into the symbols table are broken. A series
 * without metadata gets the all-zero Metadata (type unspecified, help and unit the empty symbol).
 */
export function decodeRequestV2(buf: Uint8Array): RequestV2 {
  scanRequestV2(buf);
  const req = decodeWith(requestV2Type, buf) as unknown as RequestV2;
  for (const ts of req.timeseries) {
    // protobufjs reports an absent singular message as null.
    if ((ts.metadata as MetadataV2 | null) === null) ts.metadata = { ...NO_METADATA };
  }
  return req;
}

// Tags are `field_number << 3 | wire_type` (protobuf encoding, "Message Structure"). They are
// written as literals below; the comment beside each names the field and wire type.

/** proto3 omits a double field whose value is +0; -0 and NaN are not the default and are written. */
function isDefaultDouble(v: number): boolean {
  return v === 0 && 1 / v > 0;
}

function writePackedDoubles(w: protobuf.Writer, tag: number, values: readonly number[]): void {
  if (values.length === 0) return;
  w.uint32(tag).fork();
  for (const v of values) w.double(v);
  w.ldelim();
}

function writePackedSint64(w: protobuf.Writer, tag: number, values: readonly number[]): void {
  if (values.length === 0) return;
  w.uint32(tag).fork();
  for (const v of values) w.sint64(v);
  w.ldelim();
}

function writePackedUint32(w: protobuf.Writer, tag: number, values: readonly number[]): void {
  if (values.length === 0) return;
  w.uint32(tag).fork();
  for (const v of values) w.uint32(v);
  w.ldelim();
}

function writeSample(w: protobuf.Writer, tag: number, s: Sample): void {
  w.uint32(tag).fork();
  if (!isDefaultDouble(s.value)) w.uint32(9).double(s.value); // value = 1, I64
  if (s.timestamp !== 0) w.uint32(16).int64(s.timestamp); // timestamp = 2, VARINT
  w.ldelim();
}

function writeLabel(w: protobuf.Writer, tag: number, l: Label): void {
  w.uint32(tag).fork();
  if (l.name !== '') w.uint32(10).string(l.name); // name = 1
  if (l.value !== '') w.uint32(18).string(l.value); // value = 2
  w.ldelim();
}

function writeSpan(w: protobuf.Writer, tag: number, s: BucketSpan): void {
  w.uint32(tag).fork();
  if (s.offset !== 0) w.uint32(8).sint32(s.offset); // offset = 1, sint32
  if (s.length !== 0) w.uint32(16).uint32(s.length); // length = 2, uint32
  w.ldelim();
}

/** Histogram has the same field numbers and types in 1.0 and 2.0. */
function writeHistogram(w: protobuf.Writer, tag: number, h: Histogram): void {
  w.uint32(tag).fork();
  if (h.countInt !== undefined) w.uint32(8).uint64(h.countInt); // count_int = 1 (oneof count)
  if (h.countFloat !== undefined) w.uint32(17).double(h.countFloat); // count_float = 2 (oneof count)
  if (!isDefaultDouble(h.sum)) w.uint32(25).double(h.sum); // sum = 3
  if (h.schema !== 0) w.uint32(32).sint32(h.schema); // schema = 4, sint32
  if (!isDefaultDouble(h.zeroThreshold)) w.uint32(41).double(h.zeroThreshold); // zero_threshold = 5
  if (h.zeroCountInt !== undefined) w.uint32(48).uint64(h.zeroCountInt); // zero_count_int = 6 (oneof)
  if (h.zeroCountFloat !== undefined) w.uint32(57).double(h.zeroCountFloat); // zero_count_float = 7 (oneof)
  for (const s of h.negativeSpans) writeSpan(w, 66, s); // negative_spans = 8
  writePackedSint64(w, 74, h.negativeDeltas); // negative_deltas = 9
  writePackedDoubles(w, 82, h.negativeCounts); // negative_counts = 10
  for (const s of h.positiveSpans) writeSpan(w, 90, s); // positive_spans = 11
  writePackedSint64(w, 98, h.positiveDeltas); // positive_deltas = 12
  writePackedDoubles(w, 106, h.positiveCounts); // positive_counts = 13
  if (h.resetHint !== 0) w.uint32(112).int32(h.resetHint); // reset_hint = 14, enum
  if (h.timestamp !== 0) w.uint32(120).int64(h.timestamp); // timestamp = 15
  writePackedDoubles(w, 130, h.customValues); // custom_values = 16
  w.ldelim();
}

function writeExemplarV1(w: protobuf.Writer, e: ExemplarV1): void {
  w.uint32(26).fork(); // TimeSeries.exemplars = 3
  for (const l of e.labels) writeLabel(w, 10, l); // labels = 1
  if (!isDefaultDouble(e.value)) w.uint32(17).double(e.value); // value = 2
  if (e.timestamp !== 0) w.uint32(24).int64(e.timestamp); // timestamp = 3
  w.ldelim();
}

function writeSeriesV1(w: protobuf.Writer, ts: TimeSeriesV1): void {
  w.uint32(10).fork(); // WriteRequest.timeseries = 1
  for (const l of ts.labels) writeLabel(w, 10, l); // labels = 1
  for (const s of ts.samples) writeSample(w, 18, s); // samples = 2
  for (const e of ts.exemplars) writeExemplarV1(w, e); // exemplars = 3
  for (const h of ts.histograms) writeHistogram(w, 34, h); // histograms = 4
  w.ldelim();
}

function writeMetadataV1(w: protobuf.Writer, m: MetricMetadataV1): void {
  w.uint32(26).fork(); // WriteRequest.metadata = 3
  if (m.type !== 0) w.uint32(8).int32(m.type); // type = 1, enum
  if (m.metricFamilyName !== '') w.uint32(18).string(m.metricFamilyName); // metric_family_name = 2
  if (m.help !== '') w.uint32(34).string(m.help); // help = 4
  if (m.unit !== '') w.uint32(42).string(m.unit); // unit = 5
  w.ldelim();
}

/** Encodes a prometheus.WriteRequest in canonical form. */
export function encodeWriteRequestV1(req: WriteRequestV1): Uint8Array {
  const w = protobuf.Writer.create();
  for (const ts of req.timeseries) writeSeriesV1(w, ts);
  for (const m of req.metadata) writeMetadataV1(w, m);
  return w.finish();
}

function writeExemplarV2(w: protobuf.Writer, e: ExemplarV2): void {
  w.uint32(34).fork(); // TimeSeries.exemplars = 4
  writePackedUint32(w, 10, e.labelsRefs); // labels_refs = 1, packed
  if (!isDefaultDouble(e.value)) w.uint32(17).double(e.value); // value = 2
  if (e.timestamp !== 0) w.uint32(24).int64(e.timestamp); // timestamp = 3
  w.ldelim();
}

function writeSeriesV2(w: protobuf.Writer, ts: TimeSeriesV2): void {
  w.uint32(42).fork(); // Request.timeseries = 5
  writePackedUint32(w, 10, ts.labelsRefs); // labels_refs = 1, packed
  for (const s of ts.samples) writeSample(w, 18, s); // samples = 2
  for (const h of ts.histograms) writeHistogram(w, 26, h); // histograms = 3
  for (const e of ts.exemplars) writeExemplarV2(w, e); // exemplars = 4
  const m = ts.metadata;
  // All-zero metadata is indistinguishable from absent metadata in proto3, so it is left out.
  if (m.type !== 0 || m.helpRef !== 0 || m.unitRef !== 0) {
    w.uint32(42).fork(); // metadata = 5
    if (m.type !== 0) w.uint32(8).int32(m.type); // type = 1, enum
    if (m.helpRef !== 0) w.uint32(24).uint32(m.helpRef); // help_ref = 3
    if (m.unitRef !== 0) w.uint32(32).uint32(m.unitRef); // unit_ref = 4
    w.ldelim();
  }
  if (ts.createdTimestamp !== 0) w.uint32(48).int64(ts.createdTimestamp); // created_timestamp = 6
  w.ldelim();
}

/** Encodes an io.prometheus.write.v2.Request in canonical form. */
export function encodeRequestV2(req: RequestV2): Uint8Array {
  const w = protobuf.Writer.create();
  for (const s of req.symbols) w.uint32(34).string(s); // symbols = 4; an empty string is still an entry
  for (const ts of req.timeseries) writeSeriesV2(w, ts);
  return w.finish();
}
