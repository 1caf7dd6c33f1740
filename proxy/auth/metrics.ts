import { Counter, Gauge, type Registry } from 'prom-client';
import { AUTH_FAILURES, type AuthFailure } from './verify.js';

/**
 * Refusals: the reasons of a 401; for a 403 `forbidden_path` (ingest) or `forbidden_role` (admin
 * and metrics routes).
 */
export type AuthRefusal = AuthFailure | 'forbidden_path' | 'forbidden_role';

export interface AuthMetrics {
  failure(reason: AuthRefusal): void;
  reload(ok: boolean): void;
}

/**
 * The proxy's authentication metrics. Labels are fixed sets (refusal reasons, reload results);
 * neither tokens nor usernames ever become a label value.
 */
export function createAuthMetrics(registry: Registry): AuthMetrics {
  const failures = new Counter({
    name: 'cardinal_proxy_auth_failures_total',
    help: 'Requests refused: 401 by reason (missing, malformed, unsupported_scheme, invalid), 403 as forbidden_path (ingest) or forbidden_role (admin, metrics).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of [...AUTH_FAILURES, 'forbidden_path', 'forbidden_role']) failures.labels(reason).inc(0);
  const reloads = new Counter({
    name: 'cardinal_proxy_auth_reloads_total',
    help: 'Loads of --auth.credentials-file, by result (success or failure).',
    labelNames: ['result'],
    registers: [registry],
  });
  // Registered by the first load: a proxy without --auth.credentials-file has no credentials to
  // fail loading, and a gauge reading 0 there would make every "reload failed" alert fire.
  let lastOk: Gauge | undefined;
  return {
    failure(reason) {
      failures.labels(reason).inc();
    },
    reload(ok) {
      reloads.labels(ok ? 'success' : 'failure').inc();
      lastOk ??= new Gauge({
        name: 'cardinal_proxy_auth_last_reload_successful',
        // --workers N: every worker has the same value; /metrics shows the smallest.
        aggregator: 'min',
        help: '1 when the last load of the credentials succeeded, 0 when it failed and the previous credentials stay in force.',
        registers: [registry],
      });
      lastOk.set(ok ? 1 : 0);
    },
  };
}
