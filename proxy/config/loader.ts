// A configuration read and validated, ready to compile: on the event loop at startup, and in a
// child process on reload, where a large configuration's parsing and validation (seconds for
// thousands of policies) would otherwise stall every request in flight.
//
// ConfigLoader keeps each file's check between reloads, by its text: a reload reads every file
// (milliseconds) but parses and validates only the files whose text changed, so an edit that
// rewrites one of the operator's shards reloads that shard, and the configuration is still one
// version with one hash over all the files.

import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ConfigError, type ConfigText, type LoadedConfig, readConfigTexts } from '../../policy/load.js';
import type { ValidatedPolicy, ValidatedUsage } from '../../policy/validate.js';
import { checkFile, combineFiles, type FileCheck } from './configuration.js';

export interface ValidatedConfig {
  readonly config: LoadedConfig;
  readonly policies: readonly ValidatedPolicy[];
  readonly usage: ValidatedUsage;
  /**
   * The sha256 of each file's text, by the path it was read at: the operator tells from them which
   * of its shards a proxy runs, when the set as a whole is one it never rendered as such.
   */
  readonly fileHashes: Readonly<Record<string, string>>;
}

/** What a reload did: the files parsed again because their text changed, of all the files. */
export interface LoadStats {
  readonly files: number;
  readonly parsed: number;
}

/** What a reload sends the child: the changed files' texts (an unreadable file never goes). */
export interface LoadRequest {
  readonly texts: readonly { readonly file: string; readonly text: string }[];
}

/** What the child answers: one check per file sent, in order. */
export type LoadAnswer = { ok: true; checks: FileCheck[] } | { ok: false; message: string };

/**
 * Loads `--config PATH` again and again, reusing the checks of files whose text is as before. One
 * per proxy process; `load` calls must not overlap (the proxy runs its reloads one after another).
 */
export class ConfigLoader {
  readonly #path: string | undefined;
  /** Each file's last check, by path, with the sha256 of the text it was made from. */
  #checks = new Map<string, { readonly digest: string; readonly check: FileCheck }>();
  #stats: LoadStats = { files: 0, parsed: 0 };

  constructor(path: string | undefined) {
    this.#path = path;
  }

  /** What the last load parsed. */
  get stats(): LoadStats {
    return this.#stats;
  }

  /** Reads and validates on this thread (the proxy's start); throws a ConfigError listing every problem. */
  loadNow(): ValidatedConfig {
    return this.#combine(this.#texts(), (changed) => changed.map((t) => checkFile(t)));
  }

  /**
   * As loadNow, with the changed files parsed and validated in a child process. Rejects with a
   * ConfigError carrying every problem, or an Error when the child fails.
   */
  async load(): Promise<ValidatedConfig> {
    const texts = this.#texts();
    const changed = this.#changed(texts);
    const checks = changed.length === 0 ? [] : await checkInChild(changed);
    return this.#combine(texts, () => checks);
  }

  #texts(): ConfigText[] {
    return this.#path === undefined ? [] : readConfigTexts(this.#path);
  }

  /** The readable files whose text has no check kept. */
  #changed(texts: readonly ConfigText[]): { file: string; text: string }[] {
    const out: { file: string; text: string }[] = [];
    for (const t of texts)
      if (typeof t.text === 'string' && this.#checks.get(t.file)?.digest !== digest(t.text))
        out.push({ file: t.file, text: t.text });
    return out;
  }

  #combine(
    texts: readonly ConfigText[],
    check: (changed: { file: string; text: string }[]) => readonly FileCheck[],
  ): ValidatedConfig {
    const changed = this.#changed(texts);
    const fresh = check(changed);
    if (fresh.length !== changed.length) throw new Error('the configuration loader answered for other files');
    const next = new Map<string, { digest: string; check: FileCheck }>();
    for (const [i, t] of changed.entries()) next.set(t.file, { digest: digest(t.text), check: fresh[i]! });
    const checks = texts.map((t) => {
      // An unreadable file is checked here, and never kept: its problem is only "cannot read".
      if (typeof t.text !== 'string') return checkFile(t);
      const kept = next.get(t.file) ?? this.#checks.get(t.file)!;
      next.set(t.file, kept);
      return kept.check;
    });
    // Files gone from the directory are forgotten; a rejected version's checks are kept, since
    // the files are as they are whether or not the version as a whole is valid.
    this.#checks = next;
    this.#stats = { files: texts.length, parsed: changed.length };
    const combined = combineFiles(texts, checks);
    if (combined.problems.length > 0) throw new ConfigError(combined.problems);
    const fileHashes: Record<string, string> = {};
    for (const t of texts) fileHashes[t.file] = next.get(t.file)!.digest;
    return { ...combined, fileHashes: Object.freeze(fileHashes) };
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * What crosses a process boundary (to the proxy's workers): the documents without their `locate`
 * functions, which only validation uses. ConfigLoader's documents have none already; this keeps a
 * configuration from elsewhere safe to send.
 */
export function transferable(v: ValidatedConfig): ValidatedConfig {
  const strip = <T extends { locate?: unknown }>(docs: readonly T[]) =>
    docs.map(({ locate: _locate, ...rest }) => rest) as unknown as T[];
  return { ...v, config: { ...v.config, policies: strip(v.config.policies), usage: strip(v.config.usage) } };
}

/** Reads and validates `--config PATH` once, on this thread. */
export function loadValidated(path: string | undefined): ValidatedConfig {
  return new ConfigLoader(path).loadNow();
}

/** checkFile for each text, in a child process; the checks come back deeply frozen, as validation leaves them. */
function checkInChild(texts: LoadRequest['texts']): Promise<FileCheck[]> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./load-worker.js', import.meta.url)), [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    let settled = false;
    child.once('message', (m: LoadAnswer) => {
      settled = true;
      if (m.ok) resolve(deepFreeze(m.checks));
      else reject(new Error(`the configuration loader failed: ${m.message}`));
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
    child.send({ texts } satisfies LoadRequest);
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
