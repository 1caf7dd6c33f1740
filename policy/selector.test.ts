import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Matcher, matchesLabels, parseSelector, SelectorError } from './selector.js';

/** The matchers without their compiled regexes, for comparison. */
function parsed(input: string): [string, string, string][] {
  return parseSelector(input).matchers.map((m) => [m.name, m.type, m.value]);
}

describe('parseSelector', () => {
  it.each<[string, [string, string, string][]]>([
    ['up', [['__name__', '=', 'up']]],
    ['  node:cpu:rate5m  ', [['__name__', '=', 'node:cpu:rate5m']]],
    [
      'http_requests_total{code!="200"}',
      [
        ['__name__', '=', 'http_requests_total'],
        ['code', '!=', '200'],
      ],
    ],
    ['{job=~"api-.*"}', [['job', '=~', 'api-.*']]],
    [
      '{job!~"api-.*", env="prod",}',
      [
        ['job', '!~', 'api-.*'],
        ['env', '=', 'prod'],
      ],
    ],
    ['up{}', [['__name__', '=', 'up']]],
    ['{"metric.name"}', [['__name__', '=', 'metric.name']]],
    [
      '{"metric.name", "label.name"=~"v.*"}',
      [
        ['__name__', '=', 'metric.name'],
        ['label.name', '=~', 'v.*'],
      ],
    ],
    ['{__name__=~"up|down"}', [['__name__', '=~', 'up|down']]],
    ["{a='single \\' quote'}", [['a', '=', "single ' quote"]]],
    ['{a=`raw \\n "x"`}', [['a', '=', 'raw \\n "x"']]],
    ['{a="\\a\\b\\f\\n\\r\\t\\v\\\\\\""}', [['a', '=', '\x07\b\f\n\r\t\v\\"']]],
    ['{a="\\x41\\101\\u00e9\\U0001F600"}', [['a', '=', 'AAé😀']]],
    ['{a="\\xc3\\xa9"}', [['a', '=', 'é']]],
    ['{a="ünïcode ✓"}', [['a', '=', 'ünïcode ✓']]],
    [
      'up # a comment\n{a="b"}',
      [
        ['__name__', '=', 'up'],
        ['a', '=', 'b'],
      ],
    ],
    ['{a=""}', [['a', '=', '']]],
  ])('%s', (input, matchers) => {
    expect(parsed(input)).toEqual(matchers);
  });

  it.each([
    ['', 'selector: unexpected end of input at column 1'],
    ['{job="api"', 'selector: unexpected end of input at column 11'],
    ['{job="api"}}', 'selector: unexpected "}" at column 12'],
    ['{}', 'selector: empty selector {}; leave the selector out to select every series at column 1'],
    ['{job="api", , }', 'selector: unexpected "," at column 13'],
    ['{job=api}', 'selector: unexpected "api" at column 6'],
    ['{job}', 'selector: unexpected "}" at column 5'],
    ['{job~"x"}', 'selector: unexpected character "~" at column 5'],
    ['{"a" "b"}', 'selector: unexpected string at column 6'],
    ['up[5m]', 'selector: unexpected character "[" at column 3'],
    ['up down', 'selector: unexpected "down" at column 4'],
    ['{a:b="x"}', 'selector: unexpected character ":" at column 3'],
    ['1up', 'selector: unexpected character "1" at column 1'],
    ['{a="x}', 'selector: unterminated quoted string at column 4'],
    ['{a="x\ny"}', 'selector: unterminated quoted string at column 4'],
    ['{a=`x}', 'selector: unterminated raw string at column 4'],
    ['{a="\\q"}', 'selector: unknown escape sequence at column 5'],
    ['{a="\\\'"}', 'selector: unknown escape sequence at column 5'],
    ['{a="\\xZZ"}', 'selector: invalid escape sequence at column 5'],
    ['{a="\\400"}', 'selector: octal escape value > 255 at column 5'],
    ['{a="\\ud800"}', 'selector: escape sequence is an invalid Unicode code point at column 5'],
    ['{a="\\xff"}', 'selector: invalid UTF-8 in byte escapes at column 9'],
    ['up{__name__="x"}', 'selector: metric name must not be set twice at column 4'],
    ['up{"x"}', 'selector: metric name must not be set twice at column 4'],
    ['{a=~"("}', 'selector: invalid regex "(": missing ): ( at column 5'],
    ['{a=~"\\\\C"}', 'selector: invalid regex "\\\\C": invalid escape sequence: `\\C` at column 5'],
  ])('refuses %j: %s', (input, message) => {
    expect(() => parseSelector(input)).toThrow(SelectorError);
    expect(() => parseSelector(input)).toThrow(message);
  });

  it('either parses any input or throws a SelectorError with a column inside it', () => {
    const alphabet = fc.constantFrom(...'{}=!~,"\'`\\ a_:.x9\n#é(|*'.split(''));
    const inputs = fc.oneof(fc.string(), fc.string({ unit: alphabet }), fc.string({ unit: 'binary' }));
    fc.assert(
      fc.property(inputs, (input) => {
        try {
          parseSelector(input);
        } catch (err) {
          if (!(err instanceof SelectorError)) throw err;
          expect(err.column).toBeGreaterThanOrEqual(1);
          expect(err.column).toBeLessThanOrEqual(input.length + 1);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('reads back a selector it is given in canonical form', () => {
    const name = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,8}$/);
    const matcher = fc.record({
      name,
      type: fc.constantFrom('=', '!=') as fc.Arbitrary<'=' | '!='>,
      value: fc.string({ unit: 'grapheme' }),
    });
    fc.assert(
      fc.property(fc.array(matcher, { minLength: 1, maxLength: 4 }), (ms) => {
        const text = `{${ms.map((m) => `${m.name}${m.type}${JSON.stringify(m.value)}`).join(', ')}}`;
        expect(parsed(text)).toEqual(ms.map((m) => [m.name, m.type, m.value]));
      }),
    );
  });
});

describe('matchesLabels', () => {
  const labels: Record<string, string> = { __name__: 'http_requests_total', job: 'api-1', code: '200' };
  const get = (name: string) => labels[name] ?? '';

  it.each([
    ['http_requests_total', true],
    ['up', false],
    ['{job=~"api-.*"}', true],
    ['{job=~"api"}', false], // anchored: a partial match is no match
    ['{job!~"api-[0-9]"}', false],
    ['{code!="500"}', true],
    ['{missing=""}', true], // a missing label equals ""
    ['{missing!=""}', false],
    ['{missing=~".*"}', true],
    ['{missing=~".+"}', false],
    ['{missing!~"x"}', true],
    ['http_requests_total{job="api-1", code="200"}', true],
    ['http_requests_total{job="api-1", code="500"}', false],
  ])('%s -> %s', (selector, expected) => {
    expect(matchesLabels(parseSelector(selector).matchers, get)).toBe(expected);
  });

  it('matches a newline with . as Prometheus 3 does', () => {
    const ms: readonly Matcher[] = parseSelector('{a=~"x.y"}').matchers;
    expect(matchesLabels(ms, () => 'x\ny')).toBe(true);
  });
});
