// Runs the MetricPolicy pipeline over the series of a push. The series are encoded as one
// remote-write 1.0 message, so pushes go through exactly the stages, verdict cache, limits,
// counters and top-offender statistics that remote-write traffic goes through.

import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../../codec/proto.js';
import { type SeriesIndex, scanWriteRequestV1 } from '../../codec/scan.js';
import type { Label, TimeSeriesV1 } from '../../codec/types.js';
import type { PolicyEngine, ProcessResult } from '../../pipeline/engine.js';
import type { MetricFamily } from '../exposition/index.js';
import { refusedAsError } from '../remote-write.js';
import type { GroupingKey } from './grouping.js';
import type { RenderSeries } from './render.js';

type PushResult = PushSeriesResult & { readonly index: SeriesIndex | undefined };

export interface PushSeriesResult {
  /** True when every series passed untouched: the push may be forwarded as it came. */
  readonly unchanged: boolean;
  /** The series to forward, with their labels as the policies left them (no `__name__`). */
  readonly series: readonly RenderSeries[];
  readonly received: number;
}

/**
 * The label sets the Pushgateway stores for the pushed samples, one per sample in the order of
 * `families`: each sample's labels with the grouping key's labels set over them (the Pushgateway
 * replaces a pushed `job` label with the key's), empty values left out, sorted by name as
 * remote-write requires, `__name__` included. Computed once per push and shared by the standards
 * check and the policies.
 */
export function storedLabelSets(families: readonly MetricFamily[], key: GroupingKey): Label[][] {
  const keyNames = new Set(key.labels.map(([n]) => n));
  const keyLabels: Label[] = [];
  for (const [name, value] of key.labels) if (value !== '') keyLabels.push({ name, value });
  const out: Label[][] = [];
  for (const f of families) {
    for (const s of f.samples) {
      const set: Label[] = [{ name: '__name__', value: s.name }, ...keyLabels];
      for (const [name, value] of s.labels) {
        if (value !== '' && name !== '__name__' && !keyNames.has(name)) set.push({ name, value });
      }
      set.sort(byName);
      out.push(set);
    }
  }
  return out;
}

function byName(a: Label, b: Label): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Applies the policies to every sample of the families. Each pushed sample is a series with one
 * sample at `nowMs`. Limits are decided as on the remote-write path (PolicyEngine.run): with a
 * shared store, against the global limit, asking the store about series this replica does not know;
 * then the answer is a Promise, and `scratch` is in use until it settles (the caller must not hand
 * it to another push meanwhile). Synchronous otherwise.
 */
export function applyPushPolicies(opts: {
  readonly engine: PolicyEngine;
  readonly families: readonly MetricFamily[];
  /** storedLabelSets(families, key). */
  readonly stored: readonly Label[][];
  readonly tenant: string | undefined;
  readonly nowMs: number;
  readonly scratch: SeriesIndex | undefined;
}): PushResult | Promise<PushResult> {
  const original: RenderSeries[] = [];
  for (const f of opts.families) {
    for (const s of f.samples) original.push({ name: s.name, labels: s.labels, value: s.value });
  }
  // Without policies there is nothing to encode for: the push passes as it is.
  if (opts.engine.pipeline.empty) {
    return { unchanged: true, series: original, received: original.length, index: opts.scratch };
  }
  const timeseries: TimeSeriesV1[] = opts.stored.map((labels, i) => ({
    labels,
    samples: [{ value: original[i]!.value, timestamp: opts.nowMs }],
    exemplars: [],
    histograms: [],
  }));
  const buf = Buffer.from(encodeWriteRequestV1({ timeseries, metadata: [] }));
  const index = scanWriteRequestV1(buf, opts.scratch);
  const engine = opts.engine;
  const r = refusedAsError(() => engine.run(buf, index, opts.tenant, opts.nowMs));
  if (r instanceof Promise)
    return r.then(
      (done) => pushResult(done, original, index),
      (err: unknown) =>
        refusedAsError(() => {
          throw err;
        }),
    );
  return pushResult(r, original, index);
}

function pushResult(r: ProcessResult, original: RenderSeries[], index: SeriesIndex): PushResult {
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
