// Polls the proxies of an instance: what configuration each runs (GET /api/v1/status/config, see
// proxy/server.ts) and what it drops (GET /api/v1/stats/top-offenders, proxy/stats/top-offenders.ts).
// The answers come over the network from pods, so they are bounded in time and size and checked
// before they are used; a proxy that fails in any way is reported, never thrown.

import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher, fetch as undiciFetch } from 'undici';
import type { TopOffendersReport } from '../../policy/reports.js';
import type { ProxyReport } from '../status/conditions.js';
import { mergeLimits, type PolicyLimits, parseLimitsReport } from '../status/limits.js';
import {
  aggregateOffenders,
  type EndpointPoll,
  type PolicyOffenders,
  parseTopOffendersReport,
} from '../status/offenders.js';
import type { ProxyUsageReport } from '../usage/reads.js';
import type { ProxyUnusedReport } from '../usage/status.js';
import type { ProxyEndpoint } from './endpoints.js';

export const CONFIG_STATUS_PATH = '/api/v1/status/config';
/**
 * The config status without the per-policy details, which grow by about 240 bytes a policy: the
 * operator needs the hash and the last error only. A proxy that predates the parameter ignores it.
 */
const CONFIG_STATUS_QUERY = `${CONFIG_STATUS_PATH}?policyDetails=false`;
export const TOP_OFFENDERS_PATH = '/api/v1/stats/top-offenders';
export const UNUSED_PATH = '/api/v1/stats/unused';
export const LIMITS_PATH = '/api/v1/stats/limits';
/** Every tracked metric, no readers: what the reads of the MetricUsage document are made of. */
export const USAGE_PATH = '/api/v1/stats/usage?limit=100000&readers=0&sort=lastRead';
/** The usage report lists every metric a proxy tracks; it may be far larger than the others. */
const USAGE_MAX_BYTES = 64 * 1024 * 1024;

/** The proxy accepts `?limit=` from 1 to 1000 (proxy/server.ts). */
const MAX_TOP_LIMIT = 1000;
const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const DEFAULT_CONCURRENCY = 8;

export interface PollOptions {
  /** Both requests of one proxy, bodies included, finish within this or the proxy is unreachable. */
  readonly timeoutMs: number;
  /** The `?limit=` of the top-offenders request, 1 to 1000. */
  readonly topLimit: number;
  /**
   * The largest body read from one response; a larger one is abandoned unread. Default 4 MiB,
   * enough for 1000 entries in each of the report's lists with long metric names.
   */
  readonly maxResponseBytes?: number;
  /** The clock the polls are stamped with, in milliseconds since the epoch; default Date.now. */
  readonly now?: () => number;
  /**
   * Poll over HTTPS, trusting only the CA in `caFile` (re-read every round, so a rotated CA is
   * taken up) and checking the proxies' certificate against `serverName` (their Service's DNS
   * name: pods are reached by IP, which a certificate rarely names).
   */
  readonly tls?: { readonly caFile: string; readonly serverName?: string | undefined } | undefined;
  /**
   * What to ask each proxy: `all` (the default) the config status and every report; `look` the
   * config status and the limits only, which is what a look after a render uses (ProxyPoller).
   */
  readonly reports?: 'all' | 'look';
  /**
   * Send `Authorization: Bearer` with the token in this file (re-read every poll, so a rotated
   * Secret is taken up): the proxies' status and statistics need a credential with the admin role
   * when they require credentials.
   */
  readonly bearerTokenFile?: string | undefined;
}

export interface PollAllOptions extends PollOptions {
  /** How many proxies are polled at once; default 8. */
  readonly concurrency?: number;
}

/** What one poll of one proxy found. */
export interface ProxyPoll {
  /** `host:port`, the URL's host: the name ProxyReport and EndpointPoll know the proxy by. */
  readonly endpoint: string;
  /** Whether the proxy answered GET /api/v1/status/config with 200 and a valid status. */
  readonly reachable: boolean;
  /** The hash of the configuration in force; present when reachable. */
  readonly configHash?: string;
  /** The message of the proxy's last failed reload, which left `configHash` in force. */
  readonly lastError?: string;
  /** The sha256 of each file the proxy runs, by path; absent from a proxy that predates them. */
  readonly fileHashes?: Readonly<Record<string, string>>;
  /** The proxy's top offenders; present when reachable and that request succeeded too. */
  readonly report?: TopOffendersReport;
  /** The proxy's unused report by policy id (spec.unused); absent when that request failed. */
  readonly unused?: ReadonlyMap<string, ProxyUnusedReport>;
  /** How full each policy's limits are, by policy id; absent when that request failed. */
  readonly limits?: ReadonlyMap<string, PolicyLimits>;
  /** The proxy's usage report (read path); absent when the proxy records no reads. */
  readonly usage?: ProxyUsageReport;
  /** The `?limit=` the report was asked for. */
  readonly limit: number;
  /** Why the proxy is unreachable, or why `report` is missing; absent when both requests succeeded. */
  readonly reason?: string;
  /** When the poll started, in milliseconds since the epoch. */
  readonly at: number;
}

/**
 * Polls one proxy at `baseUrl` (`http://host:port`). Resolves whatever the proxy does: refused
 * connections, timeouts, error statuses, oversized or malformed bodies all give `reachable: false`
 * (or a missing `report`) with a `reason`. Rejects only on invalid options, a programming error.
 */
export async function pollProxy(baseUrl: string, options: PollOptions): Promise<ProxyPoll> {
  checkOptions(options);
  const base = new URL(baseUrl);
  return withDispatcher(options, (dispatcher) => pollOne(base, base.host, options, dispatcher));
}

/** Runs `poll` with an HTTPS agent for `options.tls`, closed afterwards; none without it. */
async function withDispatcher<T>(
  options: PollOptions,
  poll: (d: Dispatcher | undefined) => Promise<T>,
): Promise<T> {
  if (options.tls === undefined) return poll(undefined);
  const agent = new Agent({
    connect: {
      ca: readFileSync(options.tls.caFile),
      ...(options.tls.serverName === undefined ? {} : { servername: options.tls.serverName }),
    },
  });
  try {
    return await poll(agent);
  } finally {
    await agent.close();
  }
}

async function pollOne(
  base: URL,
  endpoint: string,
  options: PollOptions,
  dispatcher: Dispatcher | undefined,
): Promise<ProxyPoll> {
  if (options.tls !== undefined) base.protocol = 'https:';
  const limit = options.topLimit;
  const at = (options.now ?? Date.now)();
  const maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  // One deadline for both requests: the caller's timeout is per proxy, not per request.
  const signal = AbortSignal.timeout(options.timeoutMs);
  let authorization: string | undefined;
  if (options.bearerTokenFile !== undefined) {
    try {
      authorization = `Bearer ${readFileSync(options.bearerTokenFile, 'utf8').trim()}`;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { endpoint, reachable: false, limit, at, reason: `reading --proxy-bearer-token-file: ${code}` };
    }
  }
  const get = (path: string) =>
    getJson(new URL(path, base), {
      signal,
      maxBytes,
      timeoutMs: options.timeoutMs,
      dispatcher,
      authorization,
    });
  const look = options.reports === 'look';
  // A look leaves out what it would throw away; `skipped` is never read (see #look).
  const skipped = Promise.reject(new PollError('not asked'));
  skipped.catch(() => {});
  const [status, top, unused, limits, usage] = await Promise.allSettled([
    get(CONFIG_STATUS_QUERY).then(parseConfigStatus),
    look ? skipped : get(`${TOP_OFFENDERS_PATH}?limit=${limit}`).then(parseTopOffendersReport),
    look ? skipped : get(`${UNUSED_PATH}?limit=${limit}`).then(parseUnusedReport),
    get(LIMITS_PATH).then(parseLimitsReport),
    look
      ? skipped
      : getJson(new URL(USAGE_PATH, base), {
          signal,
          maxBytes: Math.max(maxBytes, USAGE_MAX_BYTES),
          timeoutMs: options.timeoutMs,
          dispatcher,
          authorization,
        }).then(parseUsageReport),
  ]);
  if (status.status === 'rejected') {
    return {
      endpoint,
      reachable: false,
      limit,
      reason: `${CONFIG_STATUS_PATH}: ${errorText(status.reason)}`,
      at,
    };
  }
  const { hash, lastError, fileHashes } = status.value;
  return {
    endpoint,
    reachable: true,
    configHash: hash,
    ...(lastError === undefined ? {} : { lastError }),
    ...(fileHashes === undefined ? {} : { fileHashes }),
    ...(top.status === 'fulfilled'
      ? { report: top.value }
      : look
        ? {}
        : { reason: `${TOP_OFFENDERS_PATH}: ${errorText(top.reason)}` }),
    // A proxy without the route (an older version) has no unused report: nothing to add.
    ...(unused.status === 'fulfilled' ? { unused: unused.value } : {}),
    ...(limits.status === 'fulfilled' ? { limits: limits.value } : {}),
    // A proxy without a read path or query log answers 404: it records no reads.
    ...(usage.status === 'fulfilled' ? { usage: usage.value } : {}),
    limit,
    at,
  };
}

/**
 * Checks GET /api/v1/stats/unused (proxy/stats/unused.ts UnusedReport) and keeps each policy's
 * counts and rows. Throws a TypeError naming the first field that is wrong.
 */
export function parseUnusedReport(json: unknown): Map<string, ProxyUnusedReport> {
  const policies = (json as { policies?: unknown } | null)?.policies;
  if (!Array.isArray(policies)) throw new TypeError('policies: must be a list');
  const out = new Map<string, ProxyUnusedReport>();
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new TypeError(`${what}: must be a non-negative number`);
    return v;
  };
  policies.forEach((raw, i) => {
    const p = (raw ?? {}) as Record<string, unknown>;
    if (typeof p.policy !== 'string') throw new TypeError(`policies[${i}].policy: must be a string`);
    if (!Array.isArray(p.metrics)) throw new TypeError(`policies[${i}].metrics: must be a list`);
    out.set(p.policy, {
      usageKnown: p.usageKnown === true,
      unusedMetrics: num(p.unusedMetrics, `policies[${i}].unusedMetrics`),
      activeSeries: num(p.activeSeries, `policies[${i}].activeSeries`),
      samplesPerSecond: num(p.samplesPerSecond, `policies[${i}].samplesPerSecond`),
      metrics: p.metrics.map((m: unknown, j: number) => {
        const row = (m ?? {}) as Record<string, unknown>;
        if (typeof row.metric !== 'string')
          throw new TypeError(`policies[${i}].metrics[${j}].metric: must be a string`);
        return {
          metric: row.metric,
          activeSeries: num(row.activeSeries, `policies[${i}].metrics[${j}].activeSeries`),
          samplesPerSecond: num(row.samplesPerSecond, `policies[${i}].metrics[${j}].samplesPerSecond`),
        };
      }),
      // Absent from a proxy that judges no labels.
      labels: (Array.isArray(p.labels) ? p.labels : []).map((l: unknown, j: number) => {
        const row = (l ?? {}) as Record<string, unknown>;
        if (typeof row.metric !== 'string' || typeof row.label !== 'string')
          throw new TypeError(`policies[${i}].labels[${j}]: metric and label must be strings`);
        return {
          metric: row.metric,
          label: row.label,
          distinctValues: num(row.distinctValues, `policies[${i}].labels[${j}].distinctValues`),
        };
      }),
    });
  });
  return out;
}

/**
 * Checks GET /api/v1/stats/usage (proxy/query/usage.ts UsageReportJson) and keeps what the
 * operator uses. Throws a TypeError naming the first field that is wrong.
 */
export function parseUsageReport(json: unknown): ProxyUsageReport {
  const o = (json ?? {}) as Record<string, unknown>;
  const sinceMs = typeof o.since === 'string' ? Date.parse(o.since) : Number.NaN;
  if (Number.isNaN(sinceMs)) throw new TypeError('since: must be an RFC 3339 time');
  if (!Array.isArray(o.metrics)) throw new TypeError('metrics: must be a list');
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new TypeError(`${what}: must be a non-negative number`);
    return v;
  };
  return {
    sinceMs,
    missingKnown: o.missingKnown === true,
    metrics: o.metrics.map((raw: unknown, i: number) => {
      const m = (raw ?? {}) as Record<string, unknown>;
      if (typeof m.metric !== 'string') throw new TypeError(`metrics[${i}].metric: must be a string`);
      const reads = (m.reads ?? {}) as Record<string, unknown>;
      const last =
        m.lastRead === null ? 0 : typeof m.lastRead === 'string' ? Date.parse(m.lastRead) : Number.NaN;
      if (Number.isNaN(last)) throw new TypeError(`metrics[${i}].lastRead: must be an RFC 3339 time or null`);
      const ingest = (m.ingest ?? null) as Record<string, unknown> | null;
      return {
        metric: m.metric,
        reads30d: num(reads['30d'], `metrics[${i}].reads.30d`),
        lastReadMs: last,
        known: m.known === true,
        series: ingest === null ? 0 : num(ingest.activeSeries, `metrics[${i}].ingest.activeSeries`),
        samplesPerSecond:
          ingest === null ? 0 : num(ingest.samplesPerSecond, `metrics[${i}].ingest.samplesPerSecond`),
      };
    }),
  };
}

/**
 * Polls every endpoint at its `url`, at most `concurrency` at once, and names each result by its
 * `endpoint`. The results are in the order of `endpoints`.
 */
export async function pollAll(
  endpoints: readonly ProxyEndpoint[],
  options: PollAllOptions,
): Promise<ProxyPoll[]> {
  checkOptions(options);
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const out: ProxyPoll[] = new Array(endpoints.length);
  let next = 0;
  await withDispatcher(options, async (dispatcher) => {
    const worker = async (): Promise<void> => {
      for (let i = next++; i < endpoints.length; i = next++) {
        const e = endpoints[i]!;
        out[i] = await pollOne(new URL(e.url), e.endpoint, options, dispatcher);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, endpoints.length) }, worker));
  });
  return out;
}

/** computeStatus's view of a poll. */
export function toProxyReport(poll: ProxyPoll): ProxyReport {
  return {
    endpoint: poll.endpoint,
    reachable: poll.reachable,
    ...(!poll.reachable && poll.reason !== undefined ? { reason: poll.reason } : {}),
    ...(poll.configHash === undefined ? {} : { configHash: poll.configHash }),
    ...(poll.lastError === undefined ? {} : { lastError: poll.lastError }),
    ...(poll.fileHashes === undefined ? {} : { fileHashes: poll.fileHashes }),
  };
}

/** aggregateOffenders's view of a poll; undefined when the poll brought no report. */
export function toEndpointPoll(poll: ProxyPoll): EndpointPoll | undefined {
  if (!poll.reachable || poll.report === undefined) return undefined;
  return {
    endpoint: poll.endpoint,
    at: poll.at,
    limit: poll.limit,
    ...(poll.configHash === undefined ? {} : { configHash: poll.configHash }),
    report: poll.report,
  };
}

/** The parts of GET /api/v1/status/config the operator uses. */
export interface ConfigStatus {
  readonly hash: string;
  readonly lastError?: string;
  readonly fileHashes?: Readonly<Record<string, string>>;
}

/**
 * Checks a config status answer (`{hash, loadedAt, files, policies, lastError: {message, at} | null}`)
 * and keeps what the operator uses. Throws a TypeError naming the first field that is wrong.
 */
export function parseConfigStatus(json: unknown): ConfigStatus {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new TypeError('status: must be an object');
  }
  const { hash, lastError, fileHashes } = json as Record<string, unknown>;
  if (typeof hash !== 'string' || hash === '') throw new TypeError('hash: must be a non-empty string');
  let files: Record<string, string> | undefined;
  if (fileHashes !== undefined) {
    if (fileHashes === null || typeof fileHashes !== 'object' || Array.isArray(fileHashes))
      throw new TypeError('fileHashes: must be an object');
    files = {};
    for (const [file, h] of Object.entries(fileHashes)) {
      if (typeof h !== 'string') throw new TypeError(`fileHashes[${JSON.stringify(file)}]: must be a string`);
      files[file] = h;
    }
  }
  const withFiles = files === undefined ? { hash } : { hash, fileHashes: files };
  if (lastError === null || lastError === undefined) return withFiles;
  const message = typeof lastError === 'object' ? (lastError as Record<string, unknown>).message : undefined;
  if (typeof message !== 'string') throw new TypeError('lastError.message: must be a string');
  return { ...withFiles, lastError: message };
}

/** One round of ProxyPoller.poll. */
export interface PollRound {
  /** One per endpoint polled, in the order given. */
  readonly polls: readonly ProxyPoll[];
  /** computeStatus's `proxies`: every endpoint, reachable or not. */
  readonly proxies: readonly ProxyReport[];
  /** The polls of this round that brought a report. */
  readonly current: readonly EndpointPoll[];
  /** The poll before each of `current`, where there is one: what rates are computed against. */
  readonly previous: readonly EndpointPoll[];
  /** aggregateOffenders over `current` and `previous`, by policy id; a policy not in it dropped nothing. */
  readonly offenders: ReadonlyMap<string, PolicyOffenders>;
  /** Each reachable proxy's unused report, by policy id. */
  readonly unused: ReadonlyMap<string, readonly ProxyUnusedReport[]>;
  /** How full each policy's limits are over the proxies that answered this round (mergeLimits). */
  readonly limits: ReadonlyMap<string, PolicyLimits>;
  /** The usage report of each proxy that records reads, as of the last rate round. */
  readonly usage: readonly ProxyUsageReport[];
}

export interface ProxyPollerOptions extends PollAllOptions {
  /** Offenders kept per policy by the aggregation; default that of aggregateOffenders. */
  readonly offendersLimit?: number;
}

/**
 * Polls the proxies of one instance, round after round, and keeps each proxy's last report so the
 * next round can turn counts into rates. A proxy that drops out of the endpoints given is
 * forgotten; one that is listed but fails a round keeps its last report, so its next rate spans
 * both intervals. Rounds run one after another even when `poll` is called again before the last
 * one finished.
 *
 * Only rate rounds (the controller's, one status interval apart) move the readings rates are taken
 * from. A round with `rates: false` (a look after a render, to see the proxies load it) refreshes
 * what each proxy runs and keeps the offenders and rates of the last rate round: a rate over the
 * milliseconds between two such looks would say nothing.
 */
export class ProxyPoller {
  readonly #options: ProxyPollerOptions;
  readonly #last = new Map<string, EndpointPoll>();
  /** Each proxy's last poll that reached it, and how many polls in a row failed since. */
  readonly #good = new Map<string, ProxyPoll>();
  readonly #misses = new Map<string, number>();
  #lastRates: Pick<PollRound, 'current' | 'previous' | 'offenders' | 'unused' | 'usage'> = {
    current: [],
    previous: [],
    offenders: new Map(),
    unused: new Map(),
    usage: [],
  };
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: ProxyPollerOptions) {
    checkOptions(options);
    this.#options = Object.freeze({ ...options });
  }

  /** Polls every endpoint once. Rejects only on invalid options. */
  poll(endpoints: readonly ProxyEndpoint[], options: { readonly rates?: boolean } = {}): Promise<PollRound> {
    const rates = options.rates ?? true;
    const round = this.#tail.then(() => (rates ? this.#round(endpoints) : this.#look(endpoints)));
    this.#tail = round.catch(() => {});
    return round;
  }

  async #look(endpoints: readonly ProxyEndpoint[]): Promise<PollRound> {
    const polls = await pollAll(endpoints, { ...this.#options, reports: 'look' });
    return {
      polls,
      proxies: this.#settle(endpoints, polls),
      limits: mergeLimits(polls.map((p) => p.limits)),
      ...this.#lastRates,
    };
  }

  /**
   * What each proxy runs, as computeStatus sees it: a proxy counts as unreachable once
   * UNREACHABLE_AFTER polls in a row failed; before that it runs what it ran when last reached.
   * One missed answer from a proxy busy loading thousands of policies is not an outage, and
   * would flip every policy's Degraded condition and back.
   */
  #settle(endpoints: readonly ProxyEndpoint[], polls: readonly ProxyPoll[]): ProxyReport[] {
    const listed = new Set(endpoints.map((e) => e.endpoint));
    for (const map of [this.#good, this.#misses] as const)
      for (const endpoint of map.keys()) if (!listed.has(endpoint)) map.delete(endpoint);
    return polls.map((p) => {
      if (p.reachable) {
        this.#misses.delete(p.endpoint);
        this.#good.set(p.endpoint, p);
        return toProxyReport(p);
      }
      const misses = (this.#misses.get(p.endpoint) ?? 0) + 1;
      this.#misses.set(p.endpoint, misses);
      const good = this.#good.get(p.endpoint);
      return misses < UNREACHABLE_AFTER && good !== undefined ? toProxyReport(good) : toProxyReport(p);
    });
  }

  /** The endpoints whose last report is kept. */
  known(): string[] {
    return [...this.#last.keys()].sort();
  }

  async #round(endpoints: readonly ProxyEndpoint[]): Promise<PollRound> {
    const polls = await pollAll(endpoints, this.#options);
    const listed = new Set(endpoints.map((e) => e.endpoint));
    for (const endpoint of this.#last.keys()) if (!listed.has(endpoint)) this.#last.delete(endpoint);

    const current: EndpointPoll[] = [];
    const previous: EndpointPoll[] = [];
    for (const p of polls) {
      const now = toEndpointPoll(p);
      if (now === undefined) continue;
      const before = this.#last.get(now.endpoint);
      if (before !== undefined && before.at < now.at) previous.push(before);
      current.push(now);
      this.#last.set(now.endpoint, now);
    }
    const limit = this.#options.offendersLimit;
    const unused = new Map<string, ProxyUnusedReport[]>();
    for (const p of polls) {
      for (const [id, report] of p.unused ?? []) {
        const list = unused.get(id) ?? [];
        list.push(report);
        unused.set(id, list);
      }
    }
    this.#lastRates = {
      current,
      previous,
      unused,
      usage: polls.flatMap((p) => (p.usage === undefined ? [] : [p.usage])),
      offenders: aggregateOffenders({ current, previous, ...(limit === undefined ? {} : { limit }) }),
    };
    return {
      polls,
      proxies: this.#settle(endpoints, polls),
      limits: mergeLimits(polls.map((p) => p.limits)),
      ...this.#lastRates,
    };
  }
}

/** Polls in a row a proxy must fail before it counts as unreachable (ProxyPoller). */
export const UNREACHABLE_AFTER = 2;

function checkOptions(o: PollAllOptions): void {
  if (!(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0)) {
    throw new RangeError(`timeoutMs: ${o.timeoutMs} must be a positive number`);
  }
  if (!Number.isInteger(o.topLimit) || o.topLimit < 1 || o.topLimit > MAX_TOP_LIMIT) {
    throw new RangeError(`topLimit: ${o.topLimit} must be an integer from 1 to ${MAX_TOP_LIMIT}`);
  }
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency >= 1)) {
    throw new RangeError(`concurrency: ${o.concurrency} must be a positive integer`);
  }
  const max = o.maxResponseBytes;
  if (max !== undefined && !(Number.isInteger(max) && max > 0)) {
    throw new RangeError(`maxResponseBytes: ${max} must be a positive integer`);
  }
}

/** A failure with a message fit for a condition or a log line. */
class PollError extends Error {}

interface GetOptions {
  readonly signal: AbortSignal;
  readonly maxBytes: number;
  readonly timeoutMs: number;
  readonly dispatcher: Dispatcher | undefined;
  readonly authorization: string | undefined;
}

async function getJson(url: URL, options: GetOptions): Promise<unknown> {
  const { signal, maxBytes, timeoutMs, dispatcher, authorization } = options;
  let res: Response;
  try {
    // A redirect would send the operator to an address no EndpointSlice named.
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authorization !== undefined) headers.authorization = authorization;
    const init = { signal, redirect: 'manual', headers } as const;
    res = (
      dispatcher === undefined ? await fetch(url, init) : await undiciFetch(url, { ...init, dispatcher })
    ) as Response;
  } catch (err) {
    throw new PollError(failure(err, timeoutMs), { cause: err });
  }
  try {
    if (res.status !== 200) throw new PollError(`HTTP ${res.status}`);
    const declared = Number(res.headers.get('content-length') ?? Number.NaN);
    if (declared > maxBytes) throw new PollError(`body of ${declared} bytes exceeds ${maxBytes}`);
    const body = await readBounded(res, maxBytes, timeoutMs);
    try {
      return JSON.parse(body);
    } catch (err) {
      throw new PollError(`invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  } finally {
    // Whatever was not read is discarded, which also frees the connection.
    if (res.body !== null && !res.bodyUsed) await res.body.cancel().catch(() => {});
  }
}

/** The body as text, reading no more than `maxBytes` of it. */
async function readBounded(res: Response, maxBytes: number, timeoutMs: number): Promise<string> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw new PollError(`body exceeds ${maxBytes} bytes`);
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err instanceof PollError ? err : new PollError(failure(err, timeoutMs), { cause: err });
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** A network failure in words: the timeout, or the system error under fetch's "fetch failed". */
function failure(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return `no answer within ${timeoutMs} ms`;
  }
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code !== 'string') return cause.message;
    return cause.message.includes(code) ? cause.message : `${cause.message || 'connection failed'} (${code})`;
  }
  return err instanceof Error ? err.message : String(err);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
