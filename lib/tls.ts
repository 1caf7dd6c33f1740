// The listener's certificate and key, from PEM files (a mounted kubernetes.io/tls Secret) and
// re-read when they change, so a rotated certificate (cert-manager renews well before expiry)
// takes effect without a restart. A pair that does not load (a half-written rotation, a key that
// does not match) keeps the running one in force; new connections get the new pair, open ones keep
// theirs.

import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { type ConfigWatch, watchConfig } from './watch.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsPair {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Reads and checks the pair: throws with the file at fault when it is not a usable pair. */
export function loadTlsPair(files: TlsFiles): TlsPair {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(files.certFile);
  } catch (err) {
    throw new Error(`--tls.cert-file ${files.certFile}: ${(err as Error).message}`);
  }
  try {
    key = readFileSync(files.keyFile);
  } catch (err) {
    throw new Error(`--tls.key-file ${files.keyFile}: ${(err as Error).message}`);
  }
  try {
    // Fails when either is not PEM or the key does not belong to the certificate.
    createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(
      `--tls.cert-file/--tls.key-file: not a usable certificate and key: ${(err as Error).message}`,
    );
  }
  return { cert, key };
}

/**
 * Calls `apply` with each new usable pair after either file changes, and `onError` when a changed
 * pair does not load (the caller keeps the running one).
 */
export function watchTlsPair(
  files: TlsFiles,
  apply: (pair: TlsPair) => void,
  onError: (err: unknown) => void,
  pollMs?: number,
): ConfigWatch {
  const reload = () => {
    try {
      apply(loadTlsPair(files));
    } catch (err) {
      onError(err);
    }
  };
  const opts = pollMs === undefined ? { onError } : { onError, pollMs };
  const watches = [watchConfig(files.certFile, reload, opts)];
  if (files.keyFile !== files.certFile) watches.push(watchConfig(files.keyFile, reload, opts));
  return {
    close() {
      for (const w of watches) w.close();
    },
  };
}
