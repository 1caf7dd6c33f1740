// Test helpers for stage plugins: a pipeline with plugins, run through the real engine on
// remote-write 1.0 requests. Used by the plugin tests here and in examples/stages/.

import { Registry } from 'prom-client';
import type { MetricPolicySpecT } from '../../../crds/metric-policy.js';
import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../../codec/proto.js';
import { scanWriteRequestV1 } from '../../codec/scan.js';
import type { Label, TimeSeriesV1 } from '../../codec/types.js';
import { compilePipeline, type Pipeline } from '../compile.js';
import { PolicyEngine } from '../engine.js';
import { type FailureKind, PluginGuard } from './guard.js';
import { checkPlugin, type LoadedPlugin } from './load.js';

export function seriesOf(labels: Record<string, string>, value = 1, timestamp = 1000): TimeSeriesV1 {
  const ls: Label[] = Object.entries(labels)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return { labels: ls, samples: [{ value, timestamp }], exemplars: [], histograms: [] };
}

export interface PluginRig {
  readonly pipeline: Pipeline;
  readonly engine: PolicyEngine;
  readonly registry: Registry;
  /** Counter samples by `reason/action`. */
  readonly counted: Map<string, number>;
  readonly logged: { stage: string; kind: FailureKind }[];
  /** Runs one request; returns the forwarded series as label records. */
  run(series: readonly TimeSeriesV1[]): Record<string, string>[];
  /** cardinal_proxy_stage_plugin_failures_total for (stage, kind). */
  failures(stage: string, kind: FailureKind): Promise<number>;
}

export function pluginRig(
  plugins: readonly unknown[],
  specs: readonly MetricPolicySpecT[],
  opts: { timeoutMs?: number } = {},
): PluginRig {
  const registry = new Registry();
  const logged: { stage: string; kind: FailureKind }[] = [];
  const guard = new PluginGuard({
    timeoutMs: opts.timeoutMs ?? 1000,
    registry,
    log: (stage, kind) => logged.push({ stage, kind }),
  });
  const byName = new Map<string, LoadedPlugin>();
  plugins.forEach((p, i) => {
    const loaded = checkPlugin(`plugin-${i}`, p);
    byName.set(loaded.plugin.name, loaded);
  });
  const pipeline = compilePipeline(
    specs.map((spec, i) => ({ name: `p${i}`, namespace: 'ns', spec })),
    undefined,
    { byName, guard },
  );
  const counted = new Map<string, number>();
  const engine = new PolicyEngine(
    pipeline,
    { verdictCacheSize: 1000, maxTrackedSeries: 10_000, maxTrackedLabelValues: 1000, maxMetricNames: 100 },
    {
      slot(slot, _metric, samples) {
        const s = pipeline.slots[slot]!;
        const key = `${s.reason}/${s.action}`;
        counted.set(key, (counted.get(key) ?? 0) + samples);
      },
      forwarded: () => false,
      newSeries() {},
    },
  );
  return {
    pipeline,
    engine,
    registry,
    counted,
    logged,
    run(series) {
      const req = { timeseries: [...series], metadata: [] };
      const buf = Buffer.from(encodeWriteRequestV1(req));
      const r = engine.process(buf, scanWriteRequestV1(buf), undefined, 2000);
      const out = r.unchanged ? req : decodeWriteRequestV1(r.body!);
      return out.timeseries.map((t) => ({
        ...Object.fromEntries(t.labels.map((l) => [l.name, l.value])),
        '#value': String(t.samples.reduce((a, s) => a + s.value, 0)),
      }));
    },
    async failures(stage, kind) {
      const m =
        (await registry.getSingleMetric('cardinal_proxy_stage_plugin_failures_total')?.get())?.values ?? [];
      return m.find((v) => v.labels.stage === stage && v.labels.kind === kind)?.value ?? 0;
    },
  };
}
