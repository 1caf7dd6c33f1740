// A configuration read and validated, ready to compile: on the event loop at startup, and in a
// child process on reload, where a large configuration's parsing and validation (seconds for
// thousands of policies) would otherwise stall every request in flight.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, type LoadedConfig, loadConfig } from './load.js';
import { type ValidatedPolicy, type ValidatedUsage, validatePolicies, validateUsage } from './validate.js';

export interface ValidatedConfig {
  readonly config: LoadedConfig;
  readonly policies: readonly ValidatedPolicy[];
  readonly usage: ValidatedUsage;
}

/** Reads and validates `--config PATH`; throws a ConfigError listing every problem. */
export function loadValidated(path: string | undefined): ValidatedConfig {
  const config = loadConfig(path);
  return { config, policies: validatePolicies(config.policies), usage: validateUsage(config.usage) };
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
    child.once('message', (m: { ok: true; value: ValidatedConfig } | { ok: false; message: string }) => {
      settled = true;
      if (m.ok) resolve(deepFreeze(m.value));
      else reject(new ConfigError(m.message));
    });
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
