import { encodeWriteRequestV1 } from '../proxy/codec/proto.js';
import { snappyEncode } from '../proxy/codec/snappy.js';
import type { WriteRequestV1 } from '../proxy/codec/types.js';

export interface WorkloadOptions {
  /** Series per request. */
  readonly series: number;
  /** Labels per series, including __name__. */
  readonly labels: number;
  /** Distinct request bodies to cycle through (different timestamps and values). */
  readonly bodies: number;
  /** Fraction of each body's series that appear in no other body (a new pod name); default 0. */
  readonly newFraction?: number;
}

export interface Workload {
  readonly bodies: readonly Buffer[];
  readonly samplesPerRequest: number;
  readonly decodedBytes: number;
  /** Distinct label sets of a request (series whose labels coincide count once). */
  readonly distinctSeries: number;
  /** The most distinct label sets any one metric name has: what a per-metric limit must allow. */
  readonly maxSeriesPerMetric: number;
}

/**
 * A synthetic remote-write 1.0 workload shaped like a Kubernetes scrape: 50 metric names, each
 * series labelled like a pod's (job, namespace, pod, container, instance, ...), one sample each.
 */
export function makeWorkload(opts: WorkloadOptions): Workload {
  const bodies: Buffer[] = [];
  let decodedBytes = 0;
  const start = Date.UTC(2026, 0, 1);
  const perMetric = new Map<string, Set<string>>();
  for (let b = 0; b < opts.bodies; b++) {
    const req: WriteRequestV1 = { timeseries: [], metadata: [] };
    for (let s = 0; s < opts.series; s++) {
      const labels = [{ name: '__name__', value: `bench_metric_${s % 50}_total` }];
      for (let l = 1; l < opts.labels; l++) {
        // label_1 tells every series of a request apart (like a pod name); the others repeat, as
        // namespace, container or code labels do.
        labels.push({
          name: `label_${l}`,
          value:
            l === 1
              ? s < opts.series * (opts.newFraction ?? 0)
                ? `pod-${b}-${s}`
                : `pod-${s}`
              : `value-${l}-${(s * 7919 + l) % 1000}`,
        });
      }
      labels.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
      if (b === 0) {
        const name = labels.find((l) => l.name === '__name__')!.value;
        const sets = perMetric.get(name) ?? new Set<string>();
        perMetric.set(name, sets);
        sets.add(labels.map((l) => `${l.name}=${l.value}`).join(','));
      }
      req.timeseries.push({
        labels,
        samples: [{ value: b * 10 + (s % 97), timestamp: start + b * 15_000 }],
        exemplars: [],
        histograms: [],
      });
    }
    const raw = encodeWriteRequestV1(req);
    decodedBytes = raw.length;
    bodies.push(snappyEncode(raw));
  }
  const counts = [...perMetric.values()].map((sets) => sets.size);
  return {
    bodies,
    samplesPerRequest: opts.series,
    decodedBytes,
    distinctSeries: counts.reduce((a, b) => a + b, 0),
    maxSeriesPerMetric: Math.max(0, ...counts),
  };
}
