import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

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
}

/** One MetricUsage document as read from disk, before it is validated. */
export interface UsageDocument {
  readonly name: string;
  readonly source: string;
  readonly spec: unknown;
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

export class ConfigError extends Error {
  override name = 'ConfigError';
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
  if (path === undefined) return freeze([], [], []);
  // A mounted volume, one ConfigMap or several projected into one directory (the operator's
  // shards), changes by one rename of `..data` over a new timestamped directory. Every file is
  // read from the version `..data` named when the reading began, and read again when it moved
  // meanwhile, so a configuration is never a mix of two versions and has one hash. Only the
  // reading is repeated, which takes milliseconds; parsing starts once the texts are one version.
  for (let attempt = 1; ; attempt++) {
    const version = dataVersion(path);
    let texts: { file: string; text: string }[] | undefined;
    try {
      texts = readVersion(path, version);
    } catch (err) {
      // A version that stayed put and fails is a real error; one that moved is read again.
      if (dataVersion(path) === version || attempt >= MAX_READ_ATTEMPTS) throw err;
    }
    if (texts !== undefined && dataVersion(path) === version) return parseTexts(texts);
    if (attempt >= MAX_READ_ATTEMPTS)
      throw new ConfigError(`cannot read config ${path}: it changed ${attempt} times while it was read`);
  }
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

function readVersion(path: string, version: string | undefined): { file: string; text: string }[] {
  return listConfigFiles(path, 'config').map((file) => {
    // The kubelet's key files are symlinks through ..data: read the version's own file instead.
    const pinned = version === undefined ? undefined : join(path, version, basename(file));
    return { file, text: readFileSync(pinned !== undefined && existsSync(pinned) ? pinned : file, 'utf8') };
  });
}

function parseTexts(texts: readonly { file: string; text: string }[]): LoadedConfig {
  const hash = createHash('sha256');
  const policies: PolicyDocument[] = [];
  const usage: UsageDocument[] = [];
  for (const { file, text } of texts) {
    // Hashed by the visible path, which the operator's expected hash uses too.
    hash.update(`${file}\0${text}\0`);
    const docs = parseConfigFile(file, text);
    policies.push(...docs.policies);
    usage.push(...docs.usage);
  }
  return freeze(
    policies,
    usage,
    texts.map((t) => t.file),
    hash.digest('hex'),
  );
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
 * in errors.
 */
export function parseConfigFile(
  file: string,
  text: string,
  usage = true,
): { policies: PolicyDocument[]; usage: UsageDocument[] } {
  const out: PolicyDocument[] = [];
  const usageDocs: UsageDocument[] = [];
  for (const doc of parseAllDocuments(text, { prettyErrors: true })) {
    const line = lineOf(text, doc.range[0]);
    if (doc.errors.length > 0) {
      throw new ConfigError(`${file}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const where = `${file}:${line}`;
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(
        `${where}: expected a ${KIND} object, got ${Array.isArray(value) ? 'a list' : typeof value}`,
      );
    }
    const obj = value as Record<string, unknown>;
    if (usage && obj.apiVersion === API_VERSION && obj.kind === USAGE_KIND) {
      const metadata = (obj.metadata ?? {}) as Record<string, unknown>;
      usageDocs.push({
        name: typeof metadata.name === 'string' ? metadata.name : '',
        source: where,
        spec: obj.spec ?? {},
      });
      continue;
    }
    if (obj.apiVersion !== API_VERSION || obj.kind !== KIND) {
      throw new ConfigError(
        `${where}: expected apiVersion ${API_VERSION} and kind ${KIND}${usage ? ` or ${USAGE_KIND}` : ''}, got ${String(obj.apiVersion)} ${String(obj.kind)}`,
      );
    }
    const metadata = (obj.metadata ?? {}) as Record<string, unknown>;
    if (typeof metadata.name !== 'string' || metadata.name === '') {
      throw new ConfigError(`${where}: metadata.name is required`);
    }
    out.push({
      name: metadata.name,
      namespace: typeof metadata.namespace === 'string' ? metadata.namespace : undefined,
      source: where,
      spec: obj.spec ?? {},
    });
  }
  return { policies: out, usage: usageDocs };
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
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
