// How many proxy replicas share the limits (README "Limits across replicas"): while the shared
// store does not answer, each replica enforces limit / replicas on its own. The operator counts
// the proxies it discovers and renders that count as the key REPLICAS_KEY of the instance's
// ConfigMap (operator/render/configmap.ts), which the proxies mount at `--config`; the proxy reads
// it on start and on every change of the directory, as it reads the policies. Without the operator
// (no such file) `--limits.replicas` stands in.
//
// The key is not a `.yaml`/`.json` file on purpose: it is not a policy document and is not part
// of the configuration's hash, so a scale-up changes what the proxies report as loaded in nothing,
// and no policy's Ready condition waits for the kubelet to project the new count.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The ConfigMap key, and so the file in the `--config` directory, that holds the replica count. */
export const REPLICAS_KEY = 'proxy-replicas';

/** The count as the operator writes it: a positive integer and a newline. */
export function renderReplicas(count: number): string {
  if (!(Number.isInteger(count) && count >= 1))
    throw new RangeError(`replicas: ${count} must be a positive integer`);
  return `${count}\n`;
}

/** The count in a file's text, or a TypeError saying what is wrong with it. */
export function parseReplicas(text: string): number {
  const t = text.trim();
  if (!/^[1-9]\d{0,5}$/.test(t)) throw new TypeError(`"${t.slice(0, 40)}" is not a positive integer`);
  return Number(t);
}

/** What `--config` says about the replica count. */
export type ReplicasRead =
  | { readonly kind: 'absent' }
  | { readonly kind: 'count'; readonly count: number }
  | { readonly kind: 'invalid'; readonly file: string; readonly message: string };

/**
 * Reads REPLICAS_KEY from the `--config` directory. `absent` when `--config` is not a directory or
 * holds no such file (no operator): then `--limits.replicas` applies.
 */
export function readReplicas(configPath: string | undefined): ReplicasRead {
  if (configPath === undefined) return { kind: 'absent' };
  const file = join(configPath, REPLICAS_KEY);
  let text: string;
  try {
    if (!statSync(configPath).isDirectory()) return { kind: 'absent' };
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    return { kind: 'invalid', file, message: (err as Error).message };
  }
  try {
    return { kind: 'count', count: parseReplicas(text) };
  } catch (err) {
    return { kind: 'invalid', file, message: (err as Error).message };
  }
}
