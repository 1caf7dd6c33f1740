import { describe, expect, it } from 'vitest';
import { DEFAULT_UPSTREAM, parseDuration, parseHostPort, parseProxyOptions } from './flags.js';

describe('parseProxyOptions', () => {
  it('the door check, overload bounds and retry lane: defaults, values and refusals', () => {
    const d = parseProxyOptions([], {}) as Exclude<ReturnType<typeof parseProxyOptions>, 'help' | 'version'>;
    expect(d.ingest).toEqual({ onInvalid: 'reject', names: 'utf8', maxFutureMs: 600_000, maxAgeMs: 0 });
    expect(d).toMatchObject({ maxInflightRequests: 512, maxInflightBytes: 256 << 20 });
    expect(d.retry.jitter).toBe(0.5);
    const o = parseProxyOptions(
      [
        ...['--ingest.invalid', 'drop', '--ingest.max-future', '0', '--ingest.max-age', '1h'],
        ...['--ingest.label-names', 'legacy', '--max-inflight-requests', '7', '--max-inflight-bytes', '1000'],
        ...['--queue.dir', '/q', '--queue.max-retry-age', '0', '--queue.max-retry-attempts', '5'],
        ...['--queue.dead-letter-max-bytes', '4096'],
      ],
      {},
    ) as Exclude<ReturnType<typeof parseProxyOptions>, 'help' | 'version'>;
    expect(o.ingest).toEqual({ onInvalid: 'drop', names: 'legacy', maxFutureMs: 0, maxAgeMs: 3_600_000 });
    expect(o).toMatchObject({ maxInflightRequests: 7, maxInflightBytes: 1000 });
    expect(o.queue).toMatchObject({ maxRetryAgeMs: 0, maxRetryAttempts: 5, deadLetterMaxBytes: 4096 });
    expect(parseProxyOptions(['--queue.dir', '/q'], {})).toMatchObject({
      queue: { maxRetryAgeMs: 900_000, maxRetryAttempts: 0, deadLetterMaxBytes: (1 << 30) / 8 },
    });
    expect(parseProxyOptions(['--ingest.invalid', 'off'], {})).toMatchObject({ ingest: undefined });
    expect(() => parseProxyOptions(['--ingest.invalid', 'warn'], {})).toThrow(
      '--ingest.invalid: "warn" must be "reject", "drop" or "off"',
    );
    expect(() => parseProxyOptions(['--ingest.label-names', 'ascii'], {})).toThrow(/--ingest.label-names/);
    expect(() => parseProxyOptions(['--max-inflight-requests', '0'], {})).toThrow(/--max-inflight-requests/);
    expect(() => parseProxyOptions(['--queue.max-retry-attempts', '3'], {})).toThrow(
      '--queue.max-retry-attempts needs --queue.dir',
    );
  });

  it('has defaults that run with nothing set', () => {
    const o = parseProxyOptions([], {});
    expect(o).toMatchObject({
      listenHost: '0.0.0.0',
      listenPort: 8080,
      upstreamUrl: DEFAULT_UPSTREAM,
      upstreamIsDefault: true,
      upstreamProtocol: 'same',
      configPath: undefined,
    });
  });

  it('reads the environment, including the aliases of the simple proxy it replaces', () => {
    expect(
      parseProxyOptions([], { REAL_PROM_REMOTE_WRITE: 'http://prom:9090/api/v1/write', PROXY_PORT: '9201' }),
    ).toMatchObject({
      upstreamUrl: 'http://prom:9090/api/v1/write',
      listenHost: '0.0.0.0',
      listenPort: 9201,
    });
    expect(
      parseProxyOptions([], {
        CARDINAL_UPSTREAM_URL: 'http://a/w',
        REAL_PROM_REMOTE_WRITE: 'http://b/w',
        CARDINAL_LISTEN: '127.0.0.1:1234',
        PROXY_PORT: '9',
      }),
    ).toMatchObject({
      upstreamUrl: 'http://a/w',
      upstreamIsDefault: false,
      listenHost: '127.0.0.1',
      listenPort: 1234,
    });
  });

  it('serves no read path by default, and reads the query flags', () => {
    expect(parseProxyOptions([], {})).toMatchObject({ query: undefined });
    const o = parseProxyOptions(['--query.upstream', 'http://prom:9090', '--queue.dir', '/q/'], {});
    expect(o).toMatchObject({
      query: {
        upstream: 'http://prom:9090/',
        timeoutMs: 120_000,
        logFile: undefined,
        stateFile: '/q/usage-state.json',
        maxMetrics: 100_000,
        readersPerMetric: 5,
      },
    });
    expect(parseProxyOptions([], { CARDINAL_QUERY_LOG_FILE: '/var/log/prometheus/query.log' })).toMatchObject(
      {
        query: { upstream: undefined, logFile: '/var/log/prometheus/query.log', stateFile: undefined },
      },
    );
    expect(() => parseProxyOptions(['--query.timeout', '1m'], {})).toThrow(
      '--query.timeout needs --query.upstream or --query.log-file',
    );
    expect(() => parseProxyOptions(['--query.upstream', 'http://u:p@prom:9090'], {})).toThrow(/credentials/);
    expect(() =>
      parseProxyOptions(['--query.upstream', 'http://prom', '--query.usage.readers-per-metric', '65'], {}),
    ).toThrow(/at most 64/);
  });

  it('flags win over the environment', () => {
    const o = parseProxyOptions(['--listen', '[::1]:9000', '--upstream', 'https://m/api/v1/push'], {
      CARDINAL_UPSTREAM_URL: 'http://a/w',
    });
    expect(o).toMatchObject({ listenHost: '::1', listenPort: 9000, upstreamUrl: 'https://m/api/v1/push' });
  });

  it('leaves ingest open by default and reads the auth flags', () => {
    expect(parseProxyOptions([], {})).toMatchObject({
      auth: { credentialsPath: undefined, tenantHeaderMode: 'override' },
    });
    const argv = ['--auth.credentials-file', '/etc/cardinal/auth', '--auth.tenant-header-mode', 'none'];
    expect(parseProxyOptions(argv, { CARDINAL_AUTH_CREDENTIALS_FILE: '/s' })).toMatchObject({
      auth: { credentialsPath: '/etc/cardinal/auth', tenantHeaderMode: 'none' },
    });
    expect(parseProxyOptions([], { CARDINAL_AUTH_CREDENTIALS_FILE: '/s' })).toMatchObject({
      auth: { credentialsPath: '/s' },
    });
  });

  it('has no queue without --queue.dir, and reads the queue flags with it', () => {
    expect(parseProxyOptions([], {})).toMatchObject({ queue: undefined });
    expect(parseProxyOptions([], { CARDINAL_QUEUE_DIR: '/q' })).toMatchObject({
      queue: {
        dir: '/q',
        maxBytes: 1 << 30,
        segmentMaxBytes: 64 << 20,
        fullPolicy: 'reject',
        fullStatus: 429,
        fullRetryAfterSeconds: 5,
        batchMaxSamples: 10000,
        batchMaxBytes: 4 << 20,
        batchMaxWaitMs: 200,
        retryOn: '5xx,429',
      },
    });
    const argv = [
      ...['--queue.dir', '/var/q', '--queue.max-bytes', '80000', '--queue.full-policy', 'drop-oldest'],
      ...['--queue.full-status', '503', '--queue.batch-max-wait', '1s', '--queue.retry-on', '5xx,429,408'],
      ...['--queue.batch-max-bytes', '1000', '--forward.backoff-jitter', '0.5'],
    ];
    expect(parseProxyOptions(argv, {})).toMatchObject({
      retry: { jitter: 0.5 },
      queue: {
        dir: '/var/q',
        maxBytes: 80000,
        segmentMaxBytes: 10000,
        fullPolicy: 'drop-oldest',
        fullStatus: 503,
        batchMaxWaitMs: 1000,
        batchMaxBytes: 1000,
        retryOn: '5xx,429,408',
      },
    });
  });

  it('returns help for -h', () => {
    expect(parseProxyOptions(['-h'], {})).toBe('help');
  });

  it.each([
    [['--upstream', 'not a url'], '--upstream: "not a url" is not a URL'],
    [['--upstream', 'ftp://x/'], 'must be an http or https URL'],
    [['--upstream', 'http://u:p@x/'], 'credentials in the URL are not accepted'],
    [['--listen', '8080'], '--listen: "8080" must be HOST:PORT'],
    [['--upstream.protocol', '3.0'], '--upstream.protocol: "3.0" must be "same" or "1.0"'],
    [['--forward.timeout', 'ten'], '--forward.timeout: "ten" is not a duration'],
    [['--max-request-bytes=-1'], '--max-request-bytes: "-1" is not a size such as 32MiB'],
    [['--bogus'], 'unknown flag --bogus'],
    [['--auth.tenant-header-mode', 'pass'], '--auth.tenant-header-mode: "pass" must be "override" or "none"'],
    [['--auth.credentials-file', ''], '--auth.credentials-file: must not be empty'],
    [['--queue.max-bytes', '10'], '--queue.max-bytes needs --queue.dir'],
    [['--queue.dir', '/q', '--queue.full-policy', 'block'], '"block" must be "reject" or "drop-oldest"'],
    [
      ['--queue.dir', '/q', '--queue.full-status', '500'],
      '--queue.full-status: "500" must be "429" or "503"',
    ],
    [['--queue.dir', '/q', '--queue.retry-on', '5xx,2xx'], '--queue.retry-on: 2xx statuses mean success'],
    [['--queue.dir', '/q', '--queue.retry-on', '42'], '"42" is neither a status code'],
    [
      ['--queue.dir', '/q', '--queue.max-bytes', '1000', '--queue.segment-max-bytes', '2000'],
      'must not exceed',
    ],
    [['--forward.backoff-jitter', '2'], '--forward.backoff-jitter: "2" must be a number from 0 to 1'],
  ])('%j is rejected with %j', (argv, message) => {
    expect(() => parseProxyOptions(argv, {})).toThrow(message);
  });

  it('does not echo credentials from the upstream URL', () => {
    expect(() => parseProxyOptions(['--upstream', 'http://user:s3cret@x/'], {})).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('s3cret') }),
    );
  });
});

describe('parseHostPort', () => {
  it.each([
    [':8080', '0.0.0.0', 8080],
    ['127.0.0.1:1', '127.0.0.1', 1],
    ['[::]:80', '::', 80],
  ])('%s', (value, host, port) => {
    expect(parseHostPort(value)).toEqual({ host, port });
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['2h', 7_200_000],
  ])('%s is %i ms', (value, ms) => {
    expect(parseDuration('--x', value)).toBe(ms);
  });
  it.each(['', '10', 's', '10x', '1m x'])('%j is rejected', (value) => {
    expect(() => parseDuration('--x', value)).toThrow('--x');
  });
});

describe('limit store and replica flags', () => {
  it('without --limits.store, limits stay local; the replica label defaults to cardinal_replica from POD_NAME', () => {
    const o = parseProxyOptions([], { POD_NAME: 'proxy-7' });
    if (o === 'help' || o === 'version') throw new Error('not options');
    expect(o.limitsStore).toBeUndefined();
    expect(o.limitsReplicas).toBe(1);
    expect(o.replica).toEqual({ label: 'cardinal_replica', name: 'proxy-7' });
  });

  it('parses the store, its prefix default and timeouts', () => {
    const o = parseProxyOptions(
      [
        '--upstream',
        'http://prom:9090/api/v1/write',
        '--limits.store',
        'redis+cluster://10.0.0.1:7000,10.0.0.2:7000',
        '--limits.store.timeout',
        '50ms',
        '--limits.replicas',
        '3',
        '--replica-label',
        '',
      ],
      {},
    );
    if (o === 'help' || o === 'version') throw new Error('not options');
    expect(o.limitsStore).toMatchObject({
      url: 'redis+cluster://10.0.0.1:7000,10.0.0.2:7000',
      prefix: 'cardinal:prom:9090/api/v1/write',
      timeoutMs: 50,
      connectTimeoutMs: 2000,
      retryIntervalMs: 1000,
      flushIntervalMs: 1000,
    });
    expect(o.limitsReplicas).toBe(3);
    expect(o.replica.label).toBe('');
  });

  it.each([
    [['--limits.store', 'http://redis:6379'], /--limits.store: .*is not redis:/],
    [['--limits.store', 'redis://user:hunter2@redis:6379'], /password in the URL is not accepted/],
    [['--limits.store', 'redis://a:1,b:2'], /several addresses need redis\+cluster/],
    [['--limits.store.prefix', 'x'], /--limits.store.prefix needs --limits.store/],
    [['--limits.store', 'redis://r:6379', '--limits.store.prefix', '{x}'], /hash tags/],
    [['--replica-label', '1abc'], /is not a label name/],
    [['--replica-label', '__x'], /reserved/],
    [['--limits.replicas', '0'], /positive integer/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseProxyOptions(argv, {})).toThrow(message);
  });

  it('never echoes a password given in the URL', () => {
    expect(() => parseProxyOptions(['--limits.store', 'redis://u:hunter2@r:6379'], {})).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('hunter2') }),
    );
  });
});

describe('flag mistakes and human units', () => {
  it.each([
    [['--upstrem', 'http://x/w'], 'unknown flag --upstrem; did you mean --upstream?'],
    [['--max-request-byte=1'], 'unknown flag --max-request-byte; did you mean --max-request-bytes?'],
    [['--log-format', 'json'], 'unknown flag --log-format; did you mean --log.format?'],
    [['--zzzzzz'], 'unknown flag --zzzzzz'],
    [['extra'], 'unexpected argument "extra": every setting is a --flag'],
    [['--push.lint', 'warm'], '--push.lint: "warm" must be "reject" or "warn"; did you mean "warn"?'],
    [['--log.format', 'text'], '--log.format: "text" must be "json" or "logfmt"'],
    [
      ['--log-level', 'inf'],
      '--log-level: "inf" must be "trace" or "debug" or "info" or "warn" or "error" or "fatal" or "silent"; did you mean "info"?',
    ],
    [['--max-request-bytes', '32 megs'], '--max-request-bytes: "32 megs" is not a size such as 32MiB'],
  ])('%j is refused with %j', (argv, message) => {
    expect(() => parseProxyOptions(argv, {})).toThrow(message);
  });

  it('an unknown flag is named exactly, with nothing about positionals', () => {
    expect(() => parseProxyOptions(['--upstrem'], {})).toThrow(
      /^unknown flag --upstrem; did you mean --upstream\?$/,
    );
  });

  it('sizes take units', () => {
    const o = parseProxyOptions(['--max-request-bytes', '32MiB', '--max-decoded-bytes', '1GiB'], {});
    expect(o).toMatchObject({ maxRequestBytes: 32 << 20, maxDecodedBytes: 1 << 30 });
    const q = parseProxyOptions(
      ['--queue.dir', '/q', '--queue.max-bytes', '2GiB', '--queue.batch-max-bytes', '512KiB'],
      {},
    );
    expect(q).toMatchObject({ queue: { maxBytes: 2 ** 31, batchMaxBytes: 512 * 1024 } });
  });

  it('--version, and the log format: logfmt on a terminal, json otherwise, the flag and environment win', () => {
    expect(parseProxyOptions(['--version'], {})).toBe('version');
    expect(parseProxyOptions([], {})).toMatchObject({ logFormat: 'json' });
    expect(parseProxyOptions([], {}, { terminal: true })).toMatchObject({ logFormat: 'logfmt' });
    expect(parseProxyOptions(['--log.format', 'json'], {}, { terminal: true })).toMatchObject({
      logFormat: 'json',
    });
    expect(parseProxyOptions([], { CARDINAL_LOG_FORMAT: 'logfmt' })).toMatchObject({ logFormat: 'logfmt' });
  });
});
