// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${name}` is Go template syntax here.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RelabelConfigT } from '../crds/metric-policy.js';
import {
  compareNames,
  compileRelabel,
  goToLower,
  goToUpper,
  hashMod,
  type Label,
  type RelabelDialect,
  relabel,
} from './relabel.js';

/** Labels from a record, sorted by name as `relabel` requires. */
function ls(record: Record<string, string>): Label[] {
  return Object.entries(record)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => compareNames(a.name, b.name));
}

function run(
  configs: RelabelConfigT[],
  input: Record<string, string>,
  dialect: RelabelDialect = 'prometheus3',
): Record<string, string> | null {
  const out = relabel(compileRelabel(configs, { dialect }), ls(input));
  return out === null ? null : Object.fromEntries(out.map((l) => [l.name, l.value]));
}

const series = { __name__: 'http_requests_total', env: 'prod', region: 'eu-west', pod: 'api-7' };

describe('relabel: every action', () => {
  it.each<[string, RelabelConfigT[], Record<string, string> | null]>([
    // replace, with every default: source value "" matches (.*) and $1 is "", which deletes.
    ['replace with defaults deletes the target', [{ target_label: 'env' }], { ...series, env: undefined! }],
    [
      'replace copies a value',
      [{ source_labels: ['env'], target_label: 'stage' }],
      { ...series, stage: 'prod' },
    ],
    [
      'replace joins sources with the separator',
      [{ source_labels: ['env', 'region'], separator: '/', target_label: 'where' }],
      { ...series, where: 'prod/eu-west' },
    ],
    [
      'replace joins with ";" by default and reads a missing label as ""',
      [{ source_labels: ['env', 'nope', 'region'], target_label: 'where' }],
      { ...series, where: 'prod;;eu-west' },
    ],
    [
      'replace uses groups',
      [{ source_labels: ['region'], regex: '(\\w+)-(\\w+)', target_label: 'r', replacement: '$2.$1' }],
      { ...series, r: 'west.eu' },
    ],
    [
      'replace uses named groups',
      [
        {
          source_labels: ['pod'],
          regex: '(?P<app>[a-z]+)-(?P<n>\\d+)',
          target_label: 'app',
          replacement: '${app}',
        },
      ],
      { ...series, app: 'api' },
    ],
    [
      'replace does nothing when the regex does not match',
      [{ source_labels: ['env'], regex: 'dev', target_label: 'env', replacement: 'x' }],
      series,
    ],
    [
      'replace expands the target label',
      [{ source_labels: ['pod'], regex: '([a-z]+)-.*', target_label: 'app_$1', replacement: 'yes' }],
      { ...series, app_api: 'yes' },
    ],
    [
      'replace skips a target that expands to an invalid (here empty) name',
      [{ source_labels: ['region'], regex: '(.*)', target_label: '${2}', replacement: 'x' }],
      series,
    ],
    [
      'replace with an empty result deletes the (expanded) target',
      [{ source_labels: ['env'], regex: 'prod', target_label: 'region', replacement: '' }],
      { ...series, region: undefined! },
    ],
    [
      'replace sets __name__',
      [
        {
          source_labels: ['__name__'],
          regex: '(.*)_total',
          target_label: '__name__',
          replacement: '${1}_count',
        },
      ],
      { ...series, __name__: 'http_requests_count' },
    ],
    ['keep keeps a match', [{ action: 'keep', source_labels: ['env'], regex: 'prod|dev' }], series],
    ['keep drops a non-match', [{ action: 'keep', source_labels: ['env'], regex: 'dev' }], null],
    ['keep matches the whole value', [{ action: 'keep', source_labels: ['env'], regex: 'pro' }], null],
    ['drop drops a match', [{ action: 'drop', source_labels: ['env'], regex: 'prod' }], null],
    ['drop keeps a non-match', [{ action: 'drop', source_labels: ['env'], regex: 'dev' }], series],
    ['drop with defaults drops everything', [{ action: 'drop' }], null],
    [
      'keepequal keeps equal values',
      [{ action: 'keepequal', source_labels: ['env'], target_label: 'stage' }],
      null,
    ],
    [
      'keepequal compares the joined sources',
      [{ action: 'keepequal', source_labels: ['nope'], target_label: 'missing' }],
      series,
    ],
    [
      'dropequal drops equal values',
      [{ action: 'dropequal', source_labels: ['nope'], target_label: 'missing' }],
      null,
    ],
    [
      'dropequal keeps different values',
      [{ action: 'dropequal', source_labels: ['env'], target_label: 'pod' }],
      series,
    ],
    [
      'hashmod writes md5(value)[8:16] mod modulus',
      [
        {
          action: 'hashmod',
          source_labels: ['env', 'region'],
          separator: ';',
          modulus: 1000,
          target_label: 'shard',
        },
      ],
      { ...series, shard: hashMod('prod;eu-west', 1000n) },
    ],
    [
      'labelmap copies matching labels under new names',
      [{ action: 'labelmap', regex: '(e)(nv)', replacement: 'x_$2$1' }],
      { ...series, x_nve: 'prod' },
    ],
    [
      'labelmap replaces with $1 by default',
      [{ action: 'labelmap', regex: 're(gion)' }],
      { ...series, gion: 'eu-west' },
    ],
    [
      'labeldrop drops matching names',
      [{ action: 'labeldrop', regex: 'env|pod' }],
      { __name__: series.__name__, region: 'eu-west' },
    ],
    [
      'labelkeep keeps matching names',
      [{ action: 'labelkeep', regex: '__name__|env' }],
      { __name__: series.__name__, env: 'prod' },
    ],
    ['labelkeep of nothing drops the series', [{ action: 'labelkeep', regex: 'nothing' }], null],
    ['lowercase', [{ action: 'lowercase', source_labels: ['pod'], target_label: 'pod' }], series],
    [
      'uppercase',
      [{ action: 'uppercase', source_labels: ['env', 'pod'], target_label: 'up' }],
      { ...series, up: 'PROD;API-7' },
    ],
    [
      'rules run in order and see earlier results',
      [
        { source_labels: ['env'], target_label: 'stage' },
        { action: 'keep', source_labels: ['stage'], regex: 'prod' },
        { action: 'labeldrop', regex: 'env' },
      ],
      { ...series, env: undefined!, stage: 'prod' },
    ],
  ])('%s', (_name, configs, expected) => {
    const want =
      expected === null
        ? null
        : Object.fromEntries(Object.entries(expected).filter(([, v]) => v !== undefined));
    expect(run(configs, series)).toEqual(want);
  });

  it('returns labels sorted by name, without empty values', () => {
    const program = compileRelabel([
      { target_label: 'zz', replacement: 'z' },
      { target_label: 'aa', replacement: 'a' },
    ]);
    const out = relabel(program, ls({ __name__: 'm', b: '', c: 'c' }));
    expect(out).toEqual(ls({ __name__: 'm', aa: 'a', c: 'c', zz: 'z' }));
  });

  it('returns the input array itself when nothing changes', () => {
    const input = ls(series);
    expect(relabel(compileRelabel([{ action: 'keep', source_labels: ['env'], regex: 'prod' }]), input)).toBe(
      input,
    );
    expect(relabel(compileRelabel([]), input)).toBe(input);
  });

  it('does not modify its input', () => {
    const input = ls(series);
    const copy = structuredClone(input);
    relabel(
      compileRelabel([
        { action: 'labeldrop', regex: 'env' },
        { target_label: 'a', replacement: 'b' },
      ]),
      input,
    );
    expect(input).toEqual(copy);
  });

  it('labelmap visits labels set by earlier rules last, so they win a collision (Prometheus 3)', () => {
    const configs: RelabelConfigT[] = [
      { target_label: 'aaa', replacement: 'added' },
      { action: 'labelmap', regex: 'aaa|env', replacement: 'mapped' },
    ];
    expect(run(configs, series)?.mapped).toBe('added');
    // Prometheus 2 materialized the sorted label set after every rule, so `env` came last.
    expect(run(configs, series, 'prometheus2')?.mapped).toBe('prod');
  });

  it('labelmap of a label with an empty value deletes the target', () => {
    expect(
      run([{ action: 'labelmap', regex: 'blank', replacement: 'env' }], { ...series, blank: '' }),
    ).toEqual({
      __name__: 'http_requests_total',
      region: 'eu-west',
      pod: 'api-7',
    });
  });
});

describe('relabel: Prometheus 2 and 3 differences', () => {
  it.each<
    [
      string,
      RelabelConfigT[],
      Record<string, string>,
      Record<string, string> | null,
      Record<string, string> | null,
    ]
  >([
    [
      '`.` matches a newline only in 3',
      [{ action: 'keep', source_labels: ['v'], regex: 'a.b' }],
      { __name__: 'm', v: 'a\nb' },
      { __name__: 'm', v: 'a\nb' },
      null,
    ],
    [
      'the default regex (.*) does not match a newline in 2',
      [{ source_labels: ['v'], target_label: 'copy' }],
      { __name__: 'm', v: 'a\nb' },
      { __name__: 'm', v: 'a\nb', copy: 'a\nb' },
      { __name__: 'm', v: 'a\nb' },
    ],
    [
      'an empty result deletes the expanded target in 3, the unexpanded one in 2',
      [{ source_labels: ['v'], target_label: '${1}', replacement: '$9' }],
      { __name__: 'm', v: 'pod', pod: 'p' },
      { __name__: 'm', v: 'pod' },
      { __name__: 'm', v: 'pod', pod: 'p' },
    ],
    [
      'a target expanding to a UTF-8 name is valid in 3 only',
      [{ source_labels: ['v'], target_label: 'x_${1}', replacement: 'y' }],
      { __name__: 'm', v: 'ü' },
      { __name__: 'm', v: 'ü', x_ü: 'y' },
      { __name__: 'm', v: 'ü' },
    ],
  ])('%s', (_name, configs, input, p3, p2) => {
    expect(run(configs, input, 'prometheus3')).toEqual(p3);
    expect(run(configs, input, 'prometheus2')).toEqual(p2);
  });
});

describe('hashmod', () => {
  // Golden values from Go: binary.BigEndian.Uint64(md5.Sum([]byte(v))[8:]) % m.
  it.each([
    ['', 7n, '1'],
    ['', 1000n, '958'],
    ['', 9007199254740991n, '10552415373770'],
    ['a', 7n, '2'],
    ['a', 4294967311n, '2130780752'],
    ['prod;eu', 1000n, '348'],
    ['prod;eu', 9007199254740991n, '6775701124157882'],
    ['日本語', 7n, '5'],
    ['日本語', 4294967311n, '3751440811'],
    ['anything', 1n, '0'],
  ])('hashmod(%j, %d) = %s', (value, modulus, expected) => {
    expect(hashMod(value, modulus)).toBe(expected);
  });
});

describe('lowercase and uppercase follow Go, code point by code point', () => {
  // Golden values from Go's strings.ToLower and strings.ToUpper.
  it.each([
    ['İstanbul', 'istanbul', 'İSTANBUL'],
    ['straße', 'straße', 'STRAßE'],
    ['ﬀ', 'ﬀ', 'ﬀ'],
    ['ᾳ', 'ᾳ', 'ᾼ'],
    ['ΣΊΣΥΦΟΣ', 'σίσυφοσ', 'ΣΊΣΥΦΟΣ'],
    ['ᾈ', 'ᾀ', 'ᾈ'],
    ['MiXeD 42', 'mixed 42', 'MIXED 42'],
    ['🚀rocket', '🚀rocket', '🚀ROCKET'],
  ])('%j -> %j / %j', (input, lower, upper) => {
    expect(goToLower(input)).toBe(lower);
    expect(goToUpper(input)).toBe(upper);
  });
});

describe('compileRelabel: defaults and validation', () => {
  it('applies Prometheus defaults', () => {
    const [rule] = compileRelabel([{ target_label: 't' }]).rules;
    expect(rule).toMatchObject({ action: 'replace', separator: ';', targetLabel: 't', defaultRegex: true });
    expect(rule?.regex.source).toBe('(.*)');
    expect(rule?.replacement.source).toBe('$1');
    expect(compileRelabel([]).dialect).toBe('prometheus3');
  });

  it('reads the action case-insensitively, as Prometheus does', () => {
    expect(compileRelabel([{ action: 'LabelDrop' as 'labeldrop', regex: 'x' }]).rules[0]?.action).toBe(
      'labeldrop',
    );
  });

  it.each<[RelabelConfigT, string]>([
    [{ action: '' as 'replace' }, 'relabel[1]: relabel action cannot be empty'],
    [{ action: 'explode' as 'replace' }, 'relabel[1]: unknown relabel action "explode"'],
    [
      { action: 'hashmod', target_label: 't' },
      'relabel[1]: relabel configuration for hashmod requires non-zero modulus',
    ],
    [{}, "relabel[1]: relabel configuration for replace action requires 'target_label' value"],
    [
      { action: 'hashmod', modulus: 2 },
      "relabel[1]: relabel configuration for hashmod action requires 'target_label' value",
    ],
    [
      { action: 'lowercase' },
      "relabel[1]: relabel configuration for lowercase action requires 'target_label' value",
    ],
    [
      { action: 'uppercase' },
      "relabel[1]: relabel configuration for uppercase action requires 'target_label' value",
    ],
    [
      { action: 'keepequal' },
      "relabel[1]: relabel configuration for keepequal action requires 'target_label' value",
    ],
    [
      { action: 'dropequal' },
      "relabel[1]: relabel configuration for dropequal action requires 'target_label' value",
    ],
    [{ target_label: 'a\uD800' }, `relabel[1]: "a\\ud800" is invalid 'target_label' for replace action`],
    [
      { action: 'hashmod', modulus: 2, target_label: '\uDC00' },
      `relabel[1]: "\\udc00" is invalid 'target_label' for hashmod action`,
    ],
    [
      { action: 'lowercase', target_label: 't', replacement: 'x' },
      "relabel[1]: 'replacement' can not be set for lowercase action",
    ],
    [
      { action: 'uppercase', target_label: 't', replacement: 'x' },
      "relabel[1]: 'replacement' can not be set for uppercase action",
    ],
    [
      { action: 'keepequal', target_label: 't', replacement: 'x' },
      "relabel[1]: 'replacement' can not be set for keepequal action",
    ],
    [{ action: 'labelmap', replacement: '' }, `relabel[1]: "" is invalid 'replacement' for labelmap action`],
    [
      { action: 'keepequal', target_label: 't', regex: '(.*)' },
      "relabel[1]: keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ],
    [
      { action: 'dropequal', target_label: 't', separator: ',' },
      "relabel[1]: dropequal action requires only 'source_labels' and `target_label`, and no other fields",
    ],
    [
      { action: 'dropequal', target_label: 't', modulus: 3 },
      "relabel[1]: dropequal action requires only 'source_labels' and `target_label`, and no other fields",
    ],
    [
      { action: 'labeldrop', source_labels: ['a'] },
      "relabel[1]: labeldrop action requires only 'regex', and no other fields",
    ],
    [
      { action: 'labeldrop', source_labels: [] },
      "relabel[1]: labeldrop action requires only 'regex', and no other fields",
    ],
    [
      { action: 'labelkeep', target_label: 't' },
      "relabel[1]: labelkeep action requires only 'regex', and no other fields",
    ],
    [
      { action: 'labelkeep', modulus: 2 },
      "relabel[1]: labelkeep action requires only 'regex', and no other fields",
    ],
    [
      { action: 'labelkeep', separator: ',' },
      "relabel[1]: labelkeep action requires only 'regex', and no other fields",
    ],
    [
      { action: 'labelkeep', replacement: 'x' },
      "relabel[1]: labelkeep action requires only 'regex', and no other fields",
    ],
    [{ source_labels: [''], target_label: 't' }, 'relabel[1]: "" is not a valid label name'],
    [{ regex: '(', target_label: 't' }, 'relabel[1]: invalid regex "(": missing ): ('],
    [
      { action: 'hashmod', modulus: 1.5, target_label: 't' },
      'relabel[1]: modulus must be a non-negative integer, got 1.5',
    ],
  ])('refuses %j', (config, message) => {
    expect(() => compileRelabel([{ action: 'drop', regex: 'ok' }, config])).toThrow(message);
  });

  it.each<[RelabelConfigT, string]>([
    [{ target_label: 'a-b' }, `relabel[0]: "a-b" is invalid 'target_label' for replace action`],
    [{ target_label: '1a' }, `relabel[0]: "1a" is invalid 'target_label' for replace action`],
    [{ target_label: '$1-x' }, `relabel[0]: "$1-x" is invalid 'target_label' for replace action`],
    [
      { action: 'labelmap', replacement: 'x-$1' },
      `relabel[0]: "x-$1" is invalid 'replacement' for labelmap action`,
    ],
    [{ source_labels: ['ü'], target_label: 't' }, 'relabel[0]: "ü" is not a valid label name'],
    [
      { action: 'lowercase', target_label: 'ü' },
      `relabel[0]: "ü" is invalid 'target_label' for lowercase action`,
    ],
  ])(
    'refuses %j with legacy names (Prometheus 2), accepts it with UTF-8 names (Prometheus 3)',
    (config, message) => {
      expect(() => compileRelabel([config], { dialect: 'prometheus2' })).toThrow(message);
      expect(() => compileRelabel([config], { dialect: 'prometheus3' })).not.toThrow();
    },
  );

  it.each<RelabelConfigT>([
    { action: 'keepequal', source_labels: ['a', 'b'], target_label: 't', separator: ';' },
    { action: 'labeldrop', regex: 'x', separator: ';', replacement: '$1' },
    { action: 'hashmod', source_labels: ['a'], modulus: 2 ** 53 - 1, target_label: 't' },
    { target_label: '${1}_$name', replacement: '' },
    { action: 'labelmap', regex: '(.*)', replacement: '${1}' },
  ])('accepts %j', (config) => {
    expect(() => compileRelabel([config], { dialect: 'prometheus2' })).not.toThrow();
    expect(() => compileRelabel([config], { dialect: 'prometheus3' })).not.toThrow();
  });
});

describe('relabel properties', () => {
  const labelSet = fc
    .uniqueArray(fc.record({ name: fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/), value: fc.string() }), {
      selector: (l) => l.name,
      maxLength: 6,
    })
    .map((labels) =>
      [{ name: '__name__', value: 'm' }, ...labels.filter((l) => l.name !== '__name__')].sort((a, b) =>
        compareNames(a.name, b.name),
      ),
    );

  it('output is sorted by name, unique and free of empty values', () => {
    const program = compileRelabel([
      { action: 'labelmap', regex: '([a-c])(.*)', replacement: 'z$2$1' },
      { source_labels: ['__name__', 'a'], target_label: 'joined' },
      { action: 'uppercase', source_labels: ['b'], target_label: 'b' },
    ]);
    fc.assert(
      fc.property(labelSet, (labels) => {
        const out = relabel(program, labels);
        if (out === null) return;
        for (let i = 1; i < out.length; i++)
          expect(compareNames(out[i - 1]!.name, out[i]!.name)).toBeLessThan(0);
        for (const l of out) expect(l.value).not.toBe('');
      }),
    );
  });

  it('compareNames orders by code point, as Go orders by UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        const bytes = Buffer.compare(Buffer.from(a), Buffer.from(b));
        expect(Math.sign(compareNames(a, b))).toBe(bytes);
      }),
    );
  });
});
