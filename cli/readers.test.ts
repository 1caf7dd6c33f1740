import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileReaders, usageReaders } from './readers.js';

describe('readers', () => {
  it('reads who reads what from rule files, PrometheusRule objects and dashboards, as the operator does', () => {
    const d = mkdtempSync(join(tmpdir(), 'cardinal-readers-'));
    writeFileSync(
      join(d, 'rules.yaml'),
      'groups:\n  - name: api\n    rules:\n      - alert: Errors\n        expr: sum(rate(http_errors_total[5m])) > 1\n',
    );
    writeFileSync(
      join(d, 'prometheusrule.yaml'),
      'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n    - name: g\n      rules:\n        - record: job:up:sum\n          expr: sum by (job) (up)\n',
    );
    const dash = join(d, 'dash.json');
    writeFileSync(
      dash,
      JSON.stringify({
        title: 'API',
        panels: [
          {
            title: 'latency',
            targets: [{ expr: 'histogram_quantile(0.9, rate(api_seconds_bucket[$__rate_interval]))' }],
          },
        ],
      }),
    );
    const readers = usageReaders(
      fileReaders([join(d, 'rules.yaml'), join(d, 'prometheusrule.yaml')], [dash]),
    );
    expect(readers.readers('http_errors_total')).toEqual([`rules ${join(d, 'rules.yaml')}`]);
    expect(readers.readers('up')).toEqual([`rules ${join(d, 'prometheusrule.yaml')}`]);
    expect(readers.readers('api_seconds_bucket')).toEqual([`dashboard ${dash}`]);
    expect(readers.readers('debug_total')).toEqual([]);
  });

  it('MetricUsage entries by name and by pattern', () => {
    const r = usageReaders([
      { name: 'a_total', sources: ['PrometheusRule x/y'] },
      { pattern: 'node_.*', sources: ['Dashboard ns/cm/node.json'] },
      { name: 'b', sources: [] },
    ]);
    expect(r.readers('a_total')).toEqual(['PrometheusRule x/y']);
    expect(r.readers('node_cpu_seconds_total')).toEqual(['Dashboard ns/cm/node.json']);
    expect(r.readers('b')).toEqual(['a MetricUsage document']);
    expect(r.readers('c')).toEqual([]);
  });
});
