import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { validatePolicies } from '../../policy/validate.js';
import { compilePipeline } from './compile.js';
import { formatSeries, parseSeries, parseSeriesFile } from './series.js';
import { simulate } from './simulate.js';

function pipeline(...specs: [string, unknown][]) {
  return compilePipeline(
    validatePolicies(
      specs.map(([name, spec]) => ({ name, namespace: 'team', source: `${name}.yaml:1`, spec })),
    ),
  );
}

describe('simulate', () => {
  it('says per series what the engine did, with the rule, in order, limits included', () => {
    const p = pipeline(
      ['a-drops', { priority: 1, drop: ['debug_.*'] } satisfies MetricPolicySpecT],
      [
        'b-rewrite',
        {
          priority: 2,
          relabel: [{ action: 'labeldrop', regex: 'pod' }],
          limits: { perMetric: [{ name: 'http-cap', metric: 'http_.*', maxSeries: 2 }] },
        },
      ],
    );
    const series = [
      'debug_x{job="a"}',
      'http_requests_total{job="a",pod="p1"}',
      'http_requests_total{job="b"}',
      'http_requests_total{job="c"}',
      'up{job="a"}',
    ].map(parseSeries);
    const r = simulate(p, series, { nowMs: 1_000_000 });
    expect(
      r.map((s) => [
        s.outcome,
        s.output && formatSeries(s.output),
        s.hits.map((h) => `${h.policy} ${h.rule} ${h.reason}`),
      ]),
    ).toEqual([
      ['dropped', null, ['team/a-drops drop[0] metric_dropped']],
      ['rewritten', 'http_requests_total{job="a"}', ['team/b-rewrite relabel relabel_rewritten']],
      ['kept', 'http_requests_total{job="b"}', []],
      ['dropped', null, ['team/b-rewrite http-cap series_limit']],
      ['kept', 'up{job="a"}', []],
    ]);
    expect(r[1]!.steps).toEqual([
      { policy: 'team/a-drops', matched: true, dryRun: false, labels: series[1] },
      {
        policy: 'team/b-rewrite',
        matched: true,
        dryRun: false,
        labels: parseSeries('http_requests_total{job="a"}'),
      },
    ]);
    expect(r[0]!.steps.map((s) => s.labels)).toEqual([null, null]);
  });

  it('a dryRun policy keeps the series and still says what it would have done', () => {
    const r = simulate(pipeline(['dry', { mode: 'dryRun', drop: ['x'] }]), [parseSeries('x')]);
    expect(r[0]).toMatchObject({
      outcome: 'kept',
      hits: [{ rule: 'drop[0]', action: 'dropped', mode: 'dryRun' }],
    });
  });
});

describe('series notation', () => {
  it.each([
    ['up', 'up'],
    ['up{job="a",instance="x:1"}', 'up{instance="x:1",job="a"}'],
    ['{__name__="up", job="a\\"b"}', 'up{job="a\\"b"}'],
    ['up{job=""}', 'up'],
  ])('%j reads as %j', (text, formatted) => {
    expect(formatSeries(parseSeries(text))).toBe(formatted);
  });

  it.each([
    ['up{job=~"a"}', 'only ='],
    ['up{job="a",job="b"}', 'label job is given twice'],
    ['{job="a"}', 'needs a metric name'],
  ])('%j is refused: %s', (text, message) => {
    expect(() => parseSeries(text)).toThrow(message);
  });

  it('a series file takes exposition lines and comments, and names bad lines', () => {
    const r = parseSeriesFile('# HELP up x\nup{job="a"} 1\n\nhttp_total 3 1700000000\nbad{\n');
    expect(r.series.map(formatSeries)).toEqual(['up{job="a"}', 'http_total']);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatch(/^line 5: /);
  });
});
