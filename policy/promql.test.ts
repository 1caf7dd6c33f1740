import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allExcept, extract, type Need, PromQLError, some, union, VARIABLE_PLACEHOLDER } from './promql.js';

/** `name{a,b}`, `name{*}`, `name{* -pod}`, `~pattern{...}`, sorted, one per metric reference. */
function show(expr: string): string[] {
  return extract(expr)
    .metrics.map((m) => `${m.name ?? `~${m.pattern}`}${needText(m.need)}`)
    .sort();
}

function needText(n: Need): string {
  if (n.all) return n.except.size === 0 ? '{*}' : `{* -${[...n.except].sort().join(' -')}}`;
  return `{${[...n.labels].sort().join(',')}}`;
}

describe('extract', () => {
  it.each([
    // Raw selectors: a panel or an alert shows every label.
    ['up', ['up{*}']],
    ['up{job="api"}', ['up{*}']],
    ['{__name__="process_cpu_seconds_total", job="api"}', ['process_cpu_seconds_total{*}']],
    ['{"http.server.duration", "service.name"="x"}', ['http.server.duration{*}']],
    // Aggregations.
    ['sum(rate(http_requests_total[5m]))', ['http_requests_total{}']],
    [
      'sum by (job, code) (rate(http_requests_total{handler!="/metrics"}[5m]))',
      ['http_requests_total{code,handler,job}'],
    ],
    ['sum(rate(http_requests_total[5m])) by (job)', ['http_requests_total{job}']],
    [
      'sum without (pod, instance) (rate(http_requests_total[5m]))',
      ['http_requests_total{* -instance -pod}'],
    ],
    ['count(up == 0)', ['up{}']],
    ['max by (node) (node_load1)', ['node_load1{node}']],
    ['avg_over_time(up[1h])', ['up{*}']],
    ['count_values by (job) ("version", build_info)', ['build_info{job}']],
    [
      'topk(5, sum by (pod) (rate(container_cpu_usage_seconds_total[5m])))',
      ['container_cpu_usage_seconds_total{pod}'],
    ],
    ['topk(3, node_filesystem_avail_bytes)', ['node_filesystem_avail_bytes{*}']],
    ['sum(topk by (job) (3, x))', ['x{job}']],
    ['quantile(0.99, sum by (route) (rate(latency_sum[5m])))', ['latency_sum{route}']],
    ['stddev by (a) (x) + on (a) group_left sum by (a) (y)', ['x{a}', 'y{a}']],
    // Binary operators and vector matching.
    ['rate(errors_total[5m]) / rate(requests_total[5m])', ['errors_total{*}', 'requests_total{*}']],
    [
      'sum by (job) (rate(errors_total[5m])) / on (job) sum by (job) (rate(requests_total[5m]))',
      ['errors_total{job}', 'requests_total{job}'],
    ],
    [
      'sum by (namespace, pod) (rate(container_cpu_usage_seconds_total[5m])) * on (namespace, pod) group_left (node) kube_pod_info',
      ['container_cpu_usage_seconds_total{namespace,pod}', 'kube_pod_info{*}'],
    ],
    ['sum by (pod) (x) / ignoring (pod) group_left sum(y)', ['x{pod}', 'y{}']],
    [
      'kube_pod_owner * on (pod) group_right (owner_kind) sum by (pod) (container_memory_working_set_bytes)',
      ['container_memory_working_set_bytes{pod}', 'kube_pod_owner{*}'],
    ],
    ['x * ignoring (pod) y', ['x{*}', 'y{*}']],
    ['sum(x) by (a) > 10', ['x{a}']],
    [
      '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
      ['node_cpu_seconds_total{instance,mode}'],
    ],
    ['up == bool 1', ['up{*}']],
    ['up and on (job) sum by (job) (probe_success)', ['probe_success{job}', 'up{*}']],
    ['sum(a) unless on (x) b', ['a{}', 'b{x}']],
    ['sum(a) or vector(0)', ['a{}']],
    ['x / scalar(sum(y))', ['x{*}', 'y{}']],
    ['time() - process_start_time_seconds', ['process_start_time_seconds{*}']],
    // Subqueries, offset and @ modifiers.
    ['max_over_time(sum by (job) (rate(requests_total[1m]))[1h:5m])', ['requests_total{job}']],
    ['sum by (job) (rate(requests_total[5m] offset 1w))', ['requests_total{job}']],
    ['sum by (job) (requests_total @ end())', ['requests_total{job}']],
    ['sum by (job) (rate(requests_total[5m] @ 1609746000 offset -1h))', ['requests_total{job}']],
    ['sum by (job) (-requests_total)', ['requests_total{job}']],
    // Functions that read labels.
    [
      'sum by (service) (label_replace(rate(http_requests_total[5m]), "service", "$1", "app", "(.*)"))',
      ['http_requests_total{app,service}'],
    ],
    ['label_join(sum by (a, b) (x), "ab", "-", "a", "b")', ['x{a,b}']],
    ['sum by (dst) (label_join(x, "dst", ",", "src1", "src2"))', ['x{dst,src1,src2}']],
    ['sort_by_label(sum by (pod) (x), "pod")', ['x{pod}']],
    [
      'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))',
      ['http_request_duration_seconds_bucket{le,route}'],
    ],
    ['histogram_quantile(0.9, rate(h_bucket[5m]))', ['h_bucket{*}']],
    ['sum(histogram_quantile(0.9, rate(h_bucket[5m])))', ['h_bucket{le}']],
    ['absent(up{job="api"})', ['up{job}']],
    ['absent_over_time(heartbeat[10m])', ['heartbeat{}']],
    ['info(rate(http_requests_total[5m]))', ['http_requests_total{*}', 'target_info{*}']],
    ['info(x, {__name__="build_info"})', ['build_info{*}', 'x{*}']],
    // Regex matchers on __name__ keep every metric they could match.
    ['sum by (job) ({__name__=~"node_network_.*_bytes_total"})', ['~node_network_.*_bytes_total{job}']],
    ['count({__name__!="up"})', ['~.*{}']],
    ['count({job="api"})', ['~.*{job}']],
    ['count by (__name__) ({__name__=~"apiserver_.+|etcd_.+"})', ['~apiserver_.+|etcd_.+{__name__}']],
    // Nested expressions.
    [
      'sum by (namespace) (kube_pod_container_resource_requests{resource="cpu"}) / sum by (namespace) (kube_resourcequota{type="hard"}) > 0.8 and on (namespace) (count by (namespace) (kube_namespace_labels) > 0)',
      [
        'kube_namespace_labels{namespace}',
        'kube_pod_container_resource_requests{namespace,resource}',
        'kube_resourcequota{namespace,type}',
      ],
    ],
    ['1 + 2', []],
    ['vector(1)', []],
  ])('%s', (expr, want) => {
    expect(show(expr)).toEqual(want);
  });

  it('reads names with template variables as patterns', () => {
    expect(show(`rate(${VARIABLE_PLACEHOLDER}[5m])`)).toEqual(['~.*{*}']);
    expect(show(`sum(${VARIABLE_PLACEHOLDER}_requests_total)`)).toEqual(['~.*_requests_total{}']);
    expect(show(`sum by (${VARIABLE_PLACEHOLDER}) (x)`)).toEqual(['x{*}']);
    expect(show(`{__name__=~"node_${VARIABLE_PLACEHOLDER}"}`)).toEqual(['~node_.*{*}']);
  });

  it.each([
    ['', 'empty expression'],
    ['sum(', 'unexpected end of expression at column 5'],
    ['foo bar', 'unexpected "bar" at column 5'],
    ['rate(x[5m]', 'at column'],
    ['sum by job (x)', 'unexpected'],
    ['x{a="b"', 'at column'],
  ])('rejects %j with %j', (expr, message) => {
    expect(() => extract(expr)).toThrow(PromQLError);
    expect(() => extract(expr)).toThrow(message);
  });
});

describe('union', () => {
  it.each<[Need, Need, string]>([
    [some(['a']), some(['b']), '{a,b}'],
    [allExcept(['a', 'b']), some(['a']), '{* -b}'],
    [allExcept(['a', 'b']), allExcept(['b', 'c']), '{* -b}'],
    [some([]), allExcept([]), '{*}'],
  ])('%o with %o', (a, b, want) => {
    expect(needText(union(a, b))).toBe(want);
    expect(needText(union(b, a))).toBe(want);
  });
});

describe('extract: properties', () => {
  const pieces = fc.constantFrom(
    'sum',
    ' by ',
    ' without ',
    '(',
    ')',
    '{',
    '}',
    'job="a"',
    '__name__=~"x.*"',
    'rate',
    'http_requests_total',
    '[5m]',
    '[1h:5m]',
    ' offset 1m',
    ' @ end()',
    ' / ',
    ' on ',
    ' group_left ',
    ',',
    '"s"',
    '1',
    'label_replace',
    'topk',
  );

  it('either reads an expression or refuses it with a PromQLError, whatever the input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.array(pieces, { maxLength: 12 }).map((p) => p.join('')),
        ),
        (expr) => {
          try {
            const { metrics } = extract(expr);
            for (const m of metrics) expect((m.name === undefined) !== (m.pattern === undefined)).toBe(true);
          } catch (err) {
            expect(err).toBeInstanceOf(PromQLError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a metric name is read whatever is wrapped around it', () => {
    const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,20}$/).filter((n) => !KEYWORDS.has(n));
    const wrap = fc.constantFrom(
      (x: string) => x,
      (x: string) => `sum(rate(${x}[5m]))`,
      (x: string) => `max by (a) (${x} offset 1h)`,
      (x: string) => `histogram_quantile(0.9, ${x})`,
      (x: string) => `1 - ${x}`,
      (x: string) => `topk(3, ${x}[10m:1m])`,
      (x: string) => `${x} and on (a) up`,
    );
    fc.assert(
      fc.property(name, wrap, (n, w) => {
        expect(extract(w(n)).metrics.some((m) => m.name === n)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

/** Names PromQL reads as keywords, operators or functions rather than metric names. */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
  'sum',
  'avg',
  'count',
  'min',
  'max',
  'group',
  'stddev',
  'stdvar',
  'topk',
  'bottomk',
  'count_values',
  'quantile',
  'limitk',
  'limit_ratio',
  'atan2',
  'start',
  'end',
  'step',
  'range',
  'smoothed',
  'anchored',
  'fill',
  'fill_left',
  'fill_right',
]);
