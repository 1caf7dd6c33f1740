// Plain shapes of the remote-write messages, as decoded by proto.ts and accepted by its encoders.
//
// Field names are the .proto names in lowerCamelCase. 64-bit integers (timestamps, integer counts,
// bucket deltas) are `number`: millisecond timestamps and observation counts stay far below 2^53,
// and the decoder converts with `longs: Number`. Enumerations are plain numbers; the named values
// are exported as constant tables so that unknown values a newer sender uses survive a round trip.

/** prometheus.Label (remote-write 1.0, prompb/types.proto). */
export interface Label {
  name: string;
  value: string;
}

/** prometheus.Sample and io.prometheus.write.v2.Sample have the same fields and numbers. */
export interface Sample {
  value: number;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
}

/** BucketSpan is identical in both versions. */
export interface BucketSpan {
  /** Gap to the previous span, or the starting bucket index of the first span; may be negative. */
  offset: number;
  length: number;
}

/**
 * A native histogram. prometheus.Histogram (1.0) and io.prometheus.write.v2.Histogram share every
 * field number and type, so one shape serves both.
 *
 * `countInt`/`countFloat` and `zeroCountInt`/`zeroCountFloat` are protobuf oneofs: at most one of
 * each pair is present. Integer histograms use the `*Int` members and `*Deltas`; float histograms
 * use the `*Float` members and `*Counts`.
 */
export interface Histogram {
  countInt?: number;
  countFloat?: number;
  sum: number;
  /** -4..8 for exponential buckets, -53 for custom buckets (see `customValues`). */
  schema: number;
  zeroThreshold: number;
  zeroCountInt?: number;
  zeroCountFloat?: number;
  negativeSpans: BucketSpan[];
  negativeDeltas: number[];
  negativeCounts: number[];
  positiveSpans: BucketSpan[];
  positiveDeltas: number[];
  positiveCounts: number[];
  /** One of `ResetHint`. */
  resetHint: number;
  timestamp: number;
  /** Upper bounds of custom buckets when `schema` is -53. */
  customValues: number[];
}

/** Histogram.ResetHint; the numbers are the same in both versions, only the names differ. */
export const ResetHint = {
  UNKNOWN: 0,
  YES: 1,
  NO: 2,
  GAUGE: 3,
} as const;

/** prometheus.Exemplar (1.0). */
export interface ExemplarV1 {
  labels: Label[];
  value: number;
  timestamp: number;
}

/** prometheus.TimeSeries (1.0). */
export interface TimeSeriesV1 {
  labels: Label[];
  samples: Sample[];
  exemplars: ExemplarV1[];
  histograms: Histogram[];
}

/** prometheus.MetricMetadata.MetricType (1.0). */
export const MetricTypeV1 = {
  UNKNOWN: 0,
  COUNTER: 1,
  GAUGE: 2,
  HISTOGRAM: 3,
  GAUGEHISTOGRAM: 4,
  SUMMARY: 5,
  INFO: 6,
  STATESET: 7,
} as const;

/** prometheus.MetricMetadata (1.0): metadata travels per metric family, beside the series. */
export interface MetricMetadataV1 {
  /** One of `MetricTypeV1`. */
  type: number;
  metricFamilyName: string;
  help: string;
  unit: string;
}

/** prometheus.WriteRequest (1.0). */
export interface WriteRequestV1 {
  timeseries: TimeSeriesV1[];
  metadata: MetricMetadataV1[];
}

/** io.prometheus.write.v2.Metadata.MetricType. */
export const MetricTypeV2 = {
  UNSPECIFIED: 0,
  COUNTER: 1,
  GAUGE: 2,
  HISTOGRAM: 3,
  GAUGEHISTOGRAM: 4,
  SUMMARY: 5,
  INFO: 6,
  STATESET: 7,
} as const;

/** io.prometheus.write.v2.Exemplar: labels are pairs of indices into `RequestV2.symbols`. */
export interface ExemplarV2 {
  labelsRefs: number[];
  value: number;
  timestamp: number;
}

/** io.prometheus.write.v2.Metadata: help and unit are indices into `RequestV2.symbols`. */
export interface MetadataV2 {
  /** One of `MetricTypeV2`. */
  type: number;
  helpRef: number;
  unitRef: number;
}

/** io.prometheus.write.v2.TimeSeries. */
export interface TimeSeriesV2 {
  /** Pairs (name, value) of indices into `RequestV2.symbols`; the length is even. */
  labelsRefs: number[];
  samples: Sample[];
  histograms: Histogram[];
  exemplars: ExemplarV2[];
  /** Always present after decoding; all zero means "no metadata" and is not encoded. */
  metadata: MetadataV2;
  /** Milliseconds; 0 means not set (remote-write 2.0 spec). */
  createdTimestamp: number;
}

/** io.prometheus.write.v2.Request. */
export interface RequestV2 {
  /** The spec requires `symbols[0] === ''` whenever symbols are present. */
  symbols: string[];
  timeseries: TimeSeriesV2[];
}
