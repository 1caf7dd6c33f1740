import type { Logger } from 'pino';
import { type ConfigWatch, type WatchOptions, watchConfig } from '../../lib/watch.js';
import { type Credentials, loadCredentials } from './credentials.js';
import type { AuthMetrics } from './metrics.js';

/** What GET /api/v1/status/config reports under `auth`. No secret and no digest of one. */
export interface AuthStatus {
  readonly loadedAt: Date;
  readonly files: readonly string[];
  readonly tenants: readonly string[];
  readonly credentials: number;
  readonly lastError: { readonly message: string; readonly at: Date } | undefined;
}

export interface CredentialStoreOptions {
  readonly metrics?: AuthMetrics;
  readonly logger?: Logger;
}

/**
 * The credentials in force, reloaded from `--auth.credentials-file` on demand and when the files
 * change. A reload that fails validation keeps the running credentials and records why.
 */
export class CredentialStore {
  #credentials: Credentials;
  #status: AuthStatus;
  #watch: ConfigWatch | undefined;

  /** Loads the credentials; throws a ConfigError when they are invalid. */
  constructor(
    readonly path: string,
    private readonly opts: CredentialStoreOptions = {},
  ) {
    this.#credentials = loadCredentials(path);
    this.#status = statusOf(this.#credentials, undefined);
    opts.metrics?.reload(true);
  }

  get credentials(): Credentials {
    return this.#credentials;
  }

  get status(): AuthStatus {
    return this.#status;
  }

  /** Reloads; never throws. */
  reload(): AuthStatus {
    try {
      const next = loadCredentials(this.path);
      if (next.fingerprint !== this.#credentials.fingerprint) {
        this.opts.logger?.info(
          { path: this.path, credentials: next.entries.length, tenants: next.tenants },
          'credentials loaded',
        );
      }
      // A request reads the credentials once, synchronously, so it sees one version or the other.
      this.#credentials = next;
      this.#status = statusOf(next, undefined);
      this.opts.metrics?.reload(true);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.opts.logger?.error(
        { path: this.path },
        `credentials rejected, keeping the previous ones: ${message}`,
      );
      this.#status = { ...this.#status, lastError: { message, at: new Date() } };
      this.opts.metrics?.reload(false);
    }
    return this.#status;
  }

  /** Reloads whenever the files change (the kubelet's `..data` swap included) until closed. */
  watch(opts: WatchOptions = {}): void {
    this.#watch ??= watchConfig(
      this.path,
      () => {
        this.reload();
      },
      opts,
    );
  }

  close(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }
}

function statusOf(c: Credentials, lastError: AuthStatus['lastError']): AuthStatus {
  return {
    loadedAt: new Date(),
    files: c.files,
    tenants: c.tenants,
    credentials: c.entries.length,
    lastError,
  };
}
