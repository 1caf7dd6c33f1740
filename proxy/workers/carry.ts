// `--workers N`: counters that stay monotonic when a worker is started again. A worker that dies
// takes its counters with it and its successor starts from 0; summed over the workers, /metrics
// would then go down, which Prometheus's rate() reads as a reset of the whole sum (and counts the
// entire sum again as an increase). So the primary keeps, per worker index, the counter and
// histogram values it last collected from each worker (every few seconds, and at every /metrics),
// and when a worker dies adds them to what its successor reports. Gauges are current values and
// are never carried. What a crash loses is what the dead worker counted after the last collection.

import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import type { Rpc } from './rpc.js';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];
type Metric = MetricsJson[number];
type Value = Metric['values'][number] & { metricName?: string };

/**
 * Counters a worker restores itself at start (the queue's drop counts, kept in its directory):
 * carrying them would count them twice.
 */
export const RESTORED_AT_START: ReadonlySet<string> = new Set([
  'cardinal_proxy_queue_dropped_samples_total',
  'cardinal_proxy_queue_dropped_records_total',
]);

/** What is carried over from a metric: counters and histograms, not what the worker restores. */
export function carried(m: { readonly name: string; readonly type: string }): boolean {
  return (m.type === 'counter' || m.type === 'histogram') && !RESTORED_AT_START.has(m.name);
}

function key(v: Value): string {
  const labels = Object.keys(v.labels)
    .sort()
    .map((k) => `${k}=${String(v.labels[k])}`)
    .join('\u0000');
  return `${v.metricName ?? ''}\u0001${labels}`;
}

/** The carried part of a registry's JSON: counters and histograms only, values copied. */
export function carriedPart(json: MetricsJson): MetricsJson {
  return json
    .filter((m) => carried({ name: m.name, type: String(m.type) }))
    .map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels } })) }));
}

/**
 * `current` with the carried values of `base` added: for each counter and histogram of `base`, a
 * series `current` has gets `base`'s value added, one it lacks (a label set the successor has not
 * seen yet) is added as it was. Everything else of `current` is returned unchanged. Pure.
 */
export function addCarried(base: MetricsJson, current: MetricsJson): MetricsJson {
  const baseByName = new Map<string, Metric>();
  for (const m of base) if (carried({ name: m.name, type: String(m.type) })) baseByName.set(m.name, m);
  if (baseByName.size === 0) return current;
  const out: MetricsJson = [];
  for (const m of current) {
    const b = baseByName.get(m.name);
    if (b === undefined || !carried({ name: m.name, type: String(m.type) })) {
      out.push(m);
      continue;
    }
    baseByName.delete(m.name);
    const add = new Map<string, number>();
    for (const v of b.values as Value[]) add.set(key(v), (add.get(key(v)) ?? 0) + v.value);
    const values: Value[] = (m.values as Value[]).map((v) => {
      const k = key(v);
      const extra = add.get(k);
      if (extra === undefined) return v;
      add.delete(k);
      return { ...v, value: v.value + extra };
    });
    for (const v of b.values as Value[]) if (add.has(key(v))) values.push(v);
    out.push({ ...m, values });
  }
  // Metrics only the predecessor had (registered lazily, or by a stage plugin that failed to load).
  for (const b of baseByName.values()) out.push(b);
  return out;
}

/**
 * Per worker index: the values carried from its dead predecessors, and the last values collected
 * from the worker running now. The caller says when a worker of an index died.
 */
export class CounterCarry {
  readonly #carried = new Map<number, MetricsJson>();
  readonly #last = new Map<number, MetricsJson>();

  /** Records a collection from the running worker `index` (raw: what the worker itself counts). */
  seen(index: number, raw: MetricsJson): void {
    this.#last.set(index, carriedPart(raw));
  }

  /** The worker `index` is gone: what it counted until its last collection is carried over. */
  died(index: number): void {
    const last = this.#last.get(index);
    if (last === undefined) return;
    this.#last.delete(index);
    this.#carried.set(index, carriedPart(addCarried(this.#carried.get(index) ?? [], last)));
  }

  /**
   * What worker `index` contributes to the whole proxy's /metrics: its registry with the carried
   * values added; without an answer (restarting, or too slow) the last known counters.
   */
  part(index: number, raw: MetricsJson | undefined): MetricsJson {
    const base = this.#carried.get(index) ?? [];
    if (raw !== undefined) {
      this.seen(index, raw);
      return addCarried(base, raw);
    }
    return addCarried(base, this.#last.get(index) ?? []);
  }
}

/**
 * A worker's side: its counters and histograms alone (those named in `names`, when given), without
 * running the gauges' collect().
 */
export async function countersOf(registry: Registry, names?: readonly string[]): Promise<MetricsJson> {
  const metrics = registry
    .getMetricsAsArray()
    .filter((m) => carried({ name: m.name, type: String((m as { type?: unknown }).type) }))
    .filter((m) => names === undefined || names.includes(m.name));
  return (await Promise.all(
    metrics.map((m) => (m as unknown as { get(): Promise<Metric> | Metric }).get()),
  )) as MetricsJson;
}

/**
 * The primary's side: collects every running worker's counters each `intervalMs`, so that a crash
 * loses at most that long of counting. Returns a function that stops it.
 */
export function pollCounters(o: {
  readonly carry: CounterCarry;
  readonly live: () => Iterable<{ readonly index: number; readonly rpc: Rpc }>;
  readonly intervalMs: number;
}): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    const calls = [...o.live()].map((w) =>
      w.rpc.call<MetricsJson>('metrics.counters', undefined, o.intervalMs).then(
        (raw) => o.carry.seen(w.index, raw),
        () => undefined,
      ),
    );
    void Promise.all(calls).finally(() => {
      running = false;
    });
  }, o.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
