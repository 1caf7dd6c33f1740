import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyServerFactory,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { TlsPair } from '../lib/tls.js';
import { type AuthOptions, registerAccess } from './auth/http.js';
import type { AuthStatus } from './auth/store.js';
import type { PolicySummary } from './config/summary.js';
import { CardinalError } from './errors.js';
import type { Forwarder } from './forward/client.js';
import type { PushForwarder } from './forward/pushgateway.js';
import { BodyPool } from './ingest/body.js';
import { type LintMode, registerPushgateway } from './ingest/pushgateway/http.js';
import { type IngestChecks, registerRemoteWrite } from './ingest/remote-write.js';
import type { LimitStoreStatus } from './limits/store.js';
import type { PolicyEngine } from './pipeline/engine.js';
import { type ReadPathOptions, type ReadUpstream, registerReadPath } from './query/http.js';
import type { UsageQuery, UsageReportJson, UsageSort } from './query/usage.js';
import type { DeadLetterReport } from './queue/dead-letter.js';
import type { IngestQueue } from './queue/queue.js';
import type { LimitsReport } from './stats/limits.js';
import type { ProxyMetrics } from './stats/metrics.js';
import type { PolicyStats } from './stats/policy-stats.js';
import type { TopOffendersReport } from './stats/top-offenders.js';
import type { UnusedReport } from './stats/unused.js';
import { registerPages, type WebDeps } from './web/pages.js';

/** What GET /api/v1/status/config reports; owned by main.ts, which loads configurations. */
export interface ConfigStatus {
  hash: string;
  loadedAt: Date;
  files: readonly string[];
  /** The sha256 of each file's text, by path (ValidatedConfig.fileHashes). */
  fileHashes: Readonly<Record<string, string>>;
  policies: number;
  /** Each policy in the order they apply, with its mode and rule counts. */
  policyDetails: readonly PolicySummary[];
  lastError: { message: string; at: Date } | undefined;
}

export interface ServerDeps {
  /** Where request bodies are read into; a pool of the server's own when unset. */
  readonly bodies?: BodyPool | undefined;
  readonly logger: Logger;
  readonly metrics: ProxyMetrics;
  readonly forwarder: Forwarder;
  readonly maxRequestBytes: number;
  readonly maxDecodedBytes: number;
  readonly maxInflightRequests?: number | undefined;
  readonly maxInflightBytes?: number | undefined;
  readonly upstreamProtocol: 'same' | '1.0';
  readonly engine: PolicyEngine;
  readonly policyStats: PolicyStats;
  readonly reportDroppedAsWritten: boolean;
  /** The durable queue (--queue.dir); without it requests are answered after the upstream accepted. */
  readonly queue?: IngestQueue | undefined;
  /** The door check (--ingest.*); undefined with --ingest.invalid off. */
  readonly checks?: IngestChecks | undefined;
  /** The durable queue's status and dead letters (--queue.dir); absent, the routes are not served. */
  readonly queueApi?:
    | {
        readonly status: () => unknown;
        /** With --workers N, every worker's (asked through the primary) and each worker's count or error. */
        readonly deadLetters: () => DeadLetterReport | Promise<DeadLetterReport>;
        /** Puts dead letters back into the queue; returns how many. */
        readonly requeue: (ids: readonly number[] | 'all') => Promise<number>;
      }
    | undefined;
  /** /metrics for the whole proxy when it runs --workers N (the primary's merge); this process's registry without. */
  readonly metricsText?: (() => Promise<string>) | undefined;
  /** With --workers N the whole proxy's, merged by the primary (proxy/workers/stats.ts). */
  readonly topOffenders: (limit: number) => TopOffendersReport | Promise<TopOffendersReport>;
  /** GET /api/v1/stats/limits: how full each policy's fullest limit is (proxy/stats/limits.ts). */
  readonly limits?: (() => LimitsReport | Promise<LimitsReport>) | undefined;
  /** GET /api/v1/stats/unused?limit=N (spec.unused); absent, the route is not served. */
  readonly unused?: ((limit: number) => UnusedReport | Promise<UnusedReport>) | undefined;
  readonly configStatus: () => ConfigStatus;
  /** False while starting or shutting down; /-/ready answers 503 then. */
  readonly ready: () => boolean;
  readonly reload: () => Promise<ConfigStatus>;
  /** Pushgateway-protocol ingest; without it the push routes answer 404. */
  readonly push?:
    | {
        readonly forwarder: PushForwarder;
        readonly lintMode: LintMode;
        /** The push queue (--queue.dir); without it pushes are answered after the Pushgateway did. */
        readonly queue?: IngestQueue | undefined;
      }
    | undefined;
  /** Serve HTTPS with this pair; the caller swaps in rotated pairs with setSecureContext. */
  readonly tls?: TlsPair | undefined;
  /**
   * Credentials required on ingest, admin routes and (with metricsAuth) /metrics; without them
   * every route is open.
   */
  readonly auth?: (AuthOptions & { readonly status: () => AuthStatus }) | undefined;
  /** The shared limit store (--limits.store); without it limits are this process's own. */
  readonly limitsStore?: (() => LimitStoreStatus) | undefined;
  /** The read path (--query.upstream) and GET /api/v1/stats/usage; absent, neither is served. */
  readonly query?:
    | {
        /** Undefined when only the query log is tailed: no read routes. */
        readonly upstream: ReadUpstream | undefined;
        readonly readPath: Omit<ReadPathOptions, 'auth' | 'logger'>;
        readonly report: (q: UsageQuery) => UsageReportJson | Promise<UsageReportJson>;
        readonly maxLimit: number;
      }
    | undefined;
  /** The web pages (/, /policies, ...); absent, they are not served. */
  readonly web?: WebDeps | undefined;
  /** `--metrics.auth`: /metrics needs a credential with the metrics or admin role. */
  readonly metricsAuth?: boolean | undefined;
  /**
   * Least time between two reloads asked for over HTTP; one asked for sooner is answered 429 with
   * Retry-After, and one asked for while another runs shares its result.
   */
  readonly reloadMinIntervalMs?: number | undefined;
}

export function buildServer(deps: ServerDeps): FastifyInstance {
  // An https.Server is what fastify's own `https` option creates; a factory keeps the instance's
  // type that of a plain server, and main.ts calls setSecureContext on it when the pair rotates.
  const tls = deps.tls;
  const serverFactory: FastifyServerFactory<Server> | undefined =
    tls === undefined
      ? undefined
      : (handler) => createHttpsServer({ cert: tls.cert, key: tls.key }, handler) as unknown as Server;
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Per-request logs would cost more than the proxying itself at hundreds of requests a second;
    // rejections are logged where they happen, rate-limited.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.maxRequestBytes,
    // While shutting down, a request that still arrives on an open keep-alive connection is
    // served, with `Connection: close` so its sender reconnects, to another proxy behind the
    // Service (the onSend hook below); a 503 there would count as a failed write at the sender
    // on every rolling update.
    return503OnClosing: false,
    ...(serverFactory === undefined ? {} : { serverFactory }),
  });

  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  // Remote-write bodies are binary; negotiation of their Content-Type happens in the handler, so
  // that an unsupported one is a 415 with the reason the spec asks for, not fastify's default.
  app.removeAllContentTypeParsers();
  const bodies = deps.bodies ?? new BodyPool();
  app.addContentTypeParser('*', { bodyLimit: deps.maxRequestBytes }, bodies.parser(deps.maxRequestBytes));

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const e = new CardinalError('BODY_TOO_LARGE', `more than ${deps.maxRequestBytes} bytes`);
      deps.metrics.request('unknown', e.status, e.code);
      return reply.code(e.status).type('text/plain; charset=utf-8').send(`${e.message}\n`);
    }
    if (err.statusCode !== undefined && err.statusCode < 500) {
      return reply.code(err.statusCode).type('text/plain; charset=utf-8').send(`${err.message}\n`);
    }
    request.log.error({ err }, 'unexpected error');
    return reply.code(500).type('text/plain; charset=utf-8').send('internal error\n');
  });

  // Before every route: each route declares its access, and every request is judged by the route
  // the router matched.
  registerAccess(app, {
    auth: deps.auth,
    metricsAuth: deps.metricsAuth === true,
    refused: (err) => deps.metrics.request('unknown', err.status, err.code),
  });
  registerRemoteWrite(app, { ...deps, bodies });
  if (deps.push !== undefined) {
    registerPushgateway(app, {
      pushForwarder: deps.push.forwarder,
      lintMode: deps.push.lintMode,
      queue: deps.push.queue,
      metrics: deps.metrics,
      maxDecodedBytes: deps.maxDecodedBytes,
      engine: deps.engine,
      policyStats: deps.policyStats,
    });
  }

  const PUBLIC = { config: { access: 'public' } } as const;
  const ADMIN = { config: { access: 'admin' } } as const;
  app.get('/-/healthy', PUBLIC, async (_req, reply) => reply.type('text/plain').send('Healthy\n'));
  // A store that does not answer never makes the proxy unready (ingest goes on with each limit's
  // share); the body says so.
  app.get('/-/ready', PUBLIC, async (_req, reply) => {
    if (!deps.ready()) return reply.code(503).type('text/plain').send('Not ready\n');
    const store = deps.limitsStore?.();
    return reply
      .type('text/plain')
      .send(
        store === undefined || store.state === 'store'
          ? 'Ready\n'
          : `Ready; limit store ${store.url} not answering since ${store.since.toISOString()}: enforcing each limit / ${store.replicas} locally\n`,
      );
  });
  app.get('/metrics', { config: { access: 'metrics' } }, async (_req, reply) =>
    reply
      .type(deps.metrics.registry.contentType)
      .send(await (deps.metricsText?.() ?? deps.metrics.registry.metrics())),
  );
  const authStatus = () => (deps.auth === undefined ? undefined : deps.auth.status());
  // `?policyDetails=false` leaves out the one part that grows with the policies (about 240 bytes
  // each): the operator polls this every half second after a render and needs only the hash.
  app.get('/api/v1/status/config', ADMIN, async (req, reply) => {
    const raw = (req.query as Record<string, string | undefined>).policyDetails ?? 'true';
    if (raw !== 'true' && raw !== 'false') {
      return reply
        .code(400)
        .type('text/plain; charset=utf-8')
        .send(`policyDetails: "${raw.slice(0, 20)}" must be true or false\n`);
    }
    const { policyDetails, ...rest } = statusJson(deps.configStatus(), authStatus());
    return {
      ...rest,
      ...(raw === 'true' ? { policyDetails } : {}),
      limitsStore: limitsStoreJson(deps.limitsStore?.()),
    };
  });
  app.get('/api/v1/stats/top-offenders', ADMIN, async (req, reply) => {
    const raw = (req.query as Record<string, string | undefined>).limit ?? '10';
    const limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) {
      return reply
        .code(400)
        .type('text/plain; charset=utf-8')
        .send(`limit: "${raw.slice(0, 20)}" must be an integer from 1 to 1000\n`);
    }
    return deps.topOffenders(limit);
  });
  const limits = deps.limits;
  if (limits !== undefined) {
    app.get('/api/v1/stats/limits', ADMIN, async () => limits());
  }
  const unused = deps.unused;
  if (unused !== undefined) {
    app.get('/api/v1/stats/unused', ADMIN, async (req, reply) => {
      const raw = (req.query as Record<string, string | undefined>).limit ?? '10';
      if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) {
        return reply
          .code(400)
          .type('text/plain; charset=utf-8')
          .send(`limit: "${raw.slice(0, 20)}" must be an integer from 1 to 1000\n`);
      }
      return unused(Number(raw));
    });
  }
  const query = deps.query;
  if (query !== undefined) {
    if (query.upstream !== undefined) {
      registerReadPath(app, query.upstream, { ...query.readPath, auth: deps.auth, logger: deps.logger });
    }
    app.get('/api/v1/stats/usage', ADMIN, async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const bad = (field: string, raw: string, want: string) =>
        reply
          .code(400)
          .type('text/plain; charset=utf-8')
          .send(`${field}: "${raw.slice(0, 20)}" must be ${want}\n`);
      const limit = q.limit ?? '100';
      if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > query.maxLimit) {
        return bad('limit', limit, `an integer from 1 to ${query.maxLimit}`);
      }
      const readers = q.readers ?? '5';
      if (!/^\d+$/.test(readers) || Number(readers) > 64)
        return bad('readers', readers, 'an integer from 0 to 64');
      const sort = q.sort ?? 'reads';
      if (sort !== 'reads' && sort !== 'lastRead' && sort !== 'cost') {
        return bad('sort', sort, 'reads, lastRead or cost');
      }
      return query.report({ limit: Number(limit), readers: Number(readers), sort: sort as UsageSort });
    });
  }
  if (deps.web !== undefined) registerPages(app, deps.web);
  const queueApi = deps.queueApi;
  if (queueApi !== undefined) {
    app.get('/api/v1/status/queue', ADMIN, async () => queueApi.status());
    app.get('/api/v1/queue/dead-letter', ADMIN, async () => queueApi.deadLetters());
    // ?id=N (repeatable) puts those back; ?all=true puts every dead letter back.
    app.post('/api/v1/queue/dead-letter/requeue', ADMIN, async (req, reply) => {
      const q = req.query as Record<string, string | string[] | undefined>;
      const raw = q.id === undefined ? [] : Array.isArray(q.id) ? q.id : [q.id];
      if (q.all !== 'true' && raw.length === 0) {
        return reply
          .code(400)
          .type('text/plain; charset=utf-8')
          .send('give the dead letters to put back as ?id=N (repeatable), or ?all=true for all\n');
      }
      const bad = raw.find((v) => !/^\d{1,15}$/.test(v));
      if (bad !== undefined) {
        return reply
          .code(400)
          .type('text/plain; charset=utf-8')
          .send(
            `id: "${bad.slice(0, 20)}" must be the id of a dead letter, as GET /api/v1/queue/dead-letter lists it\n`,
          );
      }
      const requeued = await queueApi.requeue(q.all === 'true' ? 'all' : raw.map(Number));
      return { requeued };
    });
  }
  const reloadMinIntervalMs = deps.reloadMinIntervalMs ?? 1000;
  const gate = reloadGate(deps.reload, reloadMinIntervalMs);
  app.post('/-/reload', ADMIN, async (_req, reply) => {
    const status = await gate();
    if (status === undefined) {
      const e = new CardinalError('TOO_MANY_RELOADS', `at most one per ${reloadMinIntervalMs} ms`);
      deps.metrics.request('unknown', e.status, e.code);
      return reply
        .code(e.status)
        .header('Retry-After', Math.max(1, Math.ceil(reloadMinIntervalMs / 1000)))
        .type('text/plain; charset=utf-8')
        .send(`${e.message}\n`);
    }
    const auth = authStatus();
    const ok = status.lastError === undefined && auth?.lastError === undefined;
    return reply.code(ok ? 200 : 500).send(statusJson(status, auth));
  });

  return app;
}

/**
 * Reloads asked for over HTTP: one at a time (a request that comes while one runs shares its
 * result), and none sooner than `minIntervalMs` after the last one started (undefined then).
 */
export function reloadGate(
  reload: () => Promise<ConfigStatus>,
  minIntervalMs: number,
  now: () => number = Date.now,
): () => Promise<ConfigStatus | undefined> {
  let running: Promise<ConfigStatus> | undefined;
  let lastStart = Number.NEGATIVE_INFINITY;
  return async () => {
    if (running !== undefined) return running;
    const t = now();
    if (t - lastStart < minIntervalMs) return undefined;
    lastStart = t;
    running = reload().finally(() => {
      running = undefined;
    });
    return running;
  };
}

function statusJson(s: ConfigStatus, auth: AuthStatus | undefined) {
  return {
    hash: s.hash,
    loadedAt: s.loadedAt.toISOString(),
    files: s.files,
    fileHashes: s.fileHashes,
    policies: s.policies,
    policyDetails: s.policyDetails,
    lastError: errorJson(s.lastError),
    // `null` when ingest is open (no --auth.credentials-file).
    auth:
      auth === undefined
        ? null
        : {
            loadedAt: auth.loadedAt.toISOString(),
            files: auth.files,
            tenants: auth.tenants,
            credentials: auth.credentials,
            lastError: errorJson(auth.lastError),
          },
  };
}

/** `null` without a shared limit store: every limit is this process's own. */
function limitsStoreJson(s: LimitStoreStatus | undefined) {
  if (s === undefined) return null;
  return {
    state: s.state,
    url: s.url,
    since: s.since.toISOString(),
    lastError: s.lastError ?? null,
    replicas: s.replicas,
    // operator: the count of proxies the operator discovers; flag: --limits.replicas.
    replicasFrom: s.replicasFrom,
    // What the limits mean in this state (README "Limits across replicas").
    limits: s.state === 'store' ? 'global' : `local share: limit / ${s.replicas}`,
  };
}

function errorJson(e: { message: string; at: Date } | undefined) {
  return e === undefined ? null : { message: e.message, at: e.at.toISOString() };
}
