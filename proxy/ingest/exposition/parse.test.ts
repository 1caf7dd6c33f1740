import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatProblems } from './index.js';
import {
  type ExpositionFormat,
  type MetricFamily,
  type Problem,
  parseExposition,
  parseNumber,
} from './parse.js';

const NODE_EXPORTER_PAGE = `# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="0.25"} 3.1e-05
go_gc_duration_seconds{quantile="1"} 0.000412
go_gc_duration_seconds_sum 0.0213
go_gc_duration_seconds_count 412
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 123456.78
node_cpu_seconds_total{cpu="0",mode="user"} 2345.6
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.2e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run \\"x\\"\\\\y\\nz"} 1.6e+09 1700000000000

# A free comment, ignored.
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 10
http_request_duration_seconds_bucket{le="1"} 15
http_request_duration_seconds_bucket{le="+Inf"} 16
http_request_duration_seconds_sum 7.5
http_request_duration_seconds_count 16
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1   0.42
node_boot_time_seconds NaN
`;

const OPENMETRICS_PAGE = `# TYPE build info
# HELP build Build information.
build_info{version="1.2.3",revision="abc"} 1
# TYPE request_duration_seconds histogram
# UNIT request_duration_seconds seconds
# HELP request_duration_seconds How long requests take, with a \\"quote\\".
request_duration_seconds_bucket{le="0.5"} 3 # {trace_id="abc123"} 0.25 1700000000.123
request_duration_seconds_bucket{le="+Inf"} 4
request_duration_seconds_count 4
request_duration_seconds_sum 2.5
request_duration_seconds_created 1700000000.5
# TYPE requests counter
requests_total{code="200"} 10 1700000001.5 # {trace_id="x"} 1
requests_total{code="500"} 1
requests_created{code="200"} 1699999999
# TYPE feature stateset
feature{feature="a"} 1
feature{feature="b"} 0
# TYPE temperature gauge
# UNIT temperature celsius
temperature 21.5
# EOF
`;

function parseOk(text: string, format: ExpositionFormat): MetricFamily[] {
  const { families, problems } = parseExposition(text, format);
  expect(problems).toEqual([]);
  return families;
}

describe('parseExposition: valid pages', () => {
  it('reads a node-exporter-like text page without problems', () => {
    const families = parseOk(NODE_EXPORTER_PAGE, 'text');
    expect(families.map((f) => [f.name, f.type])).toEqual([
      ['go_gc_duration_seconds', 'summary'],
      ['node_cpu_seconds_total', 'counter'],
      ['node_filesystem_avail_bytes', 'gauge'],
      ['http_request_duration_seconds', 'histogram'],
      ['node_load1', 'gauge'],
      ['node_boot_time_seconds', 'untyped'],
    ]);
    const summary = families[0]!;
    expect(summary.help).toBe('A summary of the pause duration of garbage collection cycles.');
    expect(summary.samples.map((s) => [s.name, s.value, s.line])).toEqual([
      ['go_gc_duration_seconds', 2.3e-5, 3],
      ['go_gc_duration_seconds', 3.1e-5, 4],
      ['go_gc_duration_seconds', 0.000412, 5],
      ['go_gc_duration_seconds_sum', 0.0213, 6],
      ['go_gc_duration_seconds_count', 412, 7],
    ]);
    expect(families[2]!.samples[1]).toEqual({
      name: 'node_filesystem_avail_bytes',
      labels: [
        ['device', 'tmpfs'],
        ['fstype', 'tmpfs'],
        ['mountpoint', '/run "x"\\y\nz'],
      ],
      value: 1.6e9,
      timestampMs: 1_700_000_000_000,
      line: 15,
    });
    expect(families[3]!.samples).toHaveLength(5);
    expect(families[4]!.samples[0]!.value).toBe(0.42);
    expect(families[5]!.samples[0]!.value).toBeNaN();
    expect(families[5]!.line).toBe(28);
  });

  it('reads an OpenMetrics page with UNIT, info, stateset, _created and exemplars', () => {
    const families = parseOk(OPENMETRICS_PAGE, 'openmetrics');
    expect(families.map((f) => [f.name, f.type, f.unit])).toEqual([
      ['build', 'info', undefined],
      ['request_duration_seconds', 'histogram', 'seconds'],
      ['requests', 'counter', undefined],
      ['feature', 'stateset', undefined],
      ['temperature', 'gauge', 'celsius'],
    ]);
    expect(families[1]!.help).toBe('How long requests take, with a "quote".');
    expect(families[1]!.samples.map((s) => s.name)).toEqual([
      'request_duration_seconds_bucket',
      'request_duration_seconds_bucket',
      'request_duration_seconds_count',
      'request_duration_seconds_sum',
      'request_duration_seconds_created',
    ]);
    expect(families[2]!.samples[0]).toEqual({
      name: 'requests_total',
      labels: [['code', '200']],
      value: 10,
      timestampMs: 1_700_000_001_500,
      line: 13,
    });
  });

  it('accepts a text page without a final newline and an OpenMetrics page without one after # EOF', () => {
    expect(parseOk('a 1', 'text')[0]!.samples[0]!.value).toBe(1);
    expect(parseOk('a 1\n# EOF', 'openmetrics')[0]!.samples[0]!.value).toBe(1);
    expect(parseOk('', 'text')).toEqual([]);
    expect(parseOk('# EOF\n', 'openmetrics')).toEqual([]);
  });

  it('accepts the text format’s blanks between tokens and a trailing comma in labels', () => {
    const [family] = parseOk('  m { a = "1" , b="2", }\t 3 \t 42 \n', 'text');
    expect(family!.samples[0]).toEqual({
      name: 'm',
      labels: [
        ['a', '1'],
        ['b', '2'],
      ],
      value: 3,
      timestampMs: 42,
      line: 1,
    });
  });
});

describe('parseExposition: values and timestamps', () => {
  it.each<[string, ExpositionFormat, number | undefined]>([
    ['1', 'text', 1],
    ['-1.5', 'text', -1.5],
    ['.5', 'text', 0.5],
    ['5.', 'text', 5],
    ['1e3', 'text', 1000],
    ['1E-3', 'openmetrics', 0.001],
    ['+2', 'openmetrics', 2],
    ['+Inf', 'text', Number.POSITIVE_INFINITY],
    ['-Inf', 'openmetrics', Number.NEGATIVE_INFINITY],
    ['inf', 'text', Number.POSITIVE_INFINITY],
    ['-Infinity', 'text', Number.NEGATIVE_INFINITY],
    ['NaN', 'openmetrics', Number.NaN],
    ['nan', 'text', Number.NaN],
    ['0x1.8p1', 'text', 3],
    ['-0x10p-4', 'text', -1],
    ['0x1.8p1', 'openmetrics', undefined],
    ['0x10', 'text', undefined],
    ['+NaN', 'text', undefined],
    ['1_000', 'text', undefined],
    ['1e', 'text', undefined],
    ['.', 'text', undefined],
    ['e5', 'text', undefined],
    ['1.2.3', 'text', undefined],
    ['0x', 'text', undefined],
    ['', 'text', undefined],
    ['Infinit', 'text', undefined],
  ])('parseNumber(%j, %s) is %s', (token, format, expected) => {
    expect(parseNumber(token, format)).toEqual(expected);
  });

  it.each<[string, ExpositionFormat, number]>([
    ['m 1 1700000000000\n', 'text', 1_700_000_000_000],
    ['m 1 -5\n', 'text', -5],
    ['m 1 1700000000\n# EOF\n', 'openmetrics', 1_700_000_000_000],
    ['m 1 1700000000.001\n# EOF\n', 'openmetrics', 1_700_000_000_001],
    ['m 1 1.7e9\n# EOF\n', 'openmetrics', 1_700_000_000_000],
  ])('timestamp of %j is %d ms', (text, format, expected) => {
    expect(parseOk(text, format)[0]!.samples[0]!.timestampMs).toBe(expected);
  });
});

// Each row: a description, the format, the input, and the one problem expected.
const INVALID: [string, ExpositionFormat, string, Problem][] = [
  [
    'a metric name starting with a digit',
    'text',
    'ok 1\n1abc 2\n',
    { line: 2, rule: 'invalid-metric-name', message: 'expected a metric name: found "1"' },
  ],
  [
    'a character that no name may hold',
    'text',
    'a-b 1\n',
    { line: 1, rule: 'invalid-metric-name', message: 'invalid character "-" in metric name "a"' },
  ],
  [
    'a quoted (UTF-8) metric name',
    'text',
    '{"a.b"} 1\n',
    {
      line: 1,
      rule: 'invalid-metric-name',
      message: 'expected a metric name: quoted metric names are not supported',
    },
  ],
  [
    'an invalid label name',
    'text',
    'm{1a="x"} 1\n',
    { line: 1, rule: 'invalid-label-name', message: 'expected a label name: unexpected "1"' },
  ],
  [
    'a reserved label name',
    'text',
    'm{__name__="x"} 1\n',
    {
      line: 1,
      rule: 'reserved-label-name',
      message: 'label name "__name__" is reserved: names starting with "__" are internal',
    },
  ],
  [
    'an unknown escape in a label value',
    'text',
    'm{a="x\\ty"} 1\n',
    {
      line: 1,
      rule: 'invalid-escape',
      message:
        'invalid escape sequence "\\\\t" in label value; only \\\\, \\" and \\n are allowed (label "a")',
    },
  ],
  [
    'an unterminated label value',
    'text',
    'm{a="x} 1\n',
    { line: 1, rule: 'invalid-label-value', message: 'label value is missing its closing quote (label "a")' },
  ],
  [
    'a duplicate label name in one sample',
    'text',
    'm{a="1",b="2",a="3"} 1\n',
    { line: 1, rule: 'duplicate-label-name', message: 'label "a" appears more than once' },
  ],
  [
    'a missing "=" after a label name',
    'text',
    'm{a"1"} 1\n',
    { line: 1, rule: 'invalid-syntax', message: 'expected "=" after label name "a", found "\\""' },
  ],
  [
    'an unquoted label value',
    'text',
    'm{a=1} 1\n',
    { line: 1, rule: 'invalid-syntax', message: 'expected a quoted value for label "a", found "1"' },
  ],
  [
    'labels not closed',
    'text',
    'm{a="1" 1\n',
    { line: 1, rule: 'invalid-syntax', message: 'expected "," or "}" after label value, found "1"' },
  ],
  [
    'a sample without a value',
    'text',
    'm{a="1"}\n',
    { line: 1, rule: 'invalid-syntax', message: 'expected a space and a value after "m", found end of line' },
  ],
  [
    'an invalid value',
    'text',
    'm 1,5\n',
    { line: 1, rule: 'invalid-value', message: 'invalid sample value "1,5"' },
  ],
  [
    'a float timestamp in the text format',
    'text',
    'm 1 1.5\n',
    { line: 1, rule: 'invalid-timestamp', message: 'invalid timestamp "1.5"; expected integer milliseconds' },
  ],
  [
    'a timestamp beyond what a double holds',
    'text',
    'm 1 99999999999999999999\n',
    {
      line: 1,
      rule: 'invalid-timestamp',
      message: 'invalid timestamp "99999999999999999999"; expected integer milliseconds',
    },
  ],
  [
    'text after the timestamp',
    'text',
    'm 1 2 3\n',
    { line: 1, rule: 'invalid-syntax', message: 'unexpected "3" after the timestamp' },
  ],
  [
    'a duplicate HELP',
    'text',
    '# HELP m one\n# HELP m two\nm 1\n',
    { line: 2, rule: 'duplicate-help', message: 'duplicate HELP line for "m" (first at line 1)' },
  ],
  [
    'a duplicate TYPE',
    'text',
    '# TYPE m gauge\n# TYPE m gauge\nm 1\n',
    { line: 2, rule: 'duplicate-type', message: 'duplicate TYPE line for "m" (first at line 1)' },
  ],
  [
    'a TYPE after the family’s samples',
    'text',
    'm 1\n# TYPE m gauge\n',
    { line: 2, rule: 'metadata-after-samples', message: 'TYPE line for "m" must come before its samples' },
  ],
  [
    'a HELP after the family’s samples',
    'text',
    'm 1\n# HELP m late\n',
    { line: 2, rule: 'metadata-after-samples', message: 'HELP line for "m" must come before its samples' },
  ],
  [
    'an unknown type',
    'text',
    '# TYPE m info\n',
    {
      line: 1,
      rule: 'invalid-type',
      message: 'unknown metric type "info"; expected one of counter, gauge, histogram, summary, untyped',
    },
  ],
  [
    'an invalid escape in HELP',
    'text',
    '# HELP m say \\"hi\\"\n',
    {
      line: 1,
      rule: 'invalid-escape',
      message: 'invalid escape sequence "\\\\\\"" in HELP text; only \\\\ and \\n are allowed',
    },
  ],
  [
    'an invalid name in a HELP line',
    'text',
    '# HELP 9m x\n',
    { line: 1, rule: 'invalid-metric-name', message: 'invalid metric name in HELP line: unexpected "9"' },
  ],
  [
    'extra text after the type',
    'text',
    '# TYPE m gauge extra\n',
    { line: 1, rule: 'invalid-syntax', message: 'unexpected "e" after the type in TYPE line' },
  ],
  [
    'interleaved families',
    'text',
    'a 1\nb 1\na{x="1"} 2\n',
    {
      line: 3,
      rule: 'family-interleaved',
      message: 'lines of metric family "a" must be contiguous, but another family came after line 1',
    },
  ],
  [
    'a histogram sample name the type does not have',
    'text',
    '# TYPE h histogram\nh 1\n',
    {
      line: 2,
      rule: 'invalid-sample-name',
      message: 'sample "h" does not fit histogram "h"; expected one of "h_bucket", "h_count", "h_sum"',
    },
  ],
  [
    'a _sum sample for a gauge',
    'text',
    '# TYPE g gauge\ng_sum 1\n',
    {
      line: 2,
      rule: 'invalid-sample-name',
      message: 'sample "g_sum" does not fit gauge "g"; expected one of "g"',
    },
  ],
  [
    'a carriage return',
    'text',
    'm 1\r\n',
    {
      line: 1,
      rule: 'carriage-return',
      message: 'line ends with a carriage return; lines must end with "\\n" only',
    },
  ],
  [
    'a missing # EOF',
    'openmetrics',
    'm 1\nm{a="b"} 2\n',
    { line: 3, rule: 'missing-eof', message: 'OpenMetrics exposition must end with "# EOF"' },
  ],
  [
    'content after # EOF',
    'openmetrics',
    'm 1\n# EOF\nn 1\n',
    { line: 3, rule: 'content-after-eof', message: 'nothing may follow "# EOF"' },
  ],
  [
    'an empty line in OpenMetrics',
    'openmetrics',
    'm 1\n\n# EOF\n',
    { line: 2, rule: 'empty-line', message: 'empty lines are not allowed in OpenMetrics' },
  ],
  [
    'a free comment in OpenMetrics',
    'openmetrics',
    '# hello\nm 1\n# EOF\n',
    {
      line: 1,
      rule: 'invalid-comment',
      message: 'OpenMetrics allows only "# HELP", "# TYPE", "# UNIT" and "# EOF" lines starting with "#"',
    },
  ],
  [
    'two spaces before the value in OpenMetrics',
    'openmetrics',
    'm  1\n# EOF\n',
    { line: 1, rule: 'invalid-value', message: 'invalid sample value ""' },
  ],
  [
    'a trailing comma in OpenMetrics labels',
    'openmetrics',
    'm{a="1",} 1\n# EOF\n',
    { line: 1, rule: 'invalid-label-name', message: 'expected a label name: unexpected "}"' },
  ],
  [
    'an OpenMetrics counter sample without _total',
    'openmetrics',
    '# TYPE c counter\nc 1\n# EOF\n',
    {
      line: 2,
      rule: 'invalid-sample-name',
      message: 'sample "c" does not fit counter "c"; expected one of "c_total", "c_created"',
    },
  ],
  [
    'an OpenMetrics gauge histogram with _count',
    'openmetrics',
    '# TYPE g gaugehistogram\ng_bucket{le="+Inf"} 1\ng_count 1\n# EOF\n',
    {
      line: 3,
      rule: 'invalid-sample-name',
      message:
        'sample "g_count" does not fit gaugehistogram "g"; expected one of "g_bucket", "g_gcount", "g_gsum"',
    },
  ],
  [
    'an info sample without _info',
    'openmetrics',
    '# TYPE i info\ni 1\n# EOF\n',
    {
      line: 2,
      rule: 'invalid-sample-name',
      message: 'sample "i" does not fit info "i"; expected one of "i_info"',
    },
  ],
  [
    'the text format’s untyped in OpenMetrics',
    'openmetrics',
    '# TYPE m untyped\n# EOF\n',
    {
      line: 1,
      rule: 'invalid-type',
      message:
        'unknown metric type "untyped"; expected one of counter, gauge, histogram, gaugehistogram, stateset, info, summary, unknown',
    },
  ],
  [
    'a duplicate UNIT',
    'openmetrics',
    '# UNIT m_seconds seconds\n# UNIT m_seconds seconds\n# EOF\n',
    { line: 2, rule: 'duplicate-unit', message: 'duplicate UNIT line for "m_seconds" (first at line 1)' },
  ],
  [
    'an integer-millisecond-looking but invalid OpenMetrics timestamp',
    'openmetrics',
    'm 1 +Inf\n# EOF\n',
    {
      line: 1,
      rule: 'invalid-timestamp',
      message: 'invalid timestamp "+Inf"; expected seconds as a decimal number',
    },
  ],
  [
    'an exemplar on a gauge',
    'openmetrics',
    '# TYPE g gauge\ng 1 # {a="b"} 1\n# EOF\n',
    {
      line: 2,
      rule: 'invalid-exemplar',
      message: 'exemplars are allowed only on counter "_total" and histogram "_bucket" samples',
    },
  ],
  [
    'an exemplar without labels',
    'openmetrics',
    '# TYPE c counter\nc_total 1 # 1\n# EOF\n',
    { line: 2, rule: 'invalid-exemplar', message: 'an exemplar must start with "# {"' },
  ],
  [
    'exemplar labels that are too long',
    'openmetrics',
    `# TYPE c counter\nc_total 1 # {trace_id="${'x'.repeat(121)}"} 1\n# EOF\n`,
    {
      line: 2,
      rule: 'invalid-exemplar',
      message: 'exemplar labels have 129 characters; at most 128 are allowed',
    },
  ],
];

describe('parseExposition: problems', () => {
  it.each(INVALID)('reports %s', (_what, format, text, problem) => {
    expect(parseExposition(text, format).problems).toEqual([problem]);
  });

  it('reports every bad line, not only the first', () => {
    const { families, problems } = parseExposition('a 1\nb x\nc 2\nd{ 3\ne 4\n', 'text');
    expect(problems.map((p) => [p.line, p.rule])).toEqual([
      [2, 'invalid-value'],
      [4, 'invalid-label-name'],
    ]);
    expect(families.map((f) => f.name)).toEqual(['a', 'c', 'e']);
  });

  it('formats problems one per line, sorted by line', () => {
    const text = formatProblems([
      { line: 3, message: 'later', rule: 'b' },
      { line: 1, message: 'first', rule: 'a' },
    ]);
    expect(text).toBe('line 1: first (a)\nline 3: later (b)\n');
  });
});

describe('parseExposition: adversarial input', () => {
  it.each<[string, ExpositionFormat, string]>([
    ['repeated {a="', 'text', `m${'{a="'.repeat(100_000)}`],
    ['repeated {a=" in OpenMetrics', 'openmetrics', `m${'{a="'.repeat(100_000)}`],
    ['repeated backslashes in a label value', 'text', `m{a="${'\\'.repeat(100_001)}`],
    ['repeated escaped quotes', 'text', `m{a="${'\\"'.repeat(100_000)}`],
    ['a huge name', 'text', `${'a'.repeat(200_000)}-`],
    ['a huge number', 'text', `m ${'1'.repeat(100_000)}e`],
    [
      'many distinct labels and a bad value',
      'text',
      `m{${Array.from({ length: 50_000 }, (_, i) => `l${i}="v"`).join(',')}} x`,
    ],
    ['many lines of braces', 'text', '{\n'.repeat(100_000)],
  ])('finishes on %s and reports a problem', (_what, format, text) => {
    const { problems } = parseExposition(text, format);
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p.message.length).toBeLessThan(1000);
  });
});

const EXPOSITION_CHARS = [
  'a',
  'm',
  '_',
  ':',
  '{',
  '}',
  '"',
  '\\',
  '=',
  ',',
  ' ',
  '\t',
  '\n',
  '\r',
  '#',
  '1',
  '.',
  'e',
  '+',
  '-',
  'Inf',
  'NaN',
  ' HELP ',
  ' TYPE ',
  ' UNIT ',
  ' counter',
  ' histogram',
  '_bucket',
  '_total',
  'le',
  '# EOF',
  'é',
];

describe('parseExposition: properties', () => {
  it('never throws on any input and reports problems on valid lines', () => {
    const input = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.string({ unit: fc.constantFrom(...EXPOSITION_CHARS), maxLength: 60 }),
    );
    fc.assert(
      fc.property(input, fc.constantFrom<ExpositionFormat>('text', 'openmetrics'), (text, format) => {
        const { families, problems } = parseExposition(text, format);
        const lines = text.split('\n').length;
        for (const p of problems) {
          expect(p.line).toBeGreaterThanOrEqual(1);
          expect(p.line).toBeLessThanOrEqual(lines + 1);
        }
        for (const f of families) for (const s of f.samples) expect(s.line).toBeLessThanOrEqual(lines);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips generated families through the text format and OpenMetrics', () => {
    fc.assert(
      fc.property(
        familiesArbitrary,
        fc.constantFrom<ExpositionFormat>('text', 'openmetrics'),
        (families, format) => {
          const { families: parsed, problems } = parseExposition(render(families, format), format);
          expect(problems).toEqual([]);
          expect(parsed.map(strip)).toEqual(families.map((f) => strip(expected(f, format))));
        },
      ),
      { numRuns: 300 },
    );
  });
});

// Generated families for the round trip: simple types whose samples all carry one name.
interface GeneratedFamily {
  name: string;
  type: 'counter' | 'gauge';
  help: string | undefined;
  samples: { labels: [string, string][]; value: number; timestampMs: number | undefined }[];
}

const nameTail = fc.stringMatching(/^[a-z_:][a-z0-9_:]{0,8}$/);
const labelName = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_]{0,6}$/);
const labelSet = fc.uniqueArray(fc.tuple(labelName, fc.string({ unit: 'grapheme', maxLength: 12 })), {
  selector: ([n]) => n,
  maxLength: 4,
});
const sampleArbitrary = fc.record({
  labels: labelSet,
  value: fc.double(),
  timestampMs: fc.option(fc.integer({ min: -1e12, max: 4e12 }), { nil: undefined }),
});
const familiesArbitrary = fc
  .array(
    fc.record({
      tail: nameTail,
      type: fc.constantFrom<'counter' | 'gauge'>('counter', 'gauge'),
      help: fc.option(fc.string({ unit: 'grapheme', maxLength: 20 }), { nil: undefined }),
      samples: fc.array(sampleArbitrary, { minLength: 1, maxLength: 4 }),
    }),
    { maxLength: 5 },
  )
  // A unique index keeps names apart, so no family's name is another's plus a suffix.
  .map((list): GeneratedFamily[] => list.map((f, i) => ({ ...f, name: `f${i}_${f.tail}` })));

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return Object.is(v, -0) ? '-0' : String(v);
}

const escapeLabel = (s: string): string =>
  s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
const escapeHelp = (s: string, format: ExpositionFormat): string =>
  format === 'openmetrics' ? escapeLabel(s) : s.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');

function render(families: GeneratedFamily[], format: ExpositionFormat): string {
  let out = '';
  for (const f of families) {
    if (f.help !== undefined) out += `# HELP ${f.name} ${escapeHelp(f.help, format)}\n`;
    out += `# TYPE ${f.name} ${f.type}\n`;
    const sampleName = format === 'openmetrics' && f.type === 'counter' ? `${f.name}_total` : f.name;
    for (const s of f.samples) {
      const labels = s.labels.map(([n, v]) => `${n}="${escapeLabel(v)}"`).join(',');
      out += `${sampleName}${labels === '' ? '' : `{${labels}}`} ${formatValue(s.value)}`;
      if (s.timestampMs !== undefined) {
        out += ` ${format === 'openmetrics' ? String(s.timestampMs / 1000) : String(s.timestampMs)}`;
      }
      out += '\n';
    }
  }
  return format === 'openmetrics' ? `${out}# EOF\n` : out;
}

function expected(f: GeneratedFamily, format: ExpositionFormat): MetricFamily {
  const sampleName = format === 'openmetrics' && f.type === 'counter' ? `${f.name}_total` : f.name;
  const family: MetricFamily = {
    name: f.name,
    type: f.type,
    line: 0,
    samples: f.samples.map((s) => ({
      name: sampleName,
      labels: s.labels,
      value: s.value,
      line: 0,
      ...(s.timestampMs === undefined ? {} : { timestampMs: s.timestampMs }),
    })),
  };
  // The text format separates the docstring from the name by blanks, so leading blanks are not part of it.
  if (f.help !== undefined) family.help = format === 'text' ? f.help.replace(/^[ \t]+/, '') : f.help;
  return family;
}

/** Lines are checked by the table tests; the round trip compares the values. */
function strip(f: MetricFamily): unknown {
  return { ...f, line: 0, samples: f.samples.map((s) => ({ ...s, line: 0 })) };
}
