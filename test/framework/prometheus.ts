// Prometheus as a test program: a server that receives remote write and answers queries, and an
// agent that scrapes targets and remote-writes what it scraped.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { binaryPath } from './binaries.js';
import { type Labels, parseValue } from './exposition.js';
import {
  type Closable,
  type CloseOptions,
  freePort,
  type Program,
  type StopOptions,
  startProgram,
} from './process.js';

export type PrometheusVersion = 2 | 3;
export type RemoteWriteMessage = 'prometheus.WriteRequest' | 'io.prometheus.write.v2.Request';

/** The fields every Prometheus handle has. */
export interface PrometheusProgram extends Closable {
  readonly version: PrometheusVersion;
  readonly program: Program;
  /** `http://127.0.0.1:port` */
  readonly url: string;
  readonly port: number;
  /** Stops and starts again on the same port with the same data directory and arguments. */
  restart(options?: StopOptions): Promise<void>;
  stop(options?: StopOptions): Promise<void>;
  start(): Promise<void>;
}

function programKind(version: PrometheusVersion): 'prometheus2' | 'prometheus3' {
  return version === 2 ? 'prometheus2' : 'prometheus3';
}

interface LaunchOptions {
  name: string;
  version: PrometheusVersion;
  /** The configuration file's content; a function may write files it refers to under `dir`. */
  config: unknown | ((dir: string) => unknown);
  args: (dir: string) => string[];
  port: number | undefined;
  dir: string | undefined;
}

async function launch(options: LaunchOptions): Promise<{ program: Program; port: number; url: string }> {
  const command = binaryPath(programKind(options.version));
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const program = await startProgram({
    name: options.name,
    command,
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    args: (dir) => {
      const configFile = join(dir, 'prometheus.yml');
      const config = typeof options.config === 'function' ? options.config(dir) : options.config;
      writeFileSync(configFile, stringify(config));
      return [`--config.file=${configFile}`, `--web.listen-address=127.0.0.1:${port}`, ...options.args(dir)];
    },
    readyUrl: `${url}/-/ready`,
    readyStatus: 200,
  });
  return { program, port, url };
}

function lifecycle(
  program: Program,
): Pick<PrometheusProgram, 'restart' | 'stop' | 'start' | 'close' | 'dirs'> {
  return {
    dirs: program.dirs,
    restart: (options?: StopOptions) => program.restart(options),
    stop: (options?: StopOptions) => program.stop(options),
    start: () => program.start(),
    close: (options?: CloseOptions) => program.close(options),
  };
}

// ---------------------------------------------------------------------------------------------
// The receiver

export interface ReceiverOptions {
  version: PrometheusVersion;
  extraArgs?: string[];
  /** Use this directory (and its data) instead of a fresh one; it is not removed on close. */
  dataDir?: string;
  port?: number;
  /**
   * Remote-write messages the receiver accepts (Prometheus 3 only); both by default. Any other is
   * answered with 415. Prometheus 3.5.0 still stores the data of a request it refused this way
   * (its handler does not return after the error) and counts the request under status 204, so only
   * the sender's failed-sample counter shows the refusal.
   */
  acceptedProtobufMessages?: RemoteWriteMessage[];
  /** Rule files by name, written to the data directory and loaded (`rule_files`). */
  ruleFiles?: Record<string, string>;
  /** scrape_configs entries, as they are; none by default. */
  scrapeConfigs?: unknown[];
  /** global.scrape_interval and evaluation_interval; default 1m (nothing is scraped by default). */
  interval?: string;
  /** storage.tsdb.out_of_order_time_window: accept samples older than the newest by up to this. */
  outOfOrderWindow?: string;
}

/** A native histogram as the query API returns it, with numbers parsed. */
export interface NativeHistogram {
  count: number;
  sum: number;
  /** [boundary rule, lower, upper, count]; the rule is 0..3 (open/closed ends), as in the API. */
  buckets: Array<[number, number, number, number]>;
}

export interface RawSeries {
  labels: Labels;
  /** Float samples as [timestamp in ms, value], oldest first. */
  samples: Array<[number, number]>;
  /** Native histogram samples as [timestamp in ms, histogram], oldest first. */
  histograms: Array<[number, NativeHistogram]>;
}

export interface InstantSample {
  labels: Labels;
  timestampMs: number;
  value: number;
}

export interface PrometheusReceiver extends PrometheusProgram {
  /** `http://127.0.0.1:port/api/v1/write` */
  readonly remoteWriteUrl: string;
  /** Evaluates an instant query; `timeMs` defaults to now. Only vector results. */
  query(promql: string, timeMs?: number): Promise<InstantSample[]>;
  /** Evaluates a range query; the series' samples are [timestamp ms, value]. */
  queryRange(
    promql: string,
    range: { startMs: number; endMs: number; stepSeconds: number },
  ): Promise<RawSeries[]>;
  /** The label sets of the series matching any of the selectors. */
  series(match: string[], range?: { startMs: number; endMs: number }): Promise<Labels[]>;
  /**
   * Every stored sample of the series selected by `selector` in (atTimeMs - lookbackSeconds, atTimeMs]
   * (Prometheus 2 includes the left end), exactly as stored: this runs `selector[Ns]` as an
   * instant query, whose result is the raw samples rather than evaluated points.
   */
  rawSamples(selector: string, lookbackSeconds: number, atTimeMs?: number): Promise<RawSeries[]>;
  /** Any API path with its parameters (sent as a POST form); returns the `data` field of the answer. */
  api(path: string, params: Record<string, string | string[]>): Promise<unknown>;
}

type ApiSeries = {
  metric: Labels;
  value?: [number, string];
  values?: Array<[number, string]>;
  histograms?: Array<
    [number, { count: string; sum: string; buckets?: Array<[number, string, string, string]> }]
  >;
};

function toMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

function toSeconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function rawSeries(s: ApiSeries): RawSeries {
  return {
    labels: s.metric,
    samples: (s.values ?? []).map(([t, v]) => [toMs(t), parseValue(v)]),
    histograms: (s.histograms ?? []).map(([t, h]) => [
      toMs(t),
      {
        count: parseValue(h.count),
        sum: parseValue(h.sum),
        buckets: (h.buckets ?? []).map(([rule, lo, hi, n]) => [
          rule,
          parseValue(lo),
          parseValue(hi),
          parseValue(n),
        ]),
      },
    ]),
  };
}

async function callApi(
  base: string,
  path: string,
  params: Record<string, string | string[]>,
): Promise<unknown> {
  const body = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) body.append(key, v);
  }
  // POST with a form body keeps long selectors out of the URL; every read endpoint used here accepts it.
  const res = await fetch(`${base}${path}`, { method: 'POST', body });
  const text = await res.text();
  let parsed: { status?: string; data?: unknown; error?: string };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new Error(`POST ${path} ${body}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  }
  if (!res.ok || parsed.status !== 'success') {
    throw new Error(`POST ${path} ${body}: HTTP ${res.status}: ${parsed.error ?? text.slice(0, 500)}`);
  }
  return parsed.data;
}

/**
 * Starts a Prometheus server that accepts remote write on /api/v1/write, with no scrape jobs, on
 * 127.0.0.1 at a free port (or `port`), and waits until it is ready. Native histograms and
 * exemplar storage are on, so a receiver stores everything a sender can send.
 */
export async function startPrometheusReceiver(options: ReceiverOptions): Promise<PrometheusReceiver> {
  const { version } = options;
  const { program, port, url } = await launch({
    name: `prometheus${version}-receiver`,
    version,
    config: (dir: string) => {
      const interval = options.interval ?? '1m';
      const ruleFiles = Object.entries(options.ruleFiles ?? {}).map(([name, text]) => {
        writeFileSync(join(dir, name), text);
        return join(dir, name);
      });
      return {
        global: { evaluation_interval: interval, scrape_interval: interval, scrape_timeout: interval },
        ...(ruleFiles.length === 0 ? {} : { rule_files: ruleFiles }),
        ...(options.scrapeConfigs === undefined ? {} : { scrape_configs: options.scrapeConfigs }),
        ...(options.outOfOrderWindow === undefined
          ? {}
          : { storage: { tsdb: { out_of_order_time_window: options.outOfOrderWindow } } }),
      };
    },
    port: options.port,
    dir: options.dataDir,
    args: (dir) => {
      const args = [
        `--storage.tsdb.path=${join(dir, 'data')}`,
        '--web.enable-remote-write-receiver',
        // Both versions refuse native histograms in the TSDB without this flag (3.5 still does).
        '--enable-feature=native-histograms,exemplar-storage',
      ];
      if (version === 3) {
        const accepted = options.acceptedProtobufMessages ?? [
          'prometheus.WriteRequest',
          'io.prometheus.write.v2.Request',
        ];
        for (const m of accepted) args.push(`--web.remote-write-receiver.accepted-protobuf-messages=${m}`);
      } else if (options.acceptedProtobufMessages !== undefined) {
        throw new Error(
          'Prometheus 2 accepts only prometheus.WriteRequest; acceptedProtobufMessages needs version 3',
        );
      }
      return [...args, ...(options.extraArgs ?? [])];
    },
  });

  const api = (path: string, params: Record<string, string | string[]>) => callApi(url, path, params);
  const rangeOf = (data: unknown): RawSeries[] => {
    const { resultType, result } = data as { resultType: string; result: ApiSeries[] };
    if (resultType !== 'matrix') throw new Error(`expected a matrix, got ${resultType}`);
    return result.map(rawSeries);
  };

  return {
    version,
    program,
    port,
    url,
    remoteWriteUrl: `${url}/api/v1/write`,
    ...lifecycle(program),
    api,
    async query(promql, timeMs = Date.now()) {
      const data = (await api('/api/v1/query', { query: promql, time: toSeconds(timeMs) })) as {
        resultType: string;
        result: ApiSeries[];
      };
      if (data.resultType !== 'vector')
        throw new Error(`query ${promql}: expected a vector, got ${data.resultType}`);
      return data.result.map((s) => ({
        labels: s.metric,
        timestampMs: toMs(s.value?.[0] ?? 0),
        value: parseValue(s.value?.[1] ?? 'NaN'),
      }));
    },
    async queryRange(promql, range) {
      return rangeOf(
        await api('/api/v1/query_range', {
          query: promql,
          start: toSeconds(range.startMs),
          end: toSeconds(range.endMs),
          step: String(range.stepSeconds),
        }),
      );
    },
    async series(match, range) {
      const params: Record<string, string | string[]> = { 'match[]': match };
      if (range !== undefined) {
        params.start = toSeconds(range.startMs);
        params.end = toSeconds(range.endMs);
      }
      return (await api('/api/v1/series', params)) as Labels[];
    },
    async rawSamples(selector, lookbackSeconds, atTimeMs = Date.now()) {
      const data = await api('/api/v1/query', {
        query: `${selector}[${Math.ceil(lookbackSeconds)}s]`,
        time: toSeconds(atTimeMs),
      });
      return rangeOf(data);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A server with a configuration of the test's own

export interface ServerOptions {
  version: PrometheusVersion;
  /**
   * prometheus.yml, as an object; given the program's directory, so that rule files and the
   * query log can live in it.
   */
  config: (dir: string) => unknown;
  /** Files written into the program's directory before it starts (rule files). */
  files?: Record<string, string>;
  extraArgs?: string[];
}

/**
 * Starts a Prometheus server (not an agent) with the given configuration and its TSDB in its
 * directory, and waits until it is ready.
 */
export interface PrometheusServer extends PrometheusProgram {
  /** Any API path with its parameters (sent as a POST form); returns the `data` field of the answer. */
  api(path: string, params: Record<string, string | string[]>): Promise<unknown>;
}

export async function startPrometheusServer(options: ServerOptions): Promise<PrometheusServer> {
  const { program, port, url } = await launch({
    name: `prometheus${options.version}-server`,
    version: options.version,
    config: {},
    port: undefined,
    dir: undefined,
    args: (dir) => {
      for (const [name, text] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), text);
      // The configuration the launcher wrote is replaced by the test's own, which may name `dir`.
      writeFileSync(join(dir, 'prometheus.yml'), stringify(options.config(dir)));
      return [`--storage.tsdb.path=${join(dir, 'data')}`, ...(options.extraArgs ?? [])];
    },
  });
  return {
    version: options.version,
    program,
    port,
    url,
    ...lifecycle(program),
    api: (path, params) => callApi(url, path, params),
  };
}

// ---------------------------------------------------------------------------------------------
// The agent

export interface RemoteWriteOptions {
  protobufMessage?: RemoteWriteMessage;
  sendExemplars?: boolean;
  sendNativeHistograms?: boolean;
  /** Durations as Prometheus spells them (`1s`, `50ms`). */
  batchSendDeadline?: string;
  minBackoff?: string;
  maxBackoff?: string;
  maxSamplesPerSend?: number;
  maxShards?: number;
  capacity?: number;
  remoteTimeout?: string;
  headers?: Record<string, string>;
  /** Fields merged into the remote_write entry as they are, for anything not covered above. */
  extra?: Record<string, unknown>;
}

export interface AgentOptions {
  version: PrometheusVersion;
  remoteWriteUrl: string;
  /** `host:port` of each target, scraped at /metrics by the job `cardinal-target`. */
  scrapeTargets: string[];
  /** `1s` by default. */
  scrapeInterval?: string;
  remoteWrite?: RemoteWriteOptions;
  /** More scrape_configs entries, as they are. */
  extraScrapeConfig?: Record<string, unknown>[];
  extraArgs?: string[];
  port?: number;
}

export interface PrometheusAgent extends PrometheusProgram {
  /** The agent's own metrics page, for `metricSum`. */
  readonly metricsUrl: string;
}

function remoteWriteEntry(
  url: string,
  version: PrometheusVersion,
  rw: RemoteWriteOptions,
): Record<string, unknown> {
  if (rw.protobufMessage !== undefined && rw.protobufMessage !== 'prometheus.WriteRequest' && version === 2) {
    throw new Error('Prometheus 2 sends only prometheus.WriteRequest; protobufMessage needs version 3');
  }
  const queue: Record<string, unknown> = {
    // Short deadlines and backoffs so a test sees its samples, and a restarted receiver, within seconds.
    batch_send_deadline: rw.batchSendDeadline ?? '1s',
    min_backoff: rw.minBackoff ?? '50ms',
    max_backoff: rw.maxBackoff ?? '1s',
  };
  if (rw.maxSamplesPerSend !== undefined) queue.max_samples_per_send = rw.maxSamplesPerSend;
  if (rw.maxShards !== undefined) queue.max_shards = rw.maxShards;
  if (rw.capacity !== undefined) queue.capacity = rw.capacity;
  const entry: Record<string, unknown> = { url, queue_config: queue };
  if (rw.protobufMessage !== undefined) entry.protobuf_message = rw.protobufMessage;
  if (rw.sendExemplars !== undefined) entry.send_exemplars = rw.sendExemplars;
  if (rw.sendNativeHistograms !== undefined) entry.send_native_histograms = rw.sendNativeHistograms;
  if (rw.remoteTimeout !== undefined) entry.remote_timeout = rw.remoteTimeout;
  if (rw.headers !== undefined) entry.headers = rw.headers;
  return { ...entry, ...rw.extra };
}

/**
 * Starts Prometheus in agent mode scraping `scrapeTargets` and remote-writing to `remoteWriteUrl`,
 * and waits until it is ready. The target's own timestamps are honoured.
 */
export async function startPrometheusAgent(options: AgentOptions): Promise<PrometheusAgent> {
  const { version } = options;
  const interval = options.scrapeInterval ?? '1s';
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval },
    scrape_configs: [
      {
        job_name: 'cardinal-target',
        honor_timestamps: true,
        static_configs: [{ targets: options.scrapeTargets }],
      },
      ...(options.extraScrapeConfig ?? []),
    ],
    remote_write: [remoteWriteEntry(options.remoteWriteUrl, version, options.remoteWrite ?? {})],
  };
  const { program, port, url } = await launch({
    name: `prometheus${version}-agent`,
    version,
    config,
    port: options.port,
    dir: undefined,
    args: (dir) => [
      // Target discovery publishes on a fixed 5 s tick, so the first scrape comes about 5 s after
      // the agent is ready; neither version has a flag to shorten it.
      version === 2 ? '--enable-feature=agent' : '--agent',
      `--storage.agent.path=${join(dir, 'agent-data')}`,
      ...(options.extraArgs ?? []),
    ],
  });
  return { version, program, port, url, metricsUrl: `${url}/metrics`, ...lifecycle(program) };
}
