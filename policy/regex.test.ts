// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${name}` is Go template syntax here.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileAnchored, parseTemplate } from './regex.js';

describe('compileAnchored', () => {
  it.each([
    ['foo', 'foo', true],
    ['foo', 'foobar', false],
    ['foo', 'xfoo', false],
    ['a|b', 'a', true],
    ['a|b', 'ab', false],
    ['', '', true],
    ['', 'x', false],
    ['.*', 'line\nbreak', true],
    ['(?i)prod', 'PROD', true],
    ['\\d+', '١٢', false],
    ['\\pL+', 'éa', true],
    ['[[:upper:]].*', 'Abc', true],
    ['(?P<x>a)(?<y>b)', 'ab', true],
  ])('%j matches %j: %s', (pattern, input, expected) => {
    expect(compileAnchored(pattern).matches(input)).toBe(expected);
  });

  it('lets `.` match a newline only with dotAll (Prometheus 3), not without (Prometheus 2)', () => {
    expect(compileAnchored('a.b').matches('a\nb')).toBe(true);
    expect(compileAnchored('a.b', { dotAll: false }).matches('a\nb')).toBe(false);
    expect(compileAnchored('a.b', { dotAll: false }).matches('a-b')).toBe(true);
  });

  it('keeps an alternation inside the anchors', () => {
    // Unanchored alternation would let `b` match the end of `ab`.
    expect(compileAnchored('a|b').matches('xb')).toBe(false);
  });

  it.each([
    ['(a', 'invalid regex "(a": missing ): (a'],
    ['a{2,1001}', 'invalid regex "a{2,1001}": invalid repetition size: {2,1001}'],
    ['\\C', 'invalid regex "\\\\C": invalid escape sequence: `\\C`'],
    ['\\u0041', 'invalid regex "\\\\u0041": invalid escape sequence: `\\u`'],
  ])('refuses %j', (pattern, message) => {
    expect(() => compileAnchored(pattern)).toThrow(message);
  });

  it('accepts \\C and \\u inside \\Q...\\E, where they are literal', () => {
    expect(compileAnchored('\\Q\\C\\u\\E').matches('\\C\\u')).toBe(true);
  });
});

describe('replace: Go regexp.Expand', () => {
  const re = compileAnchored('(?P<first>[a-z]+)_(?P<second>[a-z]+)(x)?');
  it.each([
    ['$1', 'foo'],
    ['${1}', 'foo'],
    ['$2-$1', 'bar-foo'],
    ['${first}:${second}', 'foo:bar'],
    ['$first:$second', 'foo:bar'],
    ['$0', 'foo_bar'],
    // `$1_suffix` names the group `1_suffix`, which does not exist.
    ['$1_suffix', ''],
    ['${1}_suffix', 'foo_suffix'],
    ['$first_x', ''],
    ['$3', ''],
    ['$9', ''],
    ['$10', ''],
    ['$01', ''],
    ['$unknown', ''],
    ['$$1', '$1'],
    ['$$', '$'],
    ['a$', 'a$'],
    ['${1', '${1'],
    ['${}', '${}'],
    ['$-1', '$-1'],
    ['$é1', ''],
    ['ü$1ü', 'ü'],
    ['$constructor', ''],
    ['${__proto__}', ''],
    ['plain', 'plain'],
    ['', ''],
  ])('%j -> %j', (template, expected) => {
    expect(re.replace('foo_bar', template)).toBe(expected);
  });

  it('returns null when the input does not match', () => {
    expect(re.replace('FOO_BAR', '$1')).toBeNull();
  });

  it('counts groups by their opening parenthesis, as Go does', () => {
    expect(compileAnchored('((a)(b))').replace('ab', '$1|$2|$3')).toBe('ab|a|b');
  });

  it('a template without references is literal text', () => {
    expect(parseTemplate('abc').literal).toBe(true);
    expect(parseTemplate('a$$b').literal).toBe(true);
    expect(parseTemplate('a$1').literal).toBe(false);
  });

  it('a template with no `$` expands to itself for any match', () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => !s.includes('$')),
        fc.string(),
        (template, input) => {
          expect(compileAnchored('(.*)').replace(input, template)).toBe(template);
        },
      ),
    );
  });

  it('$1 of (.*) is the input itself, whatever the input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (input) => {
        expect(compileAnchored('(.*)').replace(input, '$1')).toBe(input);
      }),
    );
  });
});
