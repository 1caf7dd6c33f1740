// Down-conversion of a remote-write 2.0 request to a 1.0 WriteRequest, for receivers that only
// speak 1.0. Everything 1.0 can carry is kept:
// - labels and exemplar labels are resolved from the symbols table;
// - samples and native histograms map field for field (both versions share the Histogram message);
// - per-series metadata becomes 1.0's per-family MetricMetadata, one entry per family name, the
//   first series of a family deciding its type, help and unit;
// - created timestamps are dropped: prometheus.TimeSeries has no field for them.
//
// Metadata family names. 2.0 attaches metadata to series, 1.0 to metric families (the name on the
// exposition format's `# TYPE` line). The family name is the series' `__name__`, except that the
// `_bucket`, `_count` and `_sum` series of a classic histogram or summary drop that suffix, as
// their `# TYPE` line does. Counters keep their name as it is: whether `_total` belongs to the
// family name depends on the exposition format the target used, which 2.0 does not record.

import { CardinalError } from '../errors.js';
import {
  type BucketSpan,
  type ExemplarV2,
  type Histogram,
  type Label,
  type MetricMetadataV1,
  MetricTypeV1,
  MetricTypeV2,
  type RequestV2,
  type TimeSeriesV1,
  type WriteRequestV1,
} from './types.js';

/** io.prometheus.write.v2 Metadata.MetricType -> prometheus.MetricMetadata.MetricType, by v2 number. */
const METRIC_TYPE_V2_TO_V1: Readonly<Record<number, number>> = {
  [MetricTypeV2.UNSPECIFIED]: MetricTypeV1.UNKNOWN,
  [MetricTypeV2.COUNTER]: MetricTypeV1.COUNTER,
  [MetricTypeV2.GAUGE]: MetricTypeV1.GAUGE,
  [MetricTypeV2.HISTOGRAM]: MetricTypeV1.HISTOGRAM,
  [MetricTypeV2.GAUGEHISTOGRAM]: MetricTypeV1.GAUGEHISTOGRAM,
  [MetricTypeV2.SUMMARY]: MetricTypeV1.SUMMARY,
  [MetricTypeV2.INFO]: MetricTypeV1.INFO,
  [MetricTypeV2.STATESET]: MetricTypeV1.STATESET,
};

/** Maps a 2.0 metric type to 1.0; a type this code does not know becomes UNKNOWN. */
export function metricTypeV2ToV1(type: number): number {
  return METRIC_TYPE_V2_TO_V1[type] ?? MetricTypeV1.UNKNOWN;
}

const CLASSIC_SUFFIXES = ['_bucket', '_count', '_sum'] as const;

/** The 1.0 metric family name for a series named `name` whose metadata has 1.0 type `type`. */
export function familyName(name: string, type: number, hasNativeHistograms: boolean): string {
  const aggregate =
    type === MetricTypeV1.HISTOGRAM || type === MetricTypeV1.GAUGEHISTOGRAM || type === MetricTypeV1.SUMMARY;
  if (!aggregate || hasNativeHistograms) return name;
  for (const suffix of CLASSIC_SUFFIXES) {
    if (name.length > suffix.length && name.endsWith(suffix)) return name.slice(0, -suffix.length);
  }
  return name;
}

function symbol(symbols: readonly string[], ref: number, where: string): string {
  const s = symbols[ref];
  if (s === undefined) {
    throw new CardinalError(
      'INVALID_WRITE_REQUEST',
      `${where}=${ref} out of range (symbols: ${symbols.length})`,
    );
  }
  return s;
}

function resolveLabels(symbols: readonly string[], refs: readonly number[], where: string): Label[] {
  if (refs.length % 2 !== 0) {
    throw new CardinalError('INVALID_WRITE_REQUEST', `${where}: odd number of refs (${refs.length})`);
  }
  const labels: Label[] = [];
  for (let k = 0; k < refs.length; k += 2) {
    labels.push({
      name: symbol(symbols, refs[k]!, `${where}[${k}]`),
      value: symbol(symbols, refs[k + 1]!, `${where}[${k + 1}]`),
    });
  }
  return labels;
}

function copySpans(spans: readonly BucketSpan[]): BucketSpan[] {
  return spans.map((s) => ({ offset: s.offset, length: s.length }));
}

/** Copies a histogram; the message is identical in both versions, field for field. */
export function copyHistogram(h: Histogram): Histogram {
  const out: Histogram = {
    sum: h.sum,
    schema: h.schema,
    zeroThreshold: h.zeroThreshold,
    negativeSpans: copySpans(h.negativeSpans),
    negativeDeltas: [...h.negativeDeltas],
    negativeCounts: [...h.negativeCounts],
    positiveSpans: copySpans(h.positiveSpans),
    positiveDeltas: [...h.positiveDeltas],
    positiveCounts: [...h.positiveCounts],
    resetHint: h.resetHint,
    timestamp: h.timestamp,
    customValues: [...h.customValues],
  };
  if (h.countInt !== undefined) out.countInt = h.countInt;
  if (h.countFloat !== undefined) out.countFloat = h.countFloat;
  if (h.zeroCountInt !== undefined) out.zeroCountInt = h.zeroCountInt;
  if (h.zeroCountFloat !== undefined) out.zeroCountFloat = h.zeroCountFloat;
  return out;
}

function convertExemplar(symbols: readonly string[], e: ExemplarV2, where: string) {
  return {
    labels: resolveLabels(symbols, e.labelsRefs, `${where}.labels_refs`),
    value: e.value,
    timestamp: e.timestamp,
  };
}

/**
 * Converts a 2.0 request to a 1.0 WriteRequest (see the file comment for what is kept and how).
 * Throws CardinalError INVALID_WRITE_REQUEST when a symbol reference is out of range or a label
 * reference list has odd length; a request from `decodeRequestV2` has already passed those checks.
 */
export function requestV2ToWriteRequestV1(req: RequestV2): WriteRequestV1 {
  const { symbols } = req;
  const timeseries: TimeSeriesV1[] = [];
  const metadata: MetricMetadataV1[] = [];
  const families = new Set<string>();
  for (let i = 0; i < req.timeseries.length; i++) {
    const ts = req.timeseries[i]!;
    const where = `timeseries[${i}]`;
    const labels = resolveLabels(symbols, ts.labelsRefs, `${where}.labels_refs`);
    timeseries.push({
      labels,
      samples: ts.samples.map((s) => ({ value: s.value, timestamp: s.timestamp })),
      exemplars: ts.exemplars.map((e, k) => convertExemplar(symbols, e, `${where}.exemplars[${k}]`)),
      histograms: ts.histograms.map(copyHistogram),
    });
    // ts.createdTimestamp has no place in 1.0 and is dropped.

    const m = ts.metadata;
    const help = symbol(symbols, m.helpRef, `${where}.metadata.help_ref`);
    const unit = symbol(symbols, m.unitRef, `${where}.metadata.unit_ref`);
    if (m.type === MetricTypeV2.UNSPECIFIED && help === '' && unit === '') continue;
    const name = labels.find((l) => l.name === '__name__')?.value;
    if (name === undefined || name === '') continue;
    const type = metricTypeV2ToV1(m.type);
    const family = familyName(name, type, ts.histograms.length > 0);
    if (families.has(family)) continue;
    families.add(family);
    metadata.push({ type, metricFamilyName: family, help, unit });
  }
  return { timeseries, metadata };
}
