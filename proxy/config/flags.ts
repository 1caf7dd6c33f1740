import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parseDuration, UsageError } from '../../lib/flags.js';
import { didYouMean } from '../../policy/suggest.js';
import type { TenantHeaderMode } from '../auth/http.js';
import { parseRetryOn, type RetryPolicy } from '../forward/retry.js';
import type { IngestChecks } from '../ingest/remote-write.js';
import { parseStoreUrl } from '../limits/url.js';
import { parseSize } from './units.js';

/** Everything the proxy is started with; parsed once, frozen, passed down. */
export interface ProxyOptions {
  readonly listenHost: string;
  readonly listenPort: number;
  readonly upstreamUrl: string;
  /** True when no upstream was given and the embedded default is used. */
  readonly upstreamIsDefault: boolean;
  /** `same` forwards in the version received; `1.0` down-converts 2.0 for receivers that only speak 1.0. */
  readonly upstreamProtocol: 'same' | '1.0';
  readonly upstreamBearerTokenFile: string | undefined;
  readonly upstreamConnections: number;
  readonly configPath: string | undefined;
  readonly maxRequestBytes: number;
  readonly maxDecodedBytes: number;
  /** Remote-write requests handled at once, and their bodies' bytes; beyond, 503 with Retry-After. */
  readonly maxInflightRequests: number;
  readonly maxInflightBytes: number;
  readonly attemptTimeoutMs: number;
  readonly retry: RetryPolicy;
  readonly shutdownTimeoutMs: number;
  /** --workers: worker processes behind the one listener; undefined follows the cgroup's CPU quota. */
  readonly workers: number | undefined;
  readonly logLevel: string;
  /** json: one JSON object a line; logfmt: key=value lines, and multi-line messages as text. */
  readonly logFormat: LogFormat;
  readonly reportDroppedAsWritten: boolean;
  readonly push: {
    /** The Pushgateway pushes are forwarded to; undefined leaves the push routes off (404). */
    readonly url: string | undefined;
    readonly lintMode: 'reject' | 'warn';
  };
  /** Serve HTTPS from these files (PEM), re-read when they change; undefined serves plain HTTP. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly auth: {
    /** Credentials required on ingest; undefined leaves ingest open. */
    readonly credentialsPath: string | undefined;
    readonly tenantHeaderMode: TenantHeaderMode;
    /** /metrics needs a credential with the metrics or admin role. */
    readonly metricsAuth: boolean;
  };
  /** Least time between two reloads asked for with POST /-/reload. */
  readonly reloadMinIntervalMs: number;
  /** --stage.plugin: the stage plugin modules to load, in order. */
  readonly stagePlugins: readonly string[];
  /** --stage.plugin.timeout: the plugins' time budget per request. */
  readonly stagePluginTimeoutMs: number;
  readonly stats: {
    readonly windowMs: number;
    readonly maxTrackedSeries: number;
    readonly exposeTop: number;
    /** How often the web pages' history (counters over 5 minutes, sparklines) is sampled. */
    readonly sampleIntervalMs: number;
  };
  /** The durable queue; undefined without --queue.dir (synchronous pass-through). */
  readonly queue: QueueOptions | undefined;
  /** The shared limit store; undefined: every limit is this process's own (README "Limits across replicas"). */
  readonly limitsStore: LimitsStoreOptions | undefined;
  /** Replicas sharing the limits: each enforces limit / replicas while the store is down. */
  readonly limitsReplicas: number;
  /** The label series the proxy synthesizes carry, and this replica's value of it; label '' for none. */
  readonly replica: { readonly label: string; readonly name: string };
  /** The read path and usage statistics; undefined without --query.upstream or --query.log-file. */
  readonly query: QueryOptions | undefined;
  /** The door check of remote-write ingest (--ingest.*); undefined with --ingest.invalid off. */
  readonly ingest: IngestChecks | undefined;
  readonly engine: {
    readonly verdictCacheSize: number;
    readonly maxTrackedSeries: number;
    readonly maxTrackedLabelValues: number;
    readonly maxMetricNames: number;
  };
}

export interface QueueOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentMaxBytes: number;
  readonly fullPolicy: 'reject' | 'drop-oldest';
  /** The status a sender gets while the queue is full (reject policy). */
  readonly fullStatus: 429 | 503;
  readonly fullRetryAfterSeconds: number;
  readonly batchMaxSamples: number;
  readonly batchMaxBytes: number;
  readonly batchMaxWaitMs: number;
  /** The --queue.retry-on list, as given; parse with parseRetryOn. */
  readonly retryOn: string;
  /** A request retried alone becomes a dead letter after failing this long (0: never). */
  readonly maxRetryAgeMs: number;
  /** ... or this many times (0: no limit). */
  readonly maxRetryAttempts: number;
  /** Bytes of dead letters kept in <dir>/dead-letter; beyond, the oldest go, counted. */
  readonly deadLetterMaxBytes: number;
}

export interface LimitsStoreOptions {
  /** redis://, rediss://, redis+cluster:// or rediss+cluster:// (proxy/limits/redis.ts). */
  readonly url: string;
  readonly passwordFile: string | undefined;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retryIntervalMs: number;
  readonly flushIntervalMs: number;
}

export interface QueryOptions {
  /** The query API's base URL; undefined serves no read path (the query log alone is tailed). */
  readonly upstream: string | undefined;
  readonly timeoutMs: number;
  readonly connections: number;
  readonly logFile: string | undefined;
  readonly logPollMs: number;
  readonly stateFile: string | undefined;
  readonly saveIntervalMs: number;
  readonly maxMetrics: number;
  readonly maxReaders: number;
  readonly readersPerMetric: number;
  readonly namesRefreshMs: number;
}
export type LogFormat = 'json' | 'logfmt';

export const DEFAULT_UPSTREAM = 'http://127.0.0.1:9090/api/v1/write';

export const usage = `Usage: cardinal-proxy [flags]

Sits between remote-write senders and a remote-write receiver and enforces MetricPolicy resources.

Flags (environment variable in brackets):
  --listen HOST:PORT               where to accept remote-write [CARDINAL_LISTEN; PROXY_PORT sets the port]
                                   default 0.0.0.0:8080
  --upstream URL                   the receiver's remote-write endpoint [CARDINAL_UPSTREAM_URL, REAL_PROM_REMOTE_WRITE]
                                   default ${DEFAULT_UPSTREAM}
  --upstream.protocol same|1.0     forward in the version received, or down-convert 2.0 to 1.0 (default same)
  --upstream.bearer-token-file F   send "Authorization: Bearer <contents of F>" upstream
  --upstream.connections N         connections kept open to the upstream (default 32)
  --config PATH                    a MetricPolicy YAML file or a directory of them [CARDINAL_CONFIG]
  --pushgateway URL                accept Pushgateway-protocol pushes on /metrics/job/... and forward them to the
                                   Pushgateway at URL, e.g. http://pushgateway:9091 [CARDINAL_PUSHGATEWAY_URL]
  --push.lint reject|warn          reject: a push with lint or standards problems is refused with 400 and every
                                   problem; warn: it is forwarded and the problems are reported (default reject)
  --tls.cert-file F, --tls.key-file F
                                   serve HTTPS with this PEM certificate chain and key, re-read when they change
  --auth.credentials-file PATH     require credentials on ingest: a YAML file or a directory of them (a mounted
                                   Secret) listing bearer tokens and basic-auth users, each with its tenant
                                   [CARDINAL_AUTH_CREDENTIALS_FILE]
  --auth.tenant-header-mode M      override: forward the credential's tenant as X-Scope-OrgID, replacing the
                                   sender's; none: forward no X-Scope-OrgID (default override)
  --metrics.auth                   with --auth.credentials-file, /metrics too needs a credential with the
                                   metrics or admin role (status, statistics and reload always need admin)
  --reload.min-interval DURATION   least time between two POST /-/reload; sooner is 429 (default 1s)
  --max-request-bytes N            largest accepted request body, compressed (default 33554432)
  --max-decoded-bytes N            largest accepted request body, decompressed (default 134217728)
  --max-inflight-requests N        remote-write requests handled at once; beyond, senders get 503 with
                                   Retry-After before their body is read (default 512)
  --max-inflight-bytes N           bytes of remote-write bodies (by Content-Length) handled at once; beyond,
                                   503 with Retry-After; one request always fits (default 268435456)
  --forward.timeout DURATION       timeout of one attempt upstream (default 10s)
  --forward.retry-budget DURATION  total time spent retrying one request before answering 503 (default 20s)
  --forward.min-backoff DURATION   first retry delay (default 100ms)
  --forward.max-backoff DURATION   largest retry delay (default 3s)
  --forward.backoff-jitter F       random fraction of each retry delay, 0 to 1, never below the delay before
                                   (default 0.5: "equal jitter", each delay in [d/2, d]; intervals only grow)
  --queue.dir PATH                 keep accepted data in a durable queue here and answer senders once it is
                                   fsync'd; without it the proxy answers after the upstream accepted
                                   [CARDINAL_QUEUE_DIR]
  --queue.max-bytes N              bytes the queue may hold on disk (default 1073741824)
  --queue.segment-max-bytes N      size of one segment file (default max-bytes/8, at most 67108864)
  --queue.full-policy P            reject: refuse new data while full; drop-oldest: drop the oldest queued
                                   data to make room, counted (default reject)
  --queue.full-status 429|503      the status refused senders get, with Retry-After (default 429)
  --queue.full-retry-after DUR     the Retry-After sent with it (default 5s)
  --queue.batch-max-samples N      samples per request to the upstream (default 10000)
  --queue.batch-max-bytes N        compressed bytes per request to the upstream (default 4194304)
  --queue.batch-max-wait DURATION  how long queued data waits for more to share a request (default 200ms)
  --queue.retry-on LIST            upstream statuses retried, e.g. 5xx,429 (default); others are dropped,
                                   counted, and kept as dead letters
  --queue.max-retry-age DURATION   a request the upstream keeps failing for while it takes other data is
                                   retried alone; after failing this long it becomes a dead letter (default
                                   15m; 0: never). During an outage the queue retries without a time limit
  --queue.max-retry-attempts N     ... or after this many attempts alone (default 0: no limit)
  --queue.dead-letter-max-bytes N  bytes of dead letters kept in <queue.dir>/dead-letter; the oldest go
                                   beyond, counted (default max-bytes/8)
  --ingest.invalid reject|drop|off what to do with a series a receiver would refuse (no or invalid __name__, invalid
                                   or repeated label names, an empty label set, invalid UTF-8, a native histogram
                                   whose count does not match its buckets, a timestamp outside the window below):
                                   reject: the request gets 400 naming the series and field; drop: the series is
                                   left out and counted; off: no check (default reject). Unsorted labels are sorted
  --ingest.max-future DURATION     refuse samples further ahead of the proxy's clock (default 10m; 0 turns it off)
  --ingest.max-age DURATION        refuse samples further behind the proxy's clock (default 0: off; Prometheus
                                   refuses samples older than its newest minus 1h, so 1h suits a bare Prometheus)
  --ingest.label-names utf8|legacy utf8: any non-empty UTF-8 name (remote-write 2.0); legacy: [a-zA-Z_][a-zA-Z0-9_]*
                                   and metric names [a-zA-Z_:][a-zA-Z0-9_:]* (default utf8)
  --query.upstream URL             serve the Prometheus read API (/api/v1/query, query_range, series, labels,
                                   label values, exemplars, metadata, /federate) on the proxy's port, passing
                                   requests through to this query API (Prometheus, Thanos, Mimir,
                                   VictoriaMetrics) and recording what each reads [CARDINAL_QUERY_UPSTREAM]
  --query.timeout DURATION         how long the query API may take to answer (default 2m)
  --query.connections N            connections kept open to the query API (default 16)
  --query.log-file PATH            tail Prometheus's query log (query_log_file) for rule evaluations, which
                                   count as reads by their rule group [CARDINAL_QUERY_LOG_FILE]
  --query.usage.state-file PATH    where read counts survive restarts (default <queue.dir>/usage-state.json
                                   with --queue.dir, otherwise none)
  --query.usage.save-interval DUR  how often the state file is written (default 1m), and on shutdown
  --query.usage.max-metrics N      metric names whose reads are tracked, about 500 bytes each (default 100000)
  --query.usage.max-readers N      distinct readers tracked; later ones count as "other" (default 1000)
  --query.usage.readers-per-metric N
                                   recent readers kept per metric (default 5)
  --query.names-refresh DURATION   how often the query API's metric names are fetched (default 5m)
  --shutdown-timeout DURATION      how long to let in-flight requests finish on SIGTERM (default 30s)
  --workers N                      worker processes serving the one listener (default: the container's CPU
                                   quota, rounded up, at most the CPU count) [CARDINAL_WORKERS]
  --log-level LEVEL                trace, debug, info, warn, error (default info) [CARDINAL_LOG_LEVEL]
  --log.format json|logfmt         json: one JSON object a line; logfmt: key=value lines, problems as text
                                   (default logfmt on a terminal, json otherwise) [CARDINAL_LOG_FORMAT]
  --report-dropped-as-written      count samples policies dropped as written in 2.0 responses (default off:
                                   the headers count what reached the upstream, as the 2.0 spec says)
  --limits.max-tracked-series N    series each limit tracks at most, ~13.3 bytes each, allocated per
                                   policy with limits (default 1000000)
  --limits.max-tracked-values N    label values each per-label limit tracks at most (default 262144)
  --limits.max-metric-names N      metric names told apart by limits and statistics (default 65536)
  --limits.store URL               share every limit with the other replicas through a Redis-protocol store:
                                   redis://HOST:PORT[/DB], rediss://... (TLS), redis+cluster://HOST:PORT,...
                                   (Redis Cluster) [CARDINAL_LIMITS_STORE]
  --limits.store.password-file F   the store's password (AUTH), read from F; never logged
  --limits.store.prefix P          prefix of every key, so instances sharing a store never share limits
                                   (default cardinal:<upstream host and path>)
  --limits.store.timeout DUR       how long a request waits for the store before enforcing its share
                                   locally (default 100ms)
  --limits.store.connect-timeout DUR  (default 2s)
  --limits.store.retry-interval DUR   how often a store that failed is asked again (default 1s)
  --limits.store.flush-interval DUR   how often activity of known series is sent to the store (default 1s)
  --limits.replicas N              replicas sharing the limits; while the store does not answer each
                                   enforces limit / N (default 1) [CARDINAL_LIMITS_REPLICAS]; the
                                   operator's count (proxy-replicas in --config) replaces it
  --replica-label NAME             the label series the proxy synthesizes (overflow, aggregates, merged
                                   collisions) carry, so replicas never send the same one; "" for none
                                   with a single replica (default cardinal_replica)
  --replica-name NAME              this replica's value of it (default $POD_NAME, else the host name)
  --stats.window DURATION          a series counts as active for top offenders while seen within it (default 10m)
  --stats.max-tracked-series N     series the top-offender statistics track (default 1000000)
  --stats.expose-top N             metric names /metrics exposes in top-offender gauges (default 20)
  --stats.sample-interval DURATION how often the web pages sample counters and top offenders (default 15s)
  --cache.max-label-sets N         label sets whose policy verdict is cached, in each of two generations (default 100000)
  --stage.plugin PATH              load a stage plugin (an ES module; README "Stage plugins"); repeatable
  --stage.plugin.timeout DUR       the plugins' time budget per request; past it the request goes on
                                   without them, or is refused per their failure mode (default 500ms)
  --version                        print the version and exit
  -h, --help                       show this help

Sizes take a unit: 32MiB, 512KiB, 4GB (or plain bytes); durations are like 500ms, 10s, 1m30s.
`;

/** What a flag mistake prints instead of the whole help. */
export const shortUsage = 'Usage: cardinal-proxy [flags]; cardinal-proxy --help lists every flag.\n';

export { parseDuration, UsageError } from '../../lib/flags.js';

/** Where the proxy runs: whether its log goes to a terminal decides the default log format. */
export interface ProxyEnvironment {
  readonly terminal?: boolean;
}

/** Parses flags and environment. Flags win over environment variables, which win over defaults. */
export function parseProxyOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  where: ProxyEnvironment = {},
): ProxyOptions | 'help' | 'version' {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError(flagMistake(err));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (v.version) return 'version';

  const listen =
    v.listen ?? env.CARDINAL_LISTEN ?? (env.PROXY_PORT ? `0.0.0.0:${env.PROXY_PORT}` : '0.0.0.0:8080');
  const { host, port } = parseHostPort(listen);
  const upstream = v.upstream ?? env.CARDINAL_UPSTREAM_URL ?? env.REAL_PROM_REMOTE_WRITE;
  const url = httpUrl('--upstream', upstream ?? DEFAULT_UPSTREAM, 'use --upstream.bearer-token-file');
  const pushgateway = v.pushgateway ?? env.CARDINAL_PUSHGATEWAY_URL;
  const pushUrl =
    pushgateway === undefined
      ? undefined
      : httpUrl('--pushgateway', pushgateway, 'give it without user and password');
  const lintMode = v['push.lint'] ?? 'reject';
  oneOf('--push.lint', lintMode, ['reject', 'warn']);
  const certFile = v['tls.cert-file'];
  const keyFile = v['tls.key-file'];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError('--tls.cert-file and --tls.key-file must be given together');
  }
  const protocol = v['upstream.protocol'] ?? 'same';
  oneOf('--upstream.protocol', protocol, ['same', '1.0']);

  const tenantHeaderMode = v['auth.tenant-header-mode'] ?? 'override';
  oneOf('--auth.tenant-header-mode', tenantHeaderMode, ['override', 'none']);
  const logFormat = v['log.format'] ?? env.CARDINAL_LOG_FORMAT ?? (where.terminal ? 'logfmt' : 'json');
  oneOf('--log.format', logFormat, ['json', 'logfmt']);
  const logLevel = v['log-level'] ?? env.CARDINAL_LOG_LEVEL ?? 'info';
  oneOf('--log-level', logLevel, ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
  const credentialsPath = v['auth.credentials-file'] ?? env.CARDINAL_AUTH_CREDENTIALS_FILE;
  if (credentialsPath === '') throw new UsageError('--auth.credentials-file: must not be empty');
  const metricsAuth = v['metrics.auth'] ?? false;
  if (metricsAuth && credentialsPath === undefined) {
    throw new UsageError('--metrics.auth needs --auth.credentials-file');
  }

  const options: ProxyOptions = {
    listenHost: host,
    listenPort: port,
    upstreamUrl: url.toString(),
    upstreamIsDefault: upstream === undefined,
    upstreamProtocol: protocol,
    upstreamBearerTokenFile: v['upstream.bearer-token-file'],
    upstreamConnections: positiveInt('--upstream.connections', v['upstream.connections'] ?? '32'),
    configPath: v.config ?? env.CARDINAL_CONFIG,
    maxRequestBytes: size('--max-request-bytes', v['max-request-bytes'] ?? '32MiB'),
    maxDecodedBytes: size('--max-decoded-bytes', v['max-decoded-bytes'] ?? '128MiB'),
    maxInflightRequests: positiveInt('--max-inflight-requests', v['max-inflight-requests'] ?? '512'),
    maxInflightBytes: size('--max-inflight-bytes', v['max-inflight-bytes'] ?? '256MiB'),
    attemptTimeoutMs: parseDuration('--forward.timeout', v['forward.timeout'] ?? '10s'),
    retry: Object.freeze({
      minBackoffMs: parseDuration('--forward.min-backoff', v['forward.min-backoff'] ?? '100ms'),
      maxBackoffMs: parseDuration('--forward.max-backoff', v['forward.max-backoff'] ?? '3s'),
      budgetMs: parseDuration('--forward.retry-budget', v['forward.retry-budget'] ?? '20s'),
      jitter: fraction('--forward.backoff-jitter', v['forward.backoff-jitter'] ?? '0.5'),
    }),
    queue: parseQueueOptions(v, env),
    query: parseQueryOptions(v, env),
    ingest: parseIngestChecks(v),
    shutdownTimeoutMs: parseDuration('--shutdown-timeout', v['shutdown-timeout'] ?? '30s'),
    workers: optionalWorkers(v.workers ?? env.CARDINAL_WORKERS),
    logLevel,
    logFormat,
    reportDroppedAsWritten: v['report-dropped-as-written'] ?? false,
    push: Object.freeze({ url: pushUrl?.toString(), lintMode }),
    tls: certFile === undefined || keyFile === undefined ? undefined : Object.freeze({ certFile, keyFile }),
    auth: Object.freeze({ credentialsPath, tenantHeaderMode, metricsAuth }),
    reloadMinIntervalMs: parseDuration('--reload.min-interval', v['reload.min-interval'] ?? '1s'),
    stagePlugins: Object.freeze([...(v['stage.plugin'] ?? [])]),
    stagePluginTimeoutMs: positiveDuration('--stage.plugin.timeout', v['stage.plugin.timeout'] ?? '500ms'),
    stats: Object.freeze({
      windowMs: parseDuration('--stats.window', v['stats.window'] ?? '10m'),
      maxTrackedSeries: positiveInt('--stats.max-tracked-series', v['stats.max-tracked-series'] ?? '1000000'),
      exposeTop: positiveInt('--stats.expose-top', v['stats.expose-top'] ?? '20'),
      sampleIntervalMs: parseDuration('--stats.sample-interval', v['stats.sample-interval'] ?? '15s'),
    }),
    limitsStore: parseLimitsStore(v, env, url),
    limitsReplicas: positiveInt(
      '--limits.replicas',
      v['limits.replicas'] ?? env.CARDINAL_LIMITS_REPLICAS ?? '1',
    ),
    replica: Object.freeze({
      label: replicaLabel(v['replica-label'] ?? 'cardinal_replica'),
      name: v['replica-name'] ?? env.POD_NAME ?? hostname(),
    }),
    engine: Object.freeze({
      verdictCacheSize: positiveInt('--cache.max-label-sets', v['cache.max-label-sets'] ?? '100000'),
      maxTrackedSeries: positiveInt(
        '--limits.max-tracked-series',
        v['limits.max-tracked-series'] ?? '1000000',
      ),
      maxTrackedLabelValues: positiveInt(
        '--limits.max-tracked-values',
        v['limits.max-tracked-values'] ?? '262144',
      ),
      maxMetricNames: positiveInt('--limits.max-metric-names', v['limits.max-metric-names'] ?? '65536'),
    }),
  };
  if (options.engine.maxMetricNames < 2 || options.engine.maxMetricNames > 65536) {
    throw new UsageError('--limits.max-metric-names must be between 2 and 65536');
  }
  if (options.retry.minBackoffMs > options.retry.maxBackoffMs) {
    throw new UsageError('--forward.min-backoff must not exceed --forward.max-backoff');
  }
  return Object.freeze(options);
}

const parseOptions = {
  listen: { type: 'string' },
  upstream: { type: 'string' },
  'upstream.protocol': { type: 'string' },
  'upstream.bearer-token-file': { type: 'string' },
  'upstream.connections': { type: 'string' },
  config: { type: 'string' },
  pushgateway: { type: 'string' },
  'push.lint': { type: 'string' },
  'tls.cert-file': { type: 'string' },
  'tls.key-file': { type: 'string' },
  'auth.credentials-file': { type: 'string' },
  'auth.tenant-header-mode': { type: 'string' },
  'metrics.auth': { type: 'boolean' },
  'reload.min-interval': { type: 'string' },
  'max-request-bytes': { type: 'string' },
  'max-decoded-bytes': { type: 'string' },
  'max-inflight-requests': { type: 'string' },
  'max-inflight-bytes': { type: 'string' },
  'forward.timeout': { type: 'string' },
  'forward.retry-budget': { type: 'string' },
  'forward.min-backoff': { type: 'string' },
  'forward.max-backoff': { type: 'string' },
  'forward.backoff-jitter': { type: 'string' },
  'queue.dir': { type: 'string' },
  'queue.max-bytes': { type: 'string' },
  'queue.segment-max-bytes': { type: 'string' },
  'queue.full-policy': { type: 'string' },
  'queue.full-status': { type: 'string' },
  'queue.full-retry-after': { type: 'string' },
  'queue.batch-max-samples': { type: 'string' },
  'queue.batch-max-bytes': { type: 'string' },
  'queue.batch-max-wait': { type: 'string' },
  'queue.retry-on': { type: 'string' },
  'queue.max-retry-age': { type: 'string' },
  'queue.max-retry-attempts': { type: 'string' },
  'queue.dead-letter-max-bytes': { type: 'string' },
  'ingest.invalid': { type: 'string' },
  'ingest.max-future': { type: 'string' },
  'ingest.max-age': { type: 'string' },
  'ingest.label-names': { type: 'string' },
  'query.upstream': { type: 'string' },
  'query.timeout': { type: 'string' },
  'query.connections': { type: 'string' },
  'query.log-file': { type: 'string' },
  'query.usage.state-file': { type: 'string' },
  'query.usage.save-interval': { type: 'string' },
  'query.usage.max-metrics': { type: 'string' },
  'query.usage.max-readers': { type: 'string' },
  'query.usage.readers-per-metric': { type: 'string' },
  'query.names-refresh': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  workers: { type: 'string' },
  'log-level': { type: 'string' },
  'log.format': { type: 'string' },
  version: { type: 'boolean' },
  'report-dropped-as-written': { type: 'boolean' },
  'limits.max-tracked-series': { type: 'string' },
  'limits.max-tracked-values': { type: 'string' },
  'limits.max-metric-names': { type: 'string' },
  'cache.max-label-sets': { type: 'string' },
  'limits.store': { type: 'string' },
  'limits.store.password-file': { type: 'string' },
  'limits.store.prefix': { type: 'string' },
  'limits.store.timeout': { type: 'string' },
  'limits.store.connect-timeout': { type: 'string' },
  'limits.store.retry-interval': { type: 'string' },
  'limits.store.flush-interval': { type: 'string' },
  'limits.replicas': { type: 'string' },
  'replica-label': { type: 'string' },
  'replica-name': { type: 'string' },
  'stats.window': { type: 'string' },
  'stats.max-tracked-series': { type: 'string' },
  'stats.expose-top': { type: 'string' },
  'stats.sample-interval': { type: 'string' },
  'stage.plugin': { type: 'string', multiple: true },
  'stage.plugin.timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: readonly string[]) {
  return parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: parseOptions });
}

/** An http(s) URL without credentials in it (they would end up in logs). */
function httpUrl(flag: string, value: string, credentialsHint: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${flag}: "${value}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${flag}: "${value}" must be an http or https URL`);
  }
  if (url.username || url.password) {
    throw new UsageError(`${flag}: credentials in the URL are not accepted; ${credentialsHint}`);
  }
  return url;
}

function parseQueueOptions(
  v: ReturnType<typeof parse>['values'],
  env: NodeJS.ProcessEnv,
): QueueOptions | undefined {
  const dir = v['queue.dir'] ?? env.CARDINAL_QUEUE_DIR;
  const given = Object.keys(v).filter((k) => k.startsWith('queue.') && k !== 'queue.dir');
  if (dir === undefined || dir === '') {
    if (given.length > 0) throw new UsageError(`--${given[0]} needs --queue.dir`);
    return undefined;
  }
  const maxBytes = size('--queue.max-bytes', v['queue.max-bytes'] ?? '1GiB');
  const segmentMaxBytes = size(
    '--queue.segment-max-bytes',
    v['queue.segment-max-bytes'] ?? String(Math.max(4096, Math.min(64 << 20, Math.floor(maxBytes / 8)))),
  );
  if (segmentMaxBytes > maxBytes) {
    throw new UsageError('--queue.segment-max-bytes must not exceed --queue.max-bytes');
  }
  const fullPolicy = v['queue.full-policy'] ?? 'reject';
  oneOf('--queue.full-policy', fullPolicy, ['reject', 'drop-oldest']);
  const fullStatus = v['queue.full-status'] ?? '429';
  oneOf('--queue.full-status', fullStatus, ['429', '503']);
  const retryOn = v['queue.retry-on'] ?? '5xx,429';
  try {
    parseRetryOn(retryOn);
  } catch (err) {
    throw new UsageError(`--queue.retry-on: ${(err as Error).message}`);
  }
  return Object.freeze({
    dir,
    maxBytes,
    segmentMaxBytes,
    fullPolicy,
    fullStatus: fullStatus === '429' ? 429 : 503,
    fullRetryAfterSeconds: Math.max(
      1,
      Math.ceil(parseDuration('--queue.full-retry-after', v['queue.full-retry-after'] ?? '5s') / 1000),
    ),
    batchMaxSamples: positiveInt('--queue.batch-max-samples', v['queue.batch-max-samples'] ?? '10000'),
    batchMaxBytes: size('--queue.batch-max-bytes', v['queue.batch-max-bytes'] ?? '4MiB'),
    batchMaxWaitMs: parseDuration('--queue.batch-max-wait', v['queue.batch-max-wait'] ?? '200ms'),
    retryOn,
    maxRetryAgeMs:
      (v['queue.max-retry-age'] ?? '15m').trim() === '0'
        ? 0
        : parseDuration('--queue.max-retry-age', v['queue.max-retry-age'] ?? '15m'),
    maxRetryAttempts:
      (v['queue.max-retry-attempts'] ?? '0').trim() === '0'
        ? 0
        : positiveInt('--queue.max-retry-attempts', v['queue.max-retry-attempts'] ?? '0'),
    deadLetterMaxBytes: size(
      '--queue.dead-letter-max-bytes',
      v['queue.dead-letter-max-bytes'] ?? String(Math.max(1 << 20, Math.floor(maxBytes / 8))),
    ),
  });
}

function parseLimitsStore(
  v: ReturnType<typeof parse>['values'],
  env: NodeJS.ProcessEnv,
  upstream: URL,
): LimitsStoreOptions | undefined {
  const url = v['limits.store'] ?? env.CARDINAL_LIMITS_STORE;
  const given = Object.keys(v).filter((k) => k.startsWith('limits.store.'));
  if (url === undefined || url === '') {
    if (given.length > 0) throw new UsageError(`--${given[0]} needs --limits.store`);
    return undefined;
  }
  try {
    parseStoreUrl(url);
  } catch (err) {
    throw new UsageError(`--limits.store: ${(err as Error).message}`);
  }
  const prefix = v['limits.store.prefix'] ?? `cardinal:${upstream.host}${upstream.pathname}`;
  if (prefix === '' || /[{}]/.test(prefix)) {
    throw new UsageError(
      '--limits.store.prefix: must not be empty nor hold "{" or "}" (they delimit hash tags)',
    );
  }
  const duration = (name: string, dflt: string) => {
    const ms = parseDuration(`--${name}`, v[name as 'limits.store.timeout'] ?? dflt);
    if (ms <= 0) throw new UsageError(`--${name}: must be more than 0`);
    return ms;
  };
  return Object.freeze({
    url,
    passwordFile: v['limits.store.password-file'],
    prefix,
    timeoutMs: duration('limits.store.timeout', '100ms'),
    connectTimeoutMs: duration('limits.store.connect-timeout', '2s'),
    retryIntervalMs: duration('limits.store.retry-interval', '1s'),
    flushIntervalMs: duration('limits.store.flush-interval', '1s'),
  });
}

function replicaLabel(name: string): string {
  if (name !== '' && !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) {
    throw new UsageError(`--replica-label: "${name}" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`);
  }
  if (name.startsWith('__'))
    throw new UsageError(`--replica-label: "${name}": names starting with __ are reserved`);
  return name;
}

function parseQueryOptions(
  v: ReturnType<typeof parse>['values'],
  env: NodeJS.ProcessEnv,
): QueryOptions | undefined {
  const upstream = v['query.upstream'] ?? env.CARDINAL_QUERY_UPSTREAM;
  const logFile = v['query.log-file'] ?? env.CARDINAL_QUERY_LOG_FILE;
  const given = Object.keys(v).filter(
    (k) => k.startsWith('query.') && k !== 'query.upstream' && k !== 'query.log-file',
  );
  if ((upstream === undefined || upstream === '') && (logFile === undefined || logFile === '')) {
    if (given.length > 0) throw new UsageError(`--${given[0]} needs --query.upstream or --query.log-file`);
    return undefined;
  }
  const queueDir = v['queue.dir'] ?? env.CARDINAL_QUEUE_DIR;
  const stateFile =
    v['query.usage.state-file'] ??
    (queueDir === undefined || queueDir === ''
      ? undefined
      : `${queueDir.replace(/\/+$/, '')}/usage-state.json`);
  const readersPerMetric = positiveInt(
    '--query.usage.readers-per-metric',
    v['query.usage.readers-per-metric'] ?? '5',
  );
  if (readersPerMetric > 64) throw new UsageError('--query.usage.readers-per-metric must be at most 64');
  return Object.freeze({
    upstream:
      upstream === undefined || upstream === ''
        ? undefined
        : httpUrl('--query.upstream', upstream, 'give it without user and password').toString(),
    timeoutMs: parseDuration('--query.timeout', v['query.timeout'] ?? '2m'),
    connections: positiveInt('--query.connections', v['query.connections'] ?? '16'),
    logFile: logFile === '' ? undefined : logFile,
    logPollMs: 1000,
    stateFile: stateFile === '' ? undefined : stateFile,
    saveIntervalMs: parseDuration('--query.usage.save-interval', v['query.usage.save-interval'] ?? '1m'),
    maxMetrics: positiveInt('--query.usage.max-metrics', v['query.usage.max-metrics'] ?? '100000'),
    maxReaders: positiveInt('--query.usage.max-readers', v['query.usage.max-readers'] ?? '1000'),
    readersPerMetric,
    namesRefreshMs: parseDuration('--query.names-refresh', v['query.names-refresh'] ?? '5m'),
  });
}

/** Narrows `value` to one of `allowed`, or throws naming them and the closest one. */
function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): asserts value is T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(
      `${flag}: "${value}" must be ${allowed.map((a) => `"${a}"`).join(' or ')}${didYouMean(value, allowed)}`,
    );
  }
}

/** The names of every flag, for suggestions. */
const FLAG_NAMES = (): string[] => Object.keys(parseOptions);

/**
 * A flag mistake as a person should read it: the flag, and the closest known flag. node:util's
 * parseArgs reports an unknown option with advice about positionals that does not apply here.
 */
export function flagMistake(err: unknown, names: readonly string[] = FLAG_NAMES()): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const unknown = /^Unknown option '(-{1,2})([^'=]+)/.exec(message);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown !== null) {
    const given = unknown[2]!;
    const s = didYouMean(given, names, false);
    return `unknown flag ${unknown[1]}${given}${s === '' ? '' : s.replace('mean ', 'mean --')}`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']*)'/.exec(message)?.[1];
    return `unexpected argument ${JSON.stringify(arg ?? '')}: every setting is a --flag`;
  }
  return message;
}

/** A size in bytes: plain, or with a unit (32MiB, 4GB); see units.ts. */
function size(flag: string, value: string): number {
  try {
    return parseSize(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

function parseIngestChecks(v: ReturnType<typeof parse>['values']): IngestChecks | undefined {
  const onInvalid = v['ingest.invalid'] ?? 'reject';
  if (onInvalid !== 'reject' && onInvalid !== 'drop' && onInvalid !== 'off') {
    throw new UsageError(`--ingest.invalid: "${onInvalid}" must be "reject", "drop" or "off"`);
  }
  const names = v['ingest.label-names'] ?? 'utf8';
  if (names !== 'utf8' && names !== 'legacy') {
    throw new UsageError(`--ingest.label-names: "${names}" must be "utf8" or "legacy"`);
  }
  const window = (flag: 'ingest.max-future' | 'ingest.max-age', def: string): number => {
    const raw = v[flag] ?? def;
    return raw.trim() === '0' ? 0 : parseDuration(`--${flag}`, raw);
  };
  const checks = {
    onInvalid,
    names,
    maxFutureMs: window('ingest.max-future', '10m'),
    maxAgeMs: window('ingest.max-age', '0'),
  } as const;
  return onInvalid === 'off' ? undefined : Object.freeze({ ...checks, onInvalid });
}

function fraction(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new UsageError(`${flag}: "${value}" must be a number from 0 to 1`);
  }
  return n;
}

/** Accepts HOST:PORT, [IPv6]:PORT and :PORT (all interfaces). */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  if (!m) throw new UsageError(`--listen: "${value}" must be HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen: port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function positiveDuration(flag: string, value: string): number {
  const ms = parseDuration(flag, value);
  if (ms <= 0) throw new UsageError(`${flag}: "${value}" must be longer than zero`);
  return ms;
}

/** At most this many workers; more is a typo, not a machine. */
export const MAX_WORKERS = 256;

function optionalWorkers(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = positiveInt('--workers', value);
  if (n > MAX_WORKERS) throw new UsageError(`--workers: ${n} is more than ${MAX_WORKERS}`);
  return n;
}

function positiveInt(flag: string, value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) <= 0) {
    throw new UsageError(`${flag}: "${value}" must be a positive integer`);
  }
  return Number(value);
}
