// The read path (--query.upstream): the Prometheus HTTP API's read endpoints served on the proxy's
// port and passed through to a Prometheus-compatible query API (Prometheus, Thanos Query, Mimir,
// VictoriaMetrics) unchanged: the request's method, path, query string, body and headers go
// upstream as they came; the upstream's status, headers and body come back as they are, streamed
// (a gzip answer stays the upstream's gzip bytes). What each request reads is recorded on the side
// (proxy/query/recorder.ts) and never changes what is forwarded: a query the proxy cannot parse is
// passed through and counted as unparsed.
//
// Access (route config `access: 'query'`, decided by proxy/auth/http.ts): with
// --auth.credentials-file, every read request needs a valid credential; the credential's tenant is
// what the upstream sees as X-Scope-OrgID (per --auth.tenant-header-mode), so a data source reads
// only its tenant, and the credential itself is not passed on. Without credentials configured,
// Authorization and X-Scope-OrgID pass through to the upstream, which then decides.

import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Pool } from 'undici';
import { type AuthOptions, requestTenant } from '../auth/http.js';
import { addExpression, emptyReads, expressionsOf, type ReadEndpoint } from './extract.js';
import type { QueryMetrics } from './metrics.js';
import { readerOf } from './readers.js';

/** Read endpoints, their methods and what they read; Prometheus HTTP API, "Expression queries" on. */
export const READ_ROUTES: readonly {
  readonly path: string;
  readonly endpoint: ReadEndpoint;
  readonly methods: readonly ('GET' | 'POST')[];
}[] = [
  { path: '/api/v1/query', endpoint: 'query', methods: ['GET', 'POST'] },
  { path: '/api/v1/query_range', endpoint: 'query_range', methods: ['GET', 'POST'] },
  { path: '/api/v1/query_exemplars', endpoint: 'query_exemplars', methods: ['GET', 'POST'] },
  { path: '/api/v1/series', endpoint: 'series', methods: ['GET', 'POST'] },
  { path: '/api/v1/labels', endpoint: 'labels', methods: ['GET', 'POST'] },
  { path: '/api/v1/label/:name/values', endpoint: 'label_values', methods: ['GET'] },
  { path: '/api/v1/metadata', endpoint: 'metadata', methods: ['GET'] },
  { path: '/federate', endpoint: 'federate', methods: ['GET'] },
  // What Grafana's data source asks besides queries: the flavour and version, the rules and
  // alerts of its alerting views, and query formatting. Passed through, read nothing.
  { path: '/api/v1/status/buildinfo', endpoint: 'other', methods: ['GET'] },
  { path: '/api/v1/rules', endpoint: 'other', methods: ['GET'] },
  { path: '/api/v1/alerts', endpoint: 'other', methods: ['GET'] },
  { path: '/api/v1/format_query', endpoint: 'other', methods: ['GET', 'POST'] },
  { path: '/api/v1/parse_query', endpoint: 'other', methods: ['GET', 'POST'] },
];

/** RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export interface ReadPathOptions {
  /** The query API's base URL, e.g. http://prometheus:9090 or http://mimir/prometheus. */
  readonly upstream: string;
  /** How long the upstream may take to answer, and to send each part of its body. */
  readonly timeoutMs: number;
  readonly connections: number;
  /** Called once per read request with what it reads; must not throw. */
  readonly record: (reads: ReturnType<typeof emptyReads>, reader: string, nowMs: number) => void;
  readonly metrics: QueryMetrics;
  readonly logger: Logger;
  /**
   * Credentials in force (checked by the access hook); with them the client's Authorization and
   * X-Scope-OrgID are not passed on. Undefined passes both through.
   */
  readonly auth?: AuthOptions | undefined;
  readonly now?: () => number;
}

/** The connection pool to the query API; one per proxy, closed on shutdown. */
export class ReadUpstream {
  readonly pool: Pool;
  readonly basePath: string;

  constructor(url: string, connections: number, timeoutMs: number) {
    const u = new URL(url);
    this.pool = new Pool(u.origin, {
      connections,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 30_000,
    });
    this.basePath = u.pathname.replace(/\/+$/, '');
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** A Prometheus API error answer (HTTP API, "Format overview"). */
function apiError(reply: ServerResponse, status: number, errorType: string, error: string): void {
  if (reply.headersSent) {
    reply.destroy();
    return;
  }
  const body = JSON.stringify({ status: 'error', errorType, error });
  reply.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  reply.end(body);
}

function upstreamHeaders(headers: IncomingHttpHeaders, auth: boolean, tenant: string | undefined) {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || k === 'host' || k === 'content-length') continue;
    // With proxy credentials, the presented credential is the proxy's and the tenant is its.
    if (auth && (k === 'authorization' || k === 'x-scope-orgid')) continue;
    out[k] = v;
  }
  if (auth && tenant !== undefined) out['x-scope-orgid'] = tenant;
  return out;
}

function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** The parameters of a request as Prometheus reads them: form body first, then the URL's. */
function paramsOf(request: FastifyRequest): URLSearchParams {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  const params = new URLSearchParams();
  const body = request.body;
  const type = String(request.headers['content-type'] ?? '').toLowerCase();
  if (Buffer.isBuffer(body) && type.startsWith('application/x-www-form-urlencoded')) {
    for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.append(k, v);
  }
  if (q >= 0) for (const [k, v] of new URLSearchParams(url.slice(q + 1))) params.append(k, v);
  return params;
}

export function registerReadPath(app: FastifyInstance, upstream: ReadUpstream, opts: ReadPathOptions): void {
  const now = opts.now ?? Date.now;
  const auth = opts.auth;

  const handle = async (endpoint: ReadEndpoint, request: FastifyRequest, reply: FastifyReply) => {
    const started = now();
    // With credentials, the access hook (proxy/auth/http.ts, access `query`) set the credential's.
    const tenant = requestTenant(request);
    const body = Buffer.isBuffer(request.body) ? request.body : undefined;
    reply.hijack();
    const res = reply.raw;
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const pending = upstream.pool.request({
      path: `${upstream.basePath}${request.raw.url ?? '/'}`,
      method: request.method as 'GET' | 'POST',
      headers: upstreamHeaders(request.headers, auth !== undefined, tenant.forward),
      ...(body === undefined || body.length === 0 ? {} : { body }),
      signal: abort.signal,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
    // While the upstream evaluates: what the request reads. Never on the answer's path.
    if (endpoint !== 'other' && endpoint !== 'metadata') {
      const params = paramsOf(request);
      const reads = emptyReads();
      for (const e of expressionsOf(endpoint, params)) addExpression(reads, e);
      opts.metrics.expressions(reads.parsed, reads.unparsed, reads.unnamed);
      try {
        opts.record(reads, readerOf(request.headers, tenant.match), started);
      } catch (err) {
        opts.logger.error({ err }, 'recording a read failed');
      }
    }
    let answer: Awaited<typeof pending>;
    try {
      answer = await pending;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'UND_ERR_ABORTED' || abort.signal.aborted) {
        opts.metrics.request(endpoint, 499);
        return;
      }
      if (code === 'UND_ERR_HEADERS_TIMEOUT') {
        opts.metrics.request(endpoint, 504);
        apiError(res, 504, 'timeout', `the query API did not answer within ${opts.timeoutMs} ms`);
        return;
      }
      opts.metrics.request(endpoint, 502);
      opts.logger.warn({ err: (err as Error).message, endpoint }, 'query API unreachable');
      apiError(res, 502, 'unavailable', `the query API is unreachable: ${(err as Error).message}`);
      return;
    }
    opts.metrics.request(endpoint, answer.statusCode);
    opts.metrics.upstreamSeconds(endpoint, (now() - started) / 1000);
    res.writeHead(answer.statusCode, responseHeaders(answer.headers as IncomingHttpHeaders));
    try {
      await pipeline(answer.body, res);
    } catch {
      // The client went away or the upstream's body failed midway: both connections are closed,
      // so the client sees a truncated answer rather than a wrong one.
      res.destroy();
    }
  };

  for (const route of READ_ROUTES) {
    app.route({
      method: [...route.methods],
      url: route.path,
      config: { access: 'query' },
      handler: (request, reply) => handle(route.endpoint, request, reply),
    });
  }
}
