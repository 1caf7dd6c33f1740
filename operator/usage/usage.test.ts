import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { dashboardExpressions, ruleExpressions } from './sources.js';
import { computeUsage, MAX_SOURCES_PER_METRIC, usageSpec } from './usage.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../../test/fixtures/usage/${name}`, import.meta.url), 'utf8');

describe('computeUsage', () => {
  const sources = [
    {
      id: 'PrometheusRule monitoring/shop-rules',
      exprs: ruleExpressions(parse(fixture('rules-shop.yaml')).spec),
    },
    {
      id: 'Dashboard monitoring/dashboards/shop.json',
      exprs: dashboardExpressions(JSON.parse(fixture('dashboard-shop.json'))),
    },
    {
      id: 'Dashboard monitoring/dashboards/legacy.json',
      exprs: dashboardExpressions(JSON.parse(fixture('dashboard-legacy.json'))),
    },
  ];

  it('collects what rules and dashboards read, with the labels they need', () => {
    const spec = usageSpec(computeUsage(sources));
    const rows = spec.metrics.map(
      (m) =>
        `${m.name ?? `~${m.pattern}`} ${m.labels ? `[${m.labels.join(',')}]` : `all-[${m.allLabelsExcept!.join(',')}]`}`,
    );
    expect(rows).toEqual([
      'job:shop_request_latency:p99 all-[]',
      'job:shop_requests:rate5m all-[]',
      'process_resident_memory_bytes all-[]',
      'shop_build_info all-[]',
      'shop_cart_items [cart]',
      'shop_maintenance_mode [job]',
      'shop_payment_failures_total all-[instance,pod]',
      'shop_queue_depth all-[]',
      'shop_request_duration_seconds_bucket [instance,job,le,route]',
      'shop_requests_total [code,job]',
      'shop_stock_level [warehouse]',
      'up all-[]',
      '~shop_stock_.+ [__name__]',
    ]);
  });

  it('names the sources of each metric', () => {
    const spec = usageSpec(computeUsage(sources));
    const q = spec.metrics.find((m) => m.name === 'shop_queue_depth');
    expect(q?.sources).toEqual([
      'Dashboard monitoring/dashboards/legacy.json',
      'Dashboard monitoring/dashboards/shop.json',
      'PrometheusRule monitoring/shop-rules',
    ]);
  });

  it('reports a broken panel and counts the rest of its dashboard', () => {
    const usage = computeUsage(sources);
    expect(usage.problems).toEqual([
      'Dashboard monitoring/dashboards/shop.json: panel "Broken panel" target A: unexpected end of expression at column 42',
    ]);
    expect(usage.names.has('shop_payment_failures_total')).toBe(true);
    expect(usage.names.has('shop_payment_attempts_total')).toBe(false);
  });

  it('bounds the sources listed per metric and says how many there are', () => {
    const many = Array.from({ length: 8 }, (_, i) => ({
      id: `Dashboard ns/d${i}`,
      exprs: { exprs: [{ where: 'panel', expr: 'up' }], problems: [] },
    }));
    const [up] = usageSpec(computeUsage(many)).metrics;
    expect(up?.sources).toHaveLength(MAX_SOURCES_PER_METRIC);
    expect(up?.sourceCount).toBe(8);
  });

  it('is the same whatever the order of the sources', () => {
    expect(usageSpec(computeUsage([...sources].reverse()))).toEqual(usageSpec(computeUsage(sources)));
  });
});
