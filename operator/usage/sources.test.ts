// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Grafana template variables are written ${name}, not JavaScript templates.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { VARIABLE_PLACEHOLDER as V } from '../../policy/promql.js';
import { dashboardExpressions, ruleExpressions, substituteVariables, variableQueryExpr } from './sources.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../../test/fixtures/usage/${name}`, import.meta.url), 'utf8');

describe('substituteVariables', () => {
  it.each([
    ['rate(x[$__rate_interval])', 'rate(x[5m])'],
    ['rate(x[${__interval}])', 'rate(x[5m])'],
    ['increase(x[$__range])', 'increase(x[5m])'],
    ['x / $__interval_ms', 'x / 300'],
    ['x{job=~"$job"}', `x{job=~"${V}"}`],
    ['x{job=~"${job:regex}"}', `x{job=~"${V}"}`],
    ['x{job=~"${job:csv}"}', `x{job=~"${V}"}`],
    ['x{job="[[job]]"}', `x{job="${V}"}`],
    ['rate(x[$win])', 'rate(x[5m])'],
    ['rate(x[[[win]]])', 'rate(x[5m])'],
    ['max_over_time(x[$win:$step])', 'max_over_time(x[5m:])'],
    ['max_over_time(x[1h:$step])', 'max_over_time(x[1h:1m])'],
    ['x offset $shift', 'x offset 5m'],
    ['${metric}_total', `${V}_total`],
    ['label_replace(x, "a", "$1", "b", "(.*)")', 'label_replace(x, "a", "$1", "b", "(.*)")'],
  ])('%s', (expr, want) => {
    expect(substituteVariables(expr)).toBe(want);
  });

  it('uses known values', () => {
    expect(substituteVariables('topk($n, x)', { values: new Map([['n', '10']]) })).toBe('topk(10, x)');
  });
});

describe('variableQueryExpr', () => {
  it.each([
    ['label_values(up, job)', 'up'],
    ['label_values(up{namespace="$ns"}, job)', 'up{namespace="$ns"}'],
    ['label_values(job)', undefined],
    ['query_result(topk(5, sum by (pod) (x)))', 'topk(5, sum by (pod) (x))'],
    ['label_names()', undefined],
    ['metrics(node_.*)', undefined],
    ['up{job="a"}', 'up{job="a"}'],
    ['', undefined],
  ])('%s', (query, want) => {
    expect(variableQueryExpr(query)).toBe(want);
  });
});

describe('ruleExpressions', () => {
  it('lists every rule with its group, recording rules with their output', () => {
    const { exprs, problems } = ruleExpressions(parse(fixture('rules-shop.yaml')).spec);
    expect(problems).toEqual([]);
    expect(exprs.map((e) => [e.where, e.record])).toEqual([
      ['shop.recording/job:shop_requests:rate5m', 'job:shop_requests:rate5m'],
      ['shop.recording/job:shop_request_latency:p99', 'job:shop_request_latency:p99'],
      ['shop.alerts/ShopErrorRateHigh', undefined],
      ['shop.alerts/ShopDown', undefined],
      ['shop.alerts/ShopQueueBacklog', undefined],
    ]);
  });

  it('says what is wrong with a malformed spec', () => {
    expect(ruleExpressions({}).problems).toEqual(['spec.groups is not a list']);
    expect(ruleExpressions({ groups: [{ name: 'g', rules: [{ alert: 'A' }] }] }).problems).toEqual([
      'g/A: expr is missing',
    ]);
    expect(ruleExpressions({ groups: [{ name: 'g', rules: [{ record: 'r', expr: 1 }] }] }).exprs).toEqual([
      { where: 'g/r', expr: '1', record: 'r' },
    ]);
  });
});

describe('dashboardExpressions', () => {
  it('reads panels, collapsed rows, variables; skips library panels, empty targets and other data sources', () => {
    const { exprs, problems } = dashboardExpressions(JSON.parse(fixture('dashboard-shop.json')));
    expect(problems).toEqual([]);
    expect(exprs.map((e) => `${e.where}: ${e.expr}`)).toEqual([
      'panel "Requests per second" target A: sum(rate(shop_requests_total{job=~"__cardinal_var__"}[5m]))',
      'panel "Latency by route" target A: histogram_quantile(0.9, sum by (le, route) (rate(shop_request_duration_seconds_bucket{job=~"__cardinal_var__", instance=~"__cardinal_var__"}[1m])))',
      'panel "Busiest carts" target A: topk(5, sum by (cart) (shop_cart_items))',
      'panel "Payment failures" target A: sum without (pod, instance) (rate(shop_payment_failures_total[1m]))',
      'panel "Broken panel" target A: sum(rate(shop_payment_attempts_total[5m])',
      'panel "Memory" target A: process_resident_memory_bytes{job=~"__cardinal_var__"} offset 5m',
      // The Loki panel, the Mixed panel's Loki target and the Loki variable are not PromQL.
      'panel "Mixed" target B: sum(shop_queue_depth)',
      'variable "job": shop_build_info',
      'variable "instance": shop_build_info{job="__cardinal_var__"}',
    ]);
  });

  it('reads the old schema rows', () => {
    const { exprs } = dashboardExpressions(JSON.parse(fixture('dashboard-legacy.json')));
    expect(exprs.map((e) => e.expr)).toEqual([
      'sum by (warehouse) (shop_stock_level)',
      'count by (__name__) ({__name__=~"shop_stock_.+"})',
      'shop_queue_depth / 300',
    ]);
  });

  it('rejects what is not a dashboard', () => {
    expect(dashboardExpressions([]).problems).toEqual(['not a dashboard object']);
    expect(dashboardExpressions({ panels: 'x' }).exprs).toEqual([]);
  });
});
