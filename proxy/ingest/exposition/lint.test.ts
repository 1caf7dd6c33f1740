import { describe, expect, it } from 'vitest';
import { formatProblems } from './index.js';
import { lintFamilies } from './lint.js';
import { type ExpositionFormat, type Problem, parseExposition } from './parse.js';

/** Parses (which must succeed) and lints. */
function lint(text: string, format: ExpositionFormat = 'text'): Problem[] {
  const { families, problems } = parseExposition(text, format);
  expect(problems).toEqual([]);
  return lintFamilies(families);
}

const p = (line: number, rule: string, message: string): Problem => ({ line, rule, message });

// Each row: a description, a text-format page that parses cleanly, and exactly the problems expected.
const RULES: [string, string, Problem[]][] = [
  [
    'a counter without _total',
    '# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n',
    [p(1, 'counter-total-suffix', 'counter metrics should have "_total" suffix')],
  ],
  [
    'a gauge with _total',
    '# HELP things_total Things.\n# TYPE things_total gauge\nthings_total 1\n',
    [p(1, 'non-counter-total-suffix', 'non-counter metrics should not have "_total" suffix')],
  ],
  ['missing HELP', '# TYPE up gauge\nup 1\n', [p(1, 'help-missing', 'no help text')]],
  [
    'missing HELP on an untyped sample, reported on its line',
    '# HELP a_ratio A.\na_ratio 1\nb_ratio 1\n',
    [p(3, 'help-missing', 'no help text')],
  ],
  [
    'a camelCase metric name',
    '# HELP httpRequests_total R.\n# TYPE httpRequests_total counter\nhttpRequests_total 1\n',
    [p(1, 'camel-case-metric', "metric names should be written in 'snake_case' not 'camelCase'")],
  ],
  [
    'a camelCase label name, once per label',
    '# HELP up U.\n# TYPE up gauge\nup{jobName="a"} 1\nup{jobName="b"} 1\n',
    [p(3, 'camel-case-label', "label names should be written in 'snake_case' not 'camelCase'")],
  ],
  [
    'a colon in the name',
    '# HELP job:up:sum U.\n# TYPE job:up:sum gauge\njob:up:sum 1\n',
    [p(1, 'reserved-chars', "metric names should not contain ':'")],
  ],
  [
    'the type in the name',
    '# HELP queue_gauge Q.\n# TYPE queue_gauge gauge\nqueue_gauge 1\n',
    [p(1, 'type-in-name', "metric name should not include type 'gauge'")],
  ],
  [
    'milliseconds',
    '# HELP latency_milliseconds L.\n# TYPE latency_milliseconds gauge\nlatency_milliseconds 1\n',
    [p(1, 'base-unit', 'use base unit "seconds" instead of "milliseconds"')],
  ],
  [
    'microseconds inside a counter name',
    '# HELP cpu_microseconds_total C.\n# TYPE cpu_microseconds_total counter\ncpu_microseconds_total 1\n',
    [p(1, 'base-unit', 'use base unit "seconds" instead of "microseconds"')],
  ],
  [
    'kilobytes',
    '# HELP heap_kilobytes H.\n# TYPE heap_kilobytes gauge\nheap_kilobytes 1\n',
    [p(1, 'base-unit', 'use base unit "bytes" instead of "kilobytes"')],
  ],
  [
    'minutes',
    '# HELP uptime_minutes U.\n# TYPE uptime_minutes gauge\nuptime_minutes 1\n',
    [p(1, 'base-unit', 'use base unit "seconds" instead of "minutes"')],
  ],
  [
    'percent',
    '# HELP cpu_usage_percent C.\n# TYPE cpu_usage_percent gauge\ncpu_usage_percent 1\n',
    [p(1, 'base-unit', 'use base unit "ratio" instead of "percent"')],
  ],
  [
    'an abbreviated unit',
    '# HELP latency_ms L.\n# TYPE latency_ms gauge\nlatency_ms 1\n',
    [p(1, 'unit-abbreviation', 'metric names should not contain abbreviated units')],
  ],
  [
    'a gauge named _bucket',
    '# HELP x_bucket X.\n# TYPE x_bucket gauge\nx_bucket 1\n',
    [p(1, 'reserved-suffix', 'non-histogram metrics should not have "_bucket" suffix')],
  ],
  [
    'a gauge named _count',
    '# HELP x_count X.\n# TYPE x_count gauge\nx_count 1\n',
    [p(1, 'reserved-suffix', 'non-histogram and non-summary metrics should not have "_count" suffix')],
  ],
  [
    'an le label on a gauge',
    '# HELP x_ratio X.\n# TYPE x_ratio gauge\nx_ratio{le="1"} 1\n',
    [p(3, 'reserved-label', 'non-histogram metrics should not have "le" label')],
  ],
  [
    'a quantile label on a gauge',
    '# HELP x_ratio X.\n# TYPE x_ratio gauge\nx_ratio{quantile="1"} 1\n',
    [p(3, 'reserved-label', 'non-summary metrics should not have "quantile" label')],
  ],
  [
    'a duplicate series with labels in another order',
    '# HELP up U.\n# TYPE up gauge\nup{a="1",b="2"} 1\nup{b="2",a="1"} 0\n',
    [p(4, 'duplicate-series', 'duplicate series: same name and labels as line 3')],
  ],
  [
    'a histogram bucket without le',
    histogram(['h_bucket{le="+Inf"} 2', 'h_bucket 1', 'h_sum 1', 'h_count 2']),
    [p(4, 'histogram-le-missing', 'histogram bucket has no "le" label')],
  ],
  [
    'a histogram bucket with an unparseable le',
    histogram(['h_bucket{le="x"} 1', 'h_bucket{le="+Inf"} 2', 'h_sum 1', 'h_count 2']),
    [p(3, 'histogram-le-invalid', 'histogram bucket has invalid "le" value "x"')],
  ],
  [
    'histogram buckets that are not cumulative',
    histogram([
      'h_bucket{le="0.1"} 5',
      'h_bucket{le="1"} 3',
      'h_bucket{le="+Inf"} 6',
      'h_sum 1',
      'h_count 6',
    ]),
    [
      p(
        4,
        'histogram-not-cumulative',
        'histogram buckets must be cumulative: le="1" has 3, less than le="0.1" with 5',
      ),
    ],
  ],
  [
    'buckets compared in le order, not line order',
    histogram([
      'h_bucket{le="+Inf"} 6',
      'h_bucket{le="1"} 7',
      'h_bucket{le="0.1"} 5',
      'h_sum 1',
      'h_count 6',
    ]),
    [
      p(
        3,
        'histogram-not-cumulative',
        'histogram buckets must be cumulative: le="+Inf" has 6, less than le="1" with 7',
      ),
    ],
  ],
  [
    'a histogram without +Inf',
    histogram(['h_bucket{le="1"} 1', 'h_sum 1', 'h_count 1']),
    [p(3, 'histogram-inf-missing', 'histogram has no "+Inf" bucket')],
  ],
  [
    'a +Inf bucket that differs from _count',
    histogram(['h_bucket{le="+Inf"} 5', 'h_sum 1', 'h_count 6']),
    [p(5, 'histogram-inf-count-mismatch', '"+Inf" bucket (5) does not equal "_count" (6)')],
  ],
  [
    'a histogram without _count and _sum',
    histogram(['h_bucket{le="+Inf"} 5']),
    [
      p(3, 'histogram-count-missing', 'histogram has no "_count" sample'),
      p(3, 'histogram-sum-missing', 'histogram has no "_sum" sample'),
    ],
  ],
  [
    'histogram series checked one label set at a time',
    histogram([
      'h_bucket{path="/a",le="+Inf"} 1',
      'h_sum{path="/a"} 1',
      'h_count{path="/a"} 1',
      'h_bucket{path="/b",le="+Inf"} 2',
      'h_sum{path="/b"} 1',
    ]),
    [p(6, 'histogram-count-missing', 'histogram has no "_count" sample')],
  ],
  [
    'a quantile out of range',
    summary(['s{quantile="1.5"} 1', 's_sum 1', 's_count 1']),
    [p(3, 'summary-quantile-range', 'quantile "1.5" is not between 0 and 1')],
  ],
  [
    'a negative quantile',
    summary(['s{quantile="-0.1"} 1', 's_sum 1', 's_count 1']),
    [p(3, 'summary-quantile-range', 'quantile "-0.1" is not between 0 and 1')],
  ],
  [
    'a quantile that is not a number',
    summary(['s{quantile="p99"} 1', 's_sum 1', 's_count 1']),
    [p(3, 'summary-quantile-invalid', 'quantile "p99" is not a number')],
  ],
  [
    'a summary sample without quantile',
    summary(['s 1', 's_sum 1', 's_count 1']),
    [p(3, 'summary-quantile-missing', 'summary sample has no "quantile" label')],
  ],
];

function histogram(lines: string[]): string {
  return `# HELP h H.\n# TYPE h histogram\n${lines.join('\n')}\n`;
}

function summary(lines: string[]): string {
  return `# HELP s S.\n# TYPE s summary\n${lines.join('\n')}\n`;
}

describe('lintFamilies', () => {
  it.each(RULES)('reports %s', (_what, text, expected) => {
    expect(lint(text)).toEqual(expected);
  });

  it('finds nothing in a well-instrumented text page', () => {
    const text = [
      '# HELP http_requests_total Requests served.',
      '# TYPE http_requests_total counter',
      'http_requests_total{code="200",method="get"} 1027',
      'http_requests_total{code="500",method="get"} 3',
      '# HELP http_request_duration_seconds Request latency.',
      '# TYPE http_request_duration_seconds histogram',
      'http_request_duration_seconds_bucket{le="0.05"} 24054',
      'http_request_duration_seconds_bucket{le="0.1"} 33444',
      'http_request_duration_seconds_bucket{le="+Inf"} 144320',
      'http_request_duration_seconds_sum 53423',
      'http_request_duration_seconds_count 144320',
      '# HELP rpc_duration_seconds RPC latency.',
      '# TYPE rpc_duration_seconds summary',
      'rpc_duration_seconds{quantile="0.5"} 4773',
      'rpc_duration_seconds{quantile="0.99"} 76656',
      'rpc_duration_seconds_sum 1.7560473e+07',
      'rpc_duration_seconds_count 2693',
      '# HELP process_resident_memory_bytes Resident memory.',
      '# TYPE process_resident_memory_bytes gauge',
      'process_resident_memory_bytes 2.1e+07',
      '',
    ].join('\n');
    expect(lint(text)).toEqual([]);
  });

  it('accepts an OpenMetrics counter whose samples carry _total, and checks UNIT against the name', () => {
    const text = [
      '# TYPE cpu_seconds counter',
      '# UNIT cpu_seconds seconds',
      '# HELP cpu_seconds CPU time.',
      'cpu_seconds_total 1',
      '# TYPE disk gauge',
      '# UNIT disk bytes',
      '# HELP disk Disk used.',
      'disk 1',
      '# TYPE q gaugehistogram',
      '# HELP q Queue.',
      'q_bucket{le="+Inf"} 3',
      'q_gcount 2',
      '# EOF',
      '',
    ].join('\n');
    expect(lint(text, 'openmetrics')).toEqual([
      p(5, 'unit-suffix', 'metric name should end with its unit "_bytes"'),
      p(11, 'histogram-sum-missing', 'histogram has no "_gsum" sample'),
      p(12, 'histogram-inf-count-mismatch', '"+Inf" bucket (3) does not equal "_gcount" (2)'),
    ]);
  });

  it('renders lint and parse problems together for a 400 body', () => {
    const { families, problems } = parseExposition('# TYPE up gauge\nup 1\nup{a="b} 2\n', 'text');
    const body = formatProblems([...lintFamilies(families), ...problems]);
    expect(body).toBe(
      'line 1: no help text (help-missing)\nline 3: label value is missing its closing quote (label "a") (invalid-label-value)\n',
    );
  });
});
