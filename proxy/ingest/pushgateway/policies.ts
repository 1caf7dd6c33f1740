// Runs the MetricPolicy pipeline over the series of a push. The series are encoded as one
// remote-write 1.0 message, so pushes go through exactly the stages, verdict cache, limits,
// counters and top-offender statistics that remote-write traffic goes through.

import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../../codec/proto.js';
import { type SeriesIndex, scanWriteRequestV1 } from '../../codec/scan.js';
import type { Label, TimeSeriesV1 } from '../../codec/types.js';
import type { PolicyEngine } from '../../pipeline/engine.js';
import type { MetricFamily } from '../exposition/index.js';
import type { GroupingKey } from './grouping.js';
import type { RenderSeries } from './render.js';

export interface PushSeriesResult {
  /** True when every series passed untouched: the push may be forwarded as it came. */
  readonly unchanged: boolean;
  /** The series to forward, with their labels as the policies left them (no `__name__`). */
  readonly series: readonly RenderSeries[];
  readonly received: number;
}

/**
 * The label set the Pushgateway stores for a pushed sample: the sample's labels with the grouping
 * key's labels set over them (the Pushgateway replaces a pushed `job` label with the key's), sorted
 * by name as remote-write requires, `__name__` included.
 */
export function storedLabels(
  name: string,
  labels: readonly (readonly [string, string])[],
  key: GroupingKey,
): Label[] {
  const byName = new Map<string, string>();
  for (const [n, v] of labels) byName.set(n, v);
  for (const [n, v] of key.labels) byName.set(n, v);
  byName.set('__name__', name);
  const out: Label[] = [];
  for (const [n, v] of byName) if (v !== '') out.push({ name: n, value: v });
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

/**
 * Applies the policies to every sample of the families. Each pushed sample is a series with one
 * sample at `nowMs`. Synchronous, like the remote-write path: `scratch` is reused across requests.
 */
export function applyPushPolicies(opts: {
  readonly engine: PolicyEngine;
  readonly families: readonly MetricFamily[];
  readonly key: GroupingKey;
  readonly tenant: string | undefined;
  readonly nowMs: number;
  readonly scratch: SeriesIndex | undefined;
}): PushSeriesResult & { readonly index: SeriesIndex | undefined } {
  const original: RenderSeries[] = [];
  for (const f of opts.families) {
    for (const s of f.samples) original.push({ name: s.name, labels: s.labels, value: s.value });
  }
  // Without policies there is nothing to encode for: the push passes as it is.
  if (opts.engine.pipeline.empty) {
    return { unchanged: true, series: original, received: original.length, index: opts.scratch };
  }
  const timeseries: TimeSeriesV1[] = original.map((s) => ({
    labels: storedLabels(s.name, s.labels, opts.key),
    samples: [{ value: s.value, timestamp: opts.nowMs }],
    exemplars: [],
    histograms: [],
  }));
  const buf = Buffer.from(encodeWriteRequestV1({ timeseries, metadata: [] }));
  const index = scanWriteRequestV1(buf, opts.scratch);
  const r = opts.engine.process(buf, index, opts.tenant, opts.nowMs);
  if (r.unchanged) return { unchanged: true, series: original, received: original.length, index };
  const series: RenderSeries[] = [];
  if (r.body !== undefined) {
    for (const ts of decodeWriteRequestV1(r.body).timeseries) {
      let name = '';
      const labels: [string, string][] = [];
      for (const l of ts.labels) {
        if (l.name === '__name__') name = l.value;
        else labels.push([l.name, l.value]);
      }
      for (const sample of ts.samples) series.push({ name, labels, value: sample.value });
    }
  }
  return { unchanged: false, series, received: original.length, index };
}
