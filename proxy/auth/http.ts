// Authentication of ingest requests as a fastify hook. It runs on request, before the body is
// read, so a refused sender costs no decompression and nothing of its request is forwarded.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CardinalError } from '../errors.js';
import { type Credentials, ingestPath, pathAllowed } from './credentials.js';
import type { AuthMetrics } from './metrics.js';
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
}

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

/**
 * Requires credentials on every ingest path when `auth` is given; without it ingest stays open.
 * `refused` is told of each refusal, for the request metrics.
 */
export function registerAuth(
  app: FastifyInstance,
  auth: AuthOptions | undefined,
  refused: (err: CardinalError) => void,
): void {
  app.decorateRequest('cardinalTenant', null);
  if (auth === undefined) return;

  const refuse = (reply: FastifyReply, err: CardinalError, challenge: string[] | undefined) => {
    refused(err);
    if (challenge !== undefined) void reply.header('WWW-Authenticate', challenge);
    return reply.code(err.status).type('text/plain; charset=utf-8').send(`${err.message}\n`);
  };

  app.addHook('onRequest', async (request, reply) => {
    const path = ingestPath(requestPath(request));
    if (path === undefined) return;
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

/**
 * The path as the router sees it: percent-decoded, without the query, so that an encoded spelling
 * of an ingest path is authenticated as that path.
 */
function requestPath(request: FastifyRequest): string {
  const raw = request.url;
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
