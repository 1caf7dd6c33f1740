import { describe, expect, it } from 'vitest';
import {
  bool,
  fraction,
  hostPort,
  nonNegativeNumber,
  oneOf,
  parseDuration,
  parseFlags,
  positiveDuration,
  positiveInt,
  positiveNumber,
  size,
  UsageError,
} from './flags.js';

const spec = {
  'stage.plugin': { type: 'string', multiple: true },
  'log-level': { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
} as const;

describe('parseFlags', () => {
  it('reads strings, booleans and repeated flags', () => {
    const { values } = parseFlags(
      ['--stage.plugin', 'a.js', '--log-level=debug', '-v', '--stage.plugin', 'b.js'],
      spec,
    );
    expect(values).toEqual({ 'stage.plugin': ['a.js', 'b.js'], 'log-level': 'debug', verbose: true });
  });

  it('takes positionals only when asked', () => {
    expect(parseFlags(['x', '--verbose'], spec, { positionals: true }).positionals).toEqual(['x']);
  });

  it.each([
    [['--log-levl', 'debug'], 'unknown flag --log-levl; did you mean --log-level?'],
    [['--nothing-like-it'], 'unknown flag --nothing-like-it'],
    [['--log-level'], "Option '--log-level <value>' argument missing"],
    [['stray'], 'unexpected argument "stray": every setting is a --flag'],
  ])('%j is a UsageError: %s', (argv, message) => {
    expect(() => parseFlags(argv, spec)).toThrow(UsageError);
    expect(() => parseFlags(argv, spec)).toThrow(message);
  });
});

describe('values', () => {
  it.each([
    [() => parseDuration('--t', '1m30s'), 90_000],
    [() => positiveDuration('--t', '500ms'), 500],
    [() => positiveInt('--n', '12'), 12],
    [() => positiveNumber('--qps', '2.5'), 2.5],
    [() => nonNegativeNumber('--qps', '0'), 0],
    [() => nonNegativeNumber('--qps', '7.5'), 7.5],
    [() => fraction('--f', '0.9'), 0.9],
    [() => size('--s', '32MiB'), 32 * 1024 * 1024],
    [() => bool('--b', 'false', true), false],
    [() => bool('--b', undefined, true), true],
    [() => hostPort('--listen', ':8080'), { host: '0.0.0.0', port: 8080 }],
    [() => hostPort('--listen', '[::1]:9'), { host: '::1', port: 9 }],
  ])('%s', (fn, want) => {
    expect(fn()).toEqual(want);
  });

  it.each([
    [() => parseDuration('--t', '10'), '--t: "10" is not a duration like 500ms, 10s or 1m'],
    [() => positiveDuration('--t', '0s'), '--t: "0s" must be longer than zero'],
    [() => positiveInt('--n', '1.5'), '--n: "1.5" must be a positive integer'],
    [() => positiveInt('--n', '0'), '--n: "0" must be a positive integer'],
    [() => positiveNumber('--qps', '-1'), '--qps: "-1" must be a positive number'],
    [() => nonNegativeNumber('--qps', '-1'), '--qps: "-1" must be a number of 0 or more'],
    [() => nonNegativeNumber('--qps', 'x'), '--qps: "x" must be a number of 0 or more'],
    [() => fraction('--f', '2'), '--f: "2" must be a number from 0 to 1'],
    [() => size('--s', '12 parsecs'), '--s: '],
    [() => bool('--b', 'yes', true), '--b: "yes" must be "true" or "false"'],
    [() => hostPort('--listen', '8080'), '--listen: "8080" must be HOST:PORT or :PORT'],
    [() => hostPort('--listen', ':70000'), '--listen: port 70000 is out of range'],
    [
      () => oneOf('--mode', 'rejct', ['reject', 'drop']),
      '--mode: "rejct" must be "reject" or "drop"; did you mean "reject"?',
    ],
  ])('%s is a UsageError naming the flag', (fn, message) => {
    expect(fn).toThrow(UsageError);
    expect(fn).toThrow(message);
  });
});
