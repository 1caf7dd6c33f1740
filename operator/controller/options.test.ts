import { describe, expect, it } from 'vitest';
import { type OperatorOptions, parseOperatorOptions, UsageError } from './options.js';

const none = () => undefined;

describe('parseOperatorOptions', () => {
  it('defaults: the pod namespace, else cardinal-system; metrics on :8081; no proxy discovery', () => {
    expect(parseOperatorOptions([], none)).toEqual({
      kubeconfig: undefined,
      namespace: 'cardinal-system',
      metricsHost: '0.0.0.0',
      metricsPort: 8081,
      logLevel: 'info',
      shutdownTimeoutMs: 30_000,
      proxies: { kind: 'none' },
      proxyConfigPath: '/etc/cardinal/policies',
      proxyTimeoutMs: 5_000,
      proxyTls: undefined,
      statusIntervalMs: 30_000,
      statusWriteQps: 0,
      statusWriteBurst: 30,
      statusWorkers: 8,
      configShards: 1,
      usage: { dashboardSelector: 'grafana_dashboard=1', dashboardNamespaces: [], prometheusRules: true },
      webhook: undefined,
      leaderElection: {
        enabled: true,
        namespace: 'cardinal-system',
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
      },
    });
    expect(parseOperatorOptions([], () => 'monitoring')).toMatchObject({
      namespace: 'monitoring',
      leaderElection: { namespace: 'monitoring' },
    });
  });

  it('serves the webhook from a certificate directory or a self-managed Secret', () => {
    const webhook = (argv: string[]) => (parseOperatorOptions(argv, none) as OperatorOptions).webhook;
    expect(webhook(['--webhook-listen', ':9443', '--webhook-cert-dir', '/certs'])).toEqual({
      host: '0.0.0.0',
      port: 9443,
      certs: { kind: 'dir', dir: '/certs' },
    });
    expect(
      webhook([
        '--webhook-listen=127.0.0.1:9443',
        '--webhook-secret=wh',
        '--webhook-configuration=vwc',
        '--namespace=obs',
      ]),
    ).toEqual({
      host: '127.0.0.1',
      port: 9443,
      certs: {
        kind: 'self-managed',
        secretName: 'wh',
        webhookConfiguration: 'vwc',
        hosts: ['cardinal-operator.obs.svc'],
        servingValidityMs: 2160 * 3_600_000,
        caValidityMs: 43800 * 3_600_000,
        syncIntervalMs: 60_000,
      },
    });
  });

  it.each([
    [['--webhook-cert-dir', '/c'], '--webhook-cert-dir needs --webhook-listen'],
    [['--webhook-listen', ':9443'], 'exactly one of --webhook-cert-dir and --webhook-secret'],
    [
      ['--webhook-listen', ':9443', '--webhook-secret', 's'],
      '--webhook-secret needs --webhook-configuration',
    ],
    [
      ['--webhook-listen', ':9443', '--webhook-cert-dir', '/c', '--webhook-hosts', 'x'],
      '--webhook-hosts applies to --webhook-secret',
    ],
    [
      ['--webhook-listen', '9443', '--webhook-cert-dir', '/c'],
      '--webhook-listen: "9443" must be HOST:PORT or :PORT',
    ],
  ])('refuses webhook flags %j', (argv, message) => {
    expect(() => parseOperatorOptions(argv, none)).toThrow(message);
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
          '--status-interval',
          '1s',
          '--proxy-timeout=1m30s',
          '--proxy-config-path',
          '/config',
          '--status-write-qps',
          '0.5',
          '--status-write-burst=1',
          '--status-workers=3',
          '--config-shards',
          '4',
        ],
        () => 'ignored',
      ),
    ).toMatchObject({
      kubeconfig: '/k',
      namespace: 'ns',
      metricsHost: '127.0.0.1',
      metricsPort: 9000,
      shutdownTimeoutMs: 500,
      statusIntervalMs: 1_000,
      proxyTimeoutMs: 90_000,
      proxyConfigPath: '/config',
      statusWriteQps: 0.5,
      statusWriteBurst: 1,
      statusWorkers: 3,
      configShards: 4,
    });
    expect(parseOperatorOptions(['--metrics-listen', '[::1]:1'], none)).toMatchObject({ metricsHost: '::1' });
    expect(parseOperatorOptions(['-h'], none)).toBe('help');
  });

  it('polls the proxies over HTTPS with a CA file, and a server name when given', () => {
    expect(
      parseOperatorOptions(['--proxy-service', 'p', '--proxy-tls-ca-file', '/ca.crt'], none),
    ).toMatchObject({
      proxyTls: { caFile: '/ca.crt', serverName: undefined },
    });
    expect(
      parseOperatorOptions(['--proxy-tls-ca-file=/ca.crt', '--proxy-tls-server-name=p.ns.svc'], none),
    ).toMatchObject({ proxyTls: { caFile: '/ca.crt', serverName: 'p.ns.svc' } });
  });

  it('takes a Service or a static list of proxies', () => {
    expect(parseOperatorOptions(['--proxy-service', 'cardinal-proxy'], none)).toMatchObject({
      proxies: { kind: 'service', service: 'cardinal-proxy' },
    });
    expect(
      parseOperatorOptions(['--proxy-endpoints', 'http://127.0.0.1:8080, http://[::1]:9000'], none),
    ).toMatchObject({
      proxies: {
        kind: 'static',
        endpoints: [
          { address: '127.0.0.1', port: 8080, endpoint: '127.0.0.1:8080', url: 'http://127.0.0.1:8080' },
          { address: '::1', port: 9000, endpoint: '[::1]:9000', url: 'http://[::1]:9000' },
        ],
      },
    });
  });

  it.each([
    [['--nope'], 'unknown flag --nope'],
    [['--namespace'], "Option '--namespace <value>' argument missing"],
    [['--namespace='], '--namespace needs a value'],
    [['--metrics-listen', '8081'], '--metrics-listen: "8081" must be HOST:PORT'],
    [['--metrics-listen', ':99999'], '--metrics-listen: port 99999 is out of range'],
    [['--shutdown-timeout', '5'], 'is not a duration'],
    [['--status-interval', '0s'], 'must be longer than zero'],
    [['--status-write-qps=-1'], '--status-write-qps: "-1" must be a number of 0 or more'],
    [['--status-write-burst', '1.5'], '--status-write-burst: "1.5" must be a positive integer'],
    [['--status-workers', '0'], '--status-workers: "0" must be a positive integer'],
    [['--config-shards', '2.5'], '--config-shards: "2.5" must be a positive integer'],
    [['--config-shards', '65'], 'at most 64'],
    [['--proxy-service', 'a', '--proxy-endpoints', 'http://x:1'], 'exclude each other'],
    [['--proxy-tls-server-name', 'p.ns.svc'], '--proxy-tls-server-name needs --proxy-tls-ca-file'],
    [['--proxy-service', 'Not_A_Service'], '--proxy-service: "Not_A_Service"'],
    [['--proxy-endpoints', 'http://x:1/metrics'], 'without a path'],
    [['--proxy-endpoints', 'ftp://x:1'], 'must be an http or https URL'],
    [['--proxy-endpoints', 'http://x:1,'], 'empty entry'],
    [['stray'], 'unexpected argument "stray": every setting is a --flag'],
  ])('rejects %j', (argv, message) => {
    expect(() => parseOperatorOptions(argv, none)).toThrow(UsageError);
    expect(() => parseOperatorOptions(argv, none)).toThrow(message);
  });
});

describe('leader election flags', () => {
  const none = () => undefined;
  it.each([
    [['--leader-elect=false'], { enabled: false }],
    [['--leader-elect-namespace', 'ops'], { namespace: 'ops' }],
    [
      [
        '--leader-elect-lease-duration',
        '2s',
        '--leader-elect-renew-deadline',
        '1500ms',
        '--leader-elect-retry-period',
        '300ms',
      ],
      { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 300 },
    ],
  ])('%j', (argv, expected) => {
    const o = parseOperatorOptions(argv, none);
    expect(o === 'help' ? o : o.leaderElection).toMatchObject(expected);
  });

  it.each([
    [['--leader-elect=maybe'], '--leader-elect: "maybe" must be "true" or "false"'],
    [['--leader-elect-renew-deadline', '20s'], 'lease duration > renew deadline > retry period'],
  ])('%j is refused', (argv, message) => {
    expect(() => parseOperatorOptions(argv, none)).toThrow(message);
  });
});

describe('usage flags', () => {
  const none = () => undefined;
  const usageOf = (argv: string[]) => {
    const o = parseOperatorOptions(argv, none);
    return o === 'help' ? o : o.usage;
  };
  it.each([
    [[], { dashboardSelector: 'grafana_dashboard=1', dashboardNamespaces: [], prometheusRules: true }],
    [
      ['--dashboard-selector', 'team=a,grafana_dashboard', '--dashboard-namespaces', 'monitoring, grafana'],
      { dashboardSelector: 'team=a,grafana_dashboard', dashboardNamespaces: ['monitoring', 'grafana'] },
    ],
    [['--prometheus-rules=false'], { prometheusRules: false }],
  ])('%j', (argv, expected) => {
    expect(usageOf(argv)).toMatchObject(expected);
  });

  it('--usage=false watches nothing', () => {
    expect(usageOf(['--usage=false'])).toBeUndefined();
  });

  it.each([
    [['--usage=maybe'], '--usage: "maybe" must be "true" or "false"'],
    [['--dashboard-selector', 'a in (b)'], 'want a label selector'],
    [['--dashboard-namespaces', 'Bad_NS'], '"Bad_NS" is not a namespace name'],
    [['--prometheus-rules=no'], '--prometheus-rules: "no" must be "true" or "false"'],
  ])('%j is refused', (argv, message) => {
    expect(() => parseOperatorOptions(argv, none)).toThrow(message);
  });
});
