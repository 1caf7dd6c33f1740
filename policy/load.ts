import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseAllDocuments } from 'yaml';

export const API_VERSION = 'cardinal.dev/v1alpha1';
export const KIND = 'MetricPolicy';
/** What the cluster reads (spec.unused): rendered by the operator as usage.yaml, or written by hand. */
export const USAGE_KIND = 'MetricUsage';

/** One MetricPolicy document as read from disk, before its spec is validated. */
export interface PolicyDocument {
  readonly name: string;
  readonly namespace: string | undefined;
  /** Where it came from, for error messages: `file:line`. */
  readonly source: string;
  readonly spec: unknown;
  /** Where a field of the document is written, `file:line:column`; see Locate. */
  readonly locate?: Locate | undefined;
}

/** One MetricUsage document as read from disk, before it is validated. */
export interface UsageDocument {
  readonly name: string;
  readonly source: string;
  readonly spec: unknown;
  readonly locate?: Locate | undefined;
}

/**
 * Where the value at `path` (from the document's root: `['spec', 'drop', 1]`) is written, as
 * `file:line:column`, from the YAML parser's positions. With `key`, the position of the field's
 * name (for an unknown field). A path that goes deeper than the document gives the deepest node
 * that exists on it (a required field that is missing points at the object that lacks it).
 */
export type Locate = (path: readonly (string | number)[], key?: boolean) => string;

/** One problem of a configuration: where, `file:line:column` (or `file:line`), and what. */
export interface Problem {
  readonly where: string;
  readonly message: string;
}

/** A configuration version: every policy document, and a hash that names this version. */
export interface LoadedConfig {
  readonly policies: readonly PolicyDocument[];
  /** MetricUsage documents; several are merged (see proxy/config/usage.ts). */
  readonly usage: readonly UsageDocument[];
  /** sha256 of the files' names and contents; equal hashes mean equal configurations. */
  readonly hash: string;
  readonly files: readonly string[];
}

/** A configuration version as read, with the problems of the files or documents that did not read. */
export interface ReadConfig extends LoadedConfig {
  readonly problems: readonly Problem[];
}

/**
 * A configuration that cannot be used. `problems` lists every problem found, in file order; the
 * message is them one per line as `where: message`.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly Problem[];
  constructor(message: string | readonly Problem[]) {
    super(typeof message === 'string' ? message : formatProblems(message));
    this.problems = typeof message === 'string' ? [{ where: '', message }] : message;
  }
}

export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => (p.where === '' ? p.message : `${p.where}: ${p.message}`)).join('\n');
}

/**
 * Reads `--config PATH`: a YAML file, or a directory of them (a mounted ConfigMap), holding
 * MetricPolicy documents exactly as a user would `kubectl apply` them, and MetricUsage documents
 * saying which metrics are read (spec.unused). In a directory, files whose
 * name starts with a dot are skipped: that is where the kubelet keeps the `..data` symlink and the
 * timestamped folder it points to, and the visible names are symlinks through `..data`.
 * No path means no policies. A path that does not exist, or a document that is not a MetricPolicy,
 * is an error naming the file and line.
 */
export function loadConfig(path: string | undefined): LoadedConfig {
  const read = readConfig(path);
  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return read;
}

/**
 * As loadConfig, but a file that does not parse, or a document that is not a MetricPolicy or
 * MetricUsage, is a problem in the result and every other file and document is still read, so
 * that one broken file does not hide the others' problems. Throws only when PATH cannot be read.
 */
export function readConfig(path: string | undefined): ReadConfig {
  if (path === undefined) return { ...freeze([], [], []), problems: Object.freeze([]) };
  return parseTexts(readConfigTexts(path));
}

/** One file of a configuration version as read: its text, or why it could not be read. */
export interface ConfigText {
  readonly file: string;
  readonly text: string | Error;
}

/**
 * The texts of every file of `--config PATH`, all of one version. A mounted volume, one ConfigMap
 * or several projected into one directory (the operator's shards), changes by one rename of
 * `..data` over a new timestamped directory. Every file is read from the version `..data` named
 * when the reading began, and read again when it moved meanwhile, so a configuration is never a
 * mix of two versions and has one hash. Only the reading is repeated, which takes milliseconds;
 * parsing starts once the texts are one version.
 */
export function readConfigTexts(path: string): ConfigText[] {
  for (let attempt = 1; ; attempt++) {
    const version = dataVersion(path);
    const texts = readVersion(path, version);
    if (dataVersion(path) === version) return texts;
    if (attempt >= MAX_READ_ATTEMPTS)
      throw new ConfigError(`cannot read config ${path}: it changed ${attempt} times while it was read`);
  }
}

/** The hash of a configuration version: sha256 over each readable file's visible path and text. */
export function configTextsHash(texts: readonly ConfigText[]): string {
  const hash = createHash('sha256');
  // Hashed by the visible path, which the operator's expected hash uses too.
  for (const { file, text } of texts) if (typeof text === 'string') hash.update(`${file}\0${text}\0`);
  return hash.digest('hex');
}

const MAX_READ_ATTEMPTS = 10;

/** The timestamped directory `..data` points to in a mounted volume; undefined elsewhere. */
function dataVersion(path: string): string | undefined {
  try {
    return readlinkSync(join(path, '..data'));
  } catch {
    return undefined;
  }
}

/** Each file's text, or why it could not be read. */
function readVersion(path: string, version: string | undefined): ConfigText[] {
  return listConfigFiles(path, 'config').map((file) => {
    // The kubelet's key files are symlinks through ..data: read the version's own file instead.
    const pinned = version === undefined ? undefined : join(path, version, basename(file));
    try {
      return { file, text: readFileSync(pinned !== undefined && existsSync(pinned) ? pinned : file, 'utf8') };
    } catch (err) {
      return { file, text: err as Error };
    }
  });
}

/** Reads one file of a configuration version; a file that could not be read is a problem. */
export function readConfigText(t: ConfigText): ReturnType<typeof readConfigFile> {
  if (t.text instanceof Error)
    return {
      policies: [],
      usage: [],
      problems: [{ where: t.file, message: `cannot read: ${t.text.message}` }],
    };
  return readConfigFile(t.file, t.text);
}

function parseTexts(texts: readonly ConfigText[]): ReadConfig {
  const policies: PolicyDocument[] = [];
  const usage: UsageDocument[] = [];
  const problems: Problem[] = [];
  for (const t of texts) {
    const docs = readConfigText(t);
    policies.push(...docs.policies);
    usage.push(...docs.usage);
    problems.push(...docs.problems);
  }
  const files = texts.map((t) => t.file);
  return { ...freeze(policies, usage, files, configTextsHash(texts)), problems: Object.freeze(problems) };
}

/**
 * The files to read for a `--config`-style PATH: the path itself, or in a directory its `*.yaml`,
 * `*.yml` and `*.json` files in name order. Names starting with a dot are skipped: that is where
 * the kubelet keeps the `..data` symlink and the timestamped folder it points to. `what` names the
 * path in the error.
 */
export function listConfigFiles(path: string, what: string): string[] {
  try {
    return statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => !f.startsWith('.') && /\.(ya?ml|json)$/i.test(f))
          .sort()
          .map((f) => join(path, f))
          .filter((f) => statSync(f).isFile())
      : [path];
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** Parses one file of MetricPolicy documents; `file` names it in errors. */
export function parsePolicyFile(file: string, text: string): PolicyDocument[] {
  return parseConfigFile(file, text, false).policies;
}

/**
 * Parses one file of YAML documents, MetricPolicy and (when `usage`) MetricUsage; `file` names it
 * in errors. Throws one ConfigError listing every problem of the file.
 */
export function parseConfigFile(
  file: string,
  text: string,
  usage = true,
): { policies: PolicyDocument[]; usage: UsageDocument[] } {
  const read = readConfigFile(file, text, usage);
  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return read;
}

/**
 * Parses one file of YAML documents. Each problem is returned with its `file:line:column`; a
 * document with a YAML error is skipped, and the documents around it are still read.
 */
export function readConfigFile(
  file: string,
  text: string,
  usage = true,
): { policies: PolicyDocument[]; usage: UsageDocument[]; problems: Problem[] } {
  const out: PolicyDocument[] = [];
  const usageDocs: UsageDocument[] = [];
  const problems: Problem[] = [];
  const lines = new LineCounter();
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  for (const doc of parseAllDocuments(text, { lineCounter: lines, prettyErrors: false })) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.push({ where: at(e.pos[0]), message: yamlMessage(e.message) });
      continue;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    // The parser counted the lines as it read them; scanning the text again from its start for each
    // document made reading a file quadratic in its number of documents.
    const { line } = lines.linePos(doc.range[0]);
    const where = `${file}:${line}`;
    const locate: Locate = (path, key = false) => {
      const found = findNode(doc.contents, path, key);
      return found === undefined ? where : at(found);
    };
    const problem = (path: readonly (string | number)[], message: string) =>
      problems.push({ where: locate(path), message });
    if (typeof value !== 'object' || Array.isArray(value)) {
      problem([], `expected a ${KIND} object, got ${Array.isArray(value) ? 'a list' : typeof value}`);
      continue;
    }
    const obj = value as Record<string, unknown>;
    if (usage && obj.apiVersion === API_VERSION && obj.kind === USAGE_KIND) {
      const metadata = (obj.metadata ?? {}) as Record<string, unknown>;
      usageDocs.push({
        name: typeof metadata.name === 'string' ? metadata.name : '',
        source: where,
        spec: obj.spec ?? {},
        locate,
      });
      continue;
    }
    if (obj.apiVersion !== API_VERSION || obj.kind !== KIND) {
      problem(
        obj.apiVersion !== API_VERSION ? ['apiVersion'] : ['kind'],
        `expected apiVersion ${API_VERSION} and kind ${KIND}${usage ? ` or ${USAGE_KIND}` : ''}, got ${String(obj.apiVersion)} ${String(obj.kind)}`,
      );
      continue;
    }
    const metadata = (obj.metadata ?? {}) as Record<string, unknown>;
    if (typeof metadata.name !== 'string' || metadata.name === '') {
      problem(['metadata', 'name'], 'metadata.name is required');
      continue;
    }
    out.push({
      name: metadata.name,
      namespace: typeof metadata.namespace === 'string' ? metadata.namespace : undefined,
      source: where,
      spec: obj.spec ?? {},
      locate,
    });
  }
  return { policies: out, usage: usageDocs, problems };
}

/** The parser's message without the position it appends (the problem's `where` has it). */
function yamlMessage(message: string): string {
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
}

/**
 * The offset where the node at `path` starts (with `key`, where its key is written), or of the
 * deepest node on the path that exists; undefined when not even the first step exists.
 */
function findNode(root: Node | null, path: readonly (string | number)[], key: boolean): number | undefined {
  let node: unknown = root;
  let best: number | undefined = root?.range?.[0];
  for (const [i, step] of path.entries()) {
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(step),
      );
      if (pair === undefined) return best;
      const k = pair.key as Node;
      if (last && key) return k.range?.[0] ?? best;
      node = pair.value;
      best = (pair.value as Node | null)?.range?.[0] ?? k.range?.[0] ?? best;
    } else if (isSeq(node) && typeof step === 'number') {
      const item = node.items[step] as Node | undefined;
      if (item === undefined) return best;
      node = item;
      best = item.range?.[0] ?? best;
    } else {
      return best;
    }
  }
  return best;
}

function freeze(
  policies: PolicyDocument[],
  usage: UsageDocument[],
  files: string[],
  hash = createHash('sha256').digest('hex'),
): LoadedConfig {
  return Object.freeze({
    policies: Object.freeze(policies),
    usage: Object.freeze(usage),
    files: Object.freeze(files),
    hash,
  });
}
