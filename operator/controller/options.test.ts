import { describe, expect, it } from 'vitest';
import { parseOperatorOptions, UsageError } from './options.js';

const none = () => undefined;

describe('parseOperatorOptions', () => {
  it('defaults: the pod namespace, else cardinal-system; metrics on :8081', () => {
    expect(parseOperatorOptions([], none)).toEqual({
      kubeconfig: undefined,
      namespace: 'cardinal-system',
      metricsHost: '0.0.0.0',
      metricsPort: 8081,
      logLevel: 'info',
      shutdownTimeoutMs: 30_000,
    });
    expect(parseOperatorOptions([], () => 'monitoring')).toMatchObject({ namespace: 'monitoring' });
  });

  it('reads flags as `--flag value` and `--flag=value`', () => {
    expect(
      parseOperatorOptions(
        [
          '--kubeconfig',
          '/k',
          '--namespace=ns',
          '--metrics-listen',
          '127.0.0.1:9000',
          '--shutdown-timeout=500ms',
        ],
        () => 'ignored',
      ),
    ).toMatchObject({
      kubeconfig: '/k',
      namespace: 'ns',
      metricsHost: '127.0.0.1',
      metricsPort: 9000,
      shutdownTimeoutMs: 500,
    });
    expect(parseOperatorOptions(['--metrics-listen', '[::1]:1'], none)).toMatchObject({ metricsHost: '::1' });
    expect(parseOperatorOptions(['-h'], none)).toBe('help');
  });

  it.each([
    [['--nope'], 'unknown flag --nope'],
    [['--namespace'], '--namespace needs a value'],
    [['--metrics-listen', '8081'], 'want HOST:PORT'],
    [['--metrics-listen', ':99999'], 'want HOST:PORT'],
    [['--shutdown-timeout', '5m'], 'want a duration'],
  ])('rejects %j', (argv, message) => {
    expect(() => parseOperatorOptions(argv, none)).toThrow(UsageError);
    expect(() => parseOperatorOptions(argv, none)).toThrow(message);
  });
});
