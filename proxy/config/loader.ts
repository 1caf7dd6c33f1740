// A configuration read and validated, ready to compile: on the event loop at startup, and in a
// child process on reload, where a large configuration's parsing and validation (seconds for
// thousands of policies) would otherwise stall every request in flight.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, type LoadedConfig, type Problem } from '../../policy/load.js';
import type { ValidatedPolicy, ValidatedUsage } from '../../policy/validate.js';
import { readConfiguration } from './configuration.js';

export interface ValidatedConfig {
  readonly config: LoadedConfig;
  readonly policies: readonly ValidatedPolicy[];
  readonly usage: ValidatedUsage;
}

/**
 * Reads and validates `--config PATH`; throws a ConfigError listing every problem of every file,
 * in reading order (see configuration.ts).
 */
export function loadValidated(path: string | undefined): ValidatedConfig {
  return readConfiguration(path);
}

/**
 * What the child sends: the documents without their `locate` functions, which only validation
 * uses and which cannot cross a process boundary.
 */
export function transferable(v: ValidatedConfig): ValidatedConfig {
  const strip = <T extends { locate?: unknown }>(docs: readonly T[]) =>
    docs.map(({ locate: _locate, ...rest }) => rest) as unknown as T[];
  return { ...v, config: { ...v.config, policies: strip(v.config.policies), usage: strip(v.config.usage) } };
}

/**
 * loadValidated in a child process. Rejects with a ConfigError carrying the message loadValidated
 * would throw. The result is deeply frozen again, as validation leaves it.
 */
export function loadValidatedInChild(path: string | undefined): Promise<ValidatedConfig> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./load-worker.js', import.meta.url)), [path ?? ''], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    let settled = false;
    child.once(
      'message',
      (m: { ok: true; value: ValidatedConfig } | { ok: false; message: string; problems?: Problem[] }) => {
        settled = true;
        if (m.ok) resolve(deepFreeze(m.value));
        else reject(new ConfigError(m.problems ?? m.message));
      },
    );
    child.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    child.once('exit', (code, signal) => {
      if (!settled) {
        const why = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
        reject(new Error(`the configuration loader ${why}: ${stderr.trim().slice(0, 500)}`));
      }
      settled = true;
    });
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
