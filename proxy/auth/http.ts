// Access control as fastify hooks: every route declares who may call it, and a request is judged by
// the route the router matched, never by a second reading of its URL. It runs on request, before
// the body is read, so a refused sender costs no decompression and nothing of it is forwarded.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CardinalError } from '../errors.js';
import { type Credentials, pathAllowed } from './credentials.js';
import type { AuthMetrics } from './metrics.js';
import { targetProblem } from './target.js';
import { authenticate } from './verify.js';

/**
 * `override`: the credential's tenant replaces any X-Scope-OrgID the sender set and is forwarded.
 * `none`: no X-Scope-OrgID is forwarded; policies still match on the credential's tenant.
 */
export type TenantHeaderMode = 'override' | 'none';

export interface AuthOptions {
  /** Read once per request, so a reload takes effect for the next request. */
  readonly store: { readonly credentials: Credentials };
  readonly tenantHeaderMode: TenantHeaderMode;
  readonly metrics: AuthMetrics;
}

/** The tenant of an ingest request: what policies match on, and what is forwarded upstream. */
export interface RequestTenant {
  readonly match: string | undefined;
  readonly forward: string | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook when credentials are required; read it with requestTenant(). */
    cardinalTenant: RequestTenant | null;
  }
  interface FastifyContextConfig {
    /** Who may call the route; every route must say (see ACCESS). */
    access?: RouteAccess;
    /**
     * For `ingest` routes: the ingest path credentials' allowedPaths are matched against, or a
     * function of the request target that gives it (undefined: the target's decoded path).
     */
    ingestPath?: string | ((target: string) => string | undefined);
  }
}

/**
 * Who may call a route, declared by every route in its `config.access`; a route that does not
 * declare it is refused at registration, so a new route can never be open by omission.
 * - `public`: anyone, always (health and readiness probes).
 * - `ingest`: remote-write and push; with credentials configured, a credential whose
 *   allowedPaths allow the route's ingest path.
 * - `admin`: status, statistics, reload and pages; with credentials configured, a credential with
 *   the `admin` role.
 * - `metrics`: the proxy's own /metrics; public unless `--metrics.auth`, then a credential with the
 *   `metrics` (or `admin`) role.
 * - `query`: the read path (--query.upstream), served to data sources such as Grafana's; with
 *   credentials configured, any valid credential, whose tenant the query API then sees.
 */
export type RouteAccess = 'public' | 'ingest' | 'admin' | 'metrics' | 'query';
export const ACCESS: ReadonlySet<string> = new Set<RouteAccess>([
  'public',
  'ingest',
  'admin',
  'metrics',
  'query',
]);

/**
 * The tenant of a request: the authenticated one when credentials are required, otherwise the
 * X-Scope-OrgID the sender set, passed through.
 */
export function requestTenant(request: FastifyRequest): RequestTenant {
  if (request.cardinalTenant !== null) return request.cardinalTenant;
  const v = request.headers['x-scope-orgid'];
  const tenant = Array.isArray(v) ? v[0] : v;
  return { match: tenant, forward: tenant };
}

export interface AccessOptions {
  /** Credentials in force; without them every route is open, as before any were configured. */
  readonly auth: AuthOptions | undefined;
  /** `--metrics.auth`: /metrics needs a credential with the metrics role. */
  readonly metricsAuth: boolean;
  /** Told of each refusal, for the request metrics. */
  readonly refused: (err: CardinalError) => void;
}

/**
 * Hardens the request target and decides access by the route the router matched, before any body
 * is read: a refused request costs no decompression and nothing of it is forwarded. Must be
 * called before any route is registered.
 */
export function registerAccess(app: FastifyInstance, opts: AccessOptions): void {
  app.decorateRequest('cardinalTenant', null);
  app.addHook('onRoute', (route) => {
    const access = route.config?.access;
    if (access === undefined || !ACCESS.has(access)) {
      const methods = Array.isArray(route.method) ? route.method.join(',') : route.method;
      throw new Error(
        `route ${methods} ${route.url} must declare config.access (public, ingest, admin, metrics or query)`,
      );
    }
  });

  const refuse = (reply: FastifyReply, err: CardinalError, challenge: string[] | undefined) => {
    opts.refused(err);
    if (challenge !== undefined) void reply.header('WWW-Authenticate', challenge);
    return reply.code(err.status).type('text/plain; charset=utf-8').send(`${err.message}\n`);
  };

  app.addHook('onRequest', async (request, reply) => {
    const problem = targetProblem(request.raw.url ?? '');
    if (problem !== undefined)
      return refuse(reply, new CardinalError('BAD_REQUEST_TARGET', problem), undefined);

    const auth = opts.auth;
    const access = request.routeOptions.config.access;
    // No route matched: the not-found handler answers 404 and does nothing else.
    if (auth === undefined || access === undefined || access === 'public') return;
    if (access === 'metrics' && !opts.metricsAuth) return;

    const credentials = auth.store.credentials;
    const result = authenticate(credentials, request.headers.authorization);
    if (!result.ok) {
      auth.metrics.failure(result.failure);
      // RFC 6750 section 3: a challenge per scheme offered; error="invalid_token" only when a
      // token was presented and refused. RFC 7617 section 2.1 for the charset parameter.
      const bearer =
        result.failure === 'missing' || result.failure === 'unsupported_scheme'
          ? 'Bearer realm="cardinal"'
          : 'Bearer realm="cardinal", error="invalid_token"';
      const challenge = credentials.basic ? [bearer, 'Basic realm="cardinal", charset="UTF-8"'] : [bearer];
      return refuse(reply, new CardinalError('UNAUTHORIZED', FAILURE_DETAIL[result.failure]), challenge);
    }
    const { credential } = result;
    if (access === 'query') {
      // A data source reads its own tenant: the credential's, whatever the client sent.
      request.cardinalTenant = {
        match: credential.tenant,
        forward: auth.tenantHeaderMode === 'override' ? credential.tenant : undefined,
      };
      return;
    }
    if (access === 'admin' || access === 'metrics') {
      if (credential.roles.has(access)) return;
      auth.metrics.failure('forbidden_role');
      return refuse(
        reply,
        new CardinalError('FORBIDDEN', `tenant ${credential.tenant} lacks the ${access} role`),
        undefined,
      );
    }
    // An ingest route: its own path, or for the push routes the matched path itself (the target
    // was checked above, so decoding cannot make a new segment).
    const target = request.raw.url ?? '/';
    const ingestPath = request.routeOptions.config.ingestPath;
    const path = (typeof ingestPath === 'function' ? ingestPath(target) : ingestPath) ?? decodedPath(target);
    if (!pathAllowed(credential, path)) {
      auth.metrics.failure('forbidden_path');
      return refuse(
        reply,
        new CardinalError('FORBIDDEN', `tenant ${credential.tenant} may not push to ${path.slice(0, 200)}`),
        undefined,
      );
    }
    request.cardinalTenant = {
      match: credential.tenant,
      forward: auth.tenantHeaderMode === 'override' ? credential.tenant : undefined,
    };
  });
}

const FAILURE_DETAIL = {
  missing: 'no Authorization header',
  malformed: 'malformed Authorization header',
  unsupported_scheme: 'unsupported authorization scheme; use Bearer or Basic',
  invalid: 'invalid credentials',
} as const;

/** The path of an origin-form target, percent-decoded as the router decodes it, without the query. */
function decodedPath(target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
