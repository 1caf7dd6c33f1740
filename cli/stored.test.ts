import { describe, expect, it } from 'vitest';
import { validatePolicies } from '../policy/validate.js';
import type { Label } from '../proxy/codec/types.js';
import { compilePipeline } from '../proxy/pipeline/compile.js';
import type { PrometheusClient } from './prometheus.js';
import { deleteSelectors } from './retro.js';
import { evaluateStored } from './stored.js';

/** A Prometheus holding `perMetric` series of each of `metrics` metrics, recording the calls. */
function fakePrometheus(metrics: number, perMetric: number) {
  const names = Array.from({ length: metrics }, (_, i) => `m${String(i).padStart(3, '0')}`);
  const calls: { match: readonly string[]; limit: number }[] = [];
  const client: PrometheusClient = {
    url: 'http://fake',
    metricNames: async () => [...names].reverse(),
    series: async (match, _range, limit) => {
      calls.push({ match, limit });
      const wanted = /^\{__name__=~"(.*)"\}$/.exec(match[0]!)![1]!.split('|');
      const out: Label[][] = [];
      for (const n of wanted) {
        for (let j = 0; j < perMetric; j++)
          out.push([
            { name: '__name__', value: n },
            { name: 'i', value: String(j) },
          ]);
      }
      return out.slice(0, limit);
    },
    headSeries: async () => metrics * perMetric,
    query: async () => [],
    deleteSeries: async () => {},
    cleanTombstones: async () => {},
  };
  return { client, calls };
}

const pipeline = compilePipeline(
  validatePolicies([{ name: 'p', namespace: 't', source: 'p.yaml:1', spec: { drop: ['m00[0-4]'] } }]),
);

describe('evaluateStored', () => {
  it('lists series in pages of metric names and counts what the policies do', async () => {
    const { client, calls } = fakePrometheus(120, 3);
    const r = await evaluateStored({ client, pipeline, range: { startMs: 0, endMs: 1 }, maxSeries: 10_000 });
    expect(calls).toHaveLength(3);
    expect(calls.map((c) => c.match[0]!.split('|').length)).toEqual([50, 50, 20]);
    expect(r).toMatchObject({
      metricNames: 120,
      metricsListed: 120,
      seriesListed: 360,
      truncated: false,
      headSeries: 360,
    });
    const rows = [...r.rows.values()];
    expect(rows).toHaveLength(5);
    expect(rows.every((x) => x.effect === 'dropped' && x.series === 3 && x.rule === 'drop[0]')).toBe(true);
    expect(r.metrics.get('m002')?.dropped).toHaveLength(3);
  });

  it('stops at --max-series, asking no more than the budget, and says the counts are a lower bound', async () => {
    const { client, calls } = fakePrometheus(120, 3);
    const r = await evaluateStored({ client, pipeline, range: { startMs: 0, endMs: 1 }, maxSeries: 200 });
    expect(calls.map((c) => c.limit)).toEqual([201, 51]);
    expect(r).toMatchObject({ seriesListed: 200, truncated: true });
    expect(r.metricsListed).toBe(67);
  });
});

describe('deleteSelectors', () => {
  it('names the whole metric when every series goes, and otherwise pins the other labels empty', () => {
    const series = (labels: Record<string, string>): Label[] =>
      Object.entries(labels).map(([name, value]) => ({ name, value }));
    const dev = series({ __name__: 'app_info', env: 'dev' });
    expect(
      deleteSelectors('app_info', {
        listed: 1,
        labelNames: new Set(['__name__', 'env']),
        dropped: [dev],
        droppedBy: new Set(),
      }),
    ).toEqual(['{__name__="app_info"}']);
    expect(
      deleteSelectors('app_info', {
        listed: 3,
        labelNames: new Set(['__name__', 'env', 'extra', 'zone']),
        dropped: [dev],
        droppedBy: new Set(),
      }),
    ).toEqual(['{__name__="app_info",env="dev",extra="",zone=""}']);
  });
});
