// Reads `--auth.credentials-file PATH`: a YAML file, or a directory of them (a mounted Secret),
// each holding a list of credentials that map to a tenant:
//
//   - tenant: team-a
//     bearerToken: 3q2+7w...                 # or bearerTokenFile: team-a.token
//   - tenant: team-b
//     basicAuth: { username: b, passwordFile: team-b.password }
//     allowedPaths: [/api/v1/write]          # default: /api/v1/write and /metrics/job/*
//   - tenant: ops
//     bearerTokenFile: ops.token
//     allowedPaths: []                       # writes nothing
//     roles: [admin]                         # status, statistics, reload, pages; implies metrics
//
// Relative token and password files are resolved against the directory of the file naming them,
// so the keys of one Secret can refer to each other. Secrets are kept only as sha256 digests, and
// no error message ever quotes one.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { isMap, isScalar, isSeq, type Node, parseDocument } from 'yaml';
import { ConfigError, listConfigFiles } from '../../policy/load.js';

/** The ingest paths a credential may push to when its entry does not say. */
export const DEFAULT_ALLOWED_PATHS: readonly string[] = Object.freeze(['/api/v1/write', '/metrics/job/*']);

/** One credential, ready to verify against: secrets as sha256 digests only. */
export interface Credential {
  readonly tenant: string;
  /** `file:line` of the entry, for messages. */
  readonly source: string;
  readonly bearer: Buffer | undefined;
  readonly basic: { readonly username: Buffer; readonly password: Buffer } | undefined;
  /** Exact ingest paths, or prefixes written as `/prefix/*`; `/write` is normalised to `/api/v1/write`. */
  readonly allowedPaths: readonly string[];
  /** What the credential may do beyond ingest; `admin` implies `metrics`. */
  readonly roles: ReadonlySet<Role>;
}

/**
 * `admin`: the status, statistics and reload endpoints and the web pages. `metrics`: the proxy's
 * own /metrics when `--metrics.auth` protects it (a scraper's credential).
 */
export type Role = 'admin' | 'metrics';
const ROLES: ReadonlySet<string> = new Set<Role>(['admin', 'metrics']);

/** A credentials version. */
export interface Credentials {
  readonly entries: readonly Credential[];
  /** The YAML files read; token and password files are not listed. */
  readonly files: readonly string[];
  /** The distinct tenants, sorted. */
  readonly tenants: readonly string[];
  /** True when some entry has basicAuth, so a 401 offers the Basic scheme too. */
  readonly basic: boolean;
  /**
   * sha256 over every file read, token files included, to tell whether a reload changed anything.
   * It is a digest of secrets: never report or log it.
   */
  readonly fingerprint: string;
}

/** sha256 of a secret: what is stored and what a presented secret is compared with. */
export function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

// RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
export const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

// Tenant IDs as Grafana Mimir and Cortex accept them in X-Scope-OrgID ("About tenant IDs"): at
// most 150 characters of alphanumerics and !-_.*'(), and neither "." nor "..".
const TENANT = /^[A-Za-z0-9!\-_.*'()]{1,150}$/;

const ENTRY_KEYS = new Set([
  'tenant',
  'bearerToken',
  'bearerTokenFile',
  'basicAuth',
  'allowedPaths',
  'roles',
]);
const BASIC_KEYS = new Set(['username', 'password', 'passwordFile']);

/** Reads a file for a credential; tests pass their own. */
export type ReadSecret = (path: string) => string;

const readSecretFile: ReadSecret = (path) => readFileSync(path, 'utf8');

/**
 * Loads every credential under `path` and validates them completely. Throws one ConfigError that
 * lists every problem, one per line, as `file:line: [index].field: reason`.
 */
export function loadCredentials(path: string, read: ReadSecret = readSecretFile): Credentials {
  // As for --config: in a mounted volume the kubelet's `..data` entries start with a dot.
  const files = listConfigFiles(path, 'credentials');
  const hash = createHash('sha256');
  const recordingRead: ReadSecret = (p) => {
    const text = read(p);
    hash.update(`${p}\0${text}\0`);
    return text;
  };
  const problems: string[] = [];
  const entries: Credential[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = recordingRead(file);
    } catch (err) {
      problems.push(`${file}: ${(err as Error).message}`);
      continue;
    }
    const r = parseCredentialsFile(file, text, recordingRead);
    problems.push(...r.problems);
    entries.push(...r.entries);
  }
  problems.push(...crossChecks(entries));
  if (problems.length === 0 && entries.length === 0) {
    problems.push(`${path}: no credentials; every ingest request would be refused`);
  }
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return Object.freeze({
    entries: Object.freeze(entries),
    files: Object.freeze(files),
    tenants: Object.freeze([...new Set(entries.map((e) => e.tenant))].sort()),
    basic: entries.some((e) => e.basic !== undefined),
    fingerprint: hash.digest('hex'),
  });
}

/**
 * Parses one credentials file. Problems are returned, not thrown, so that every file's problems
 * are reported at once; `read` reads the token and password files it refers to.
 */
export function parseCredentialsFile(
  file: string,
  text: string,
  read: ReadSecret,
): { entries: Credential[]; problems: string[] } {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const line = first.linePos?.[0].line;
    const where = line === undefined ? file : `${file}:${line}`;
    return { entries: [], problems: [`${where}: ${first.message.split('\n')[0]}`] };
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return { entries: [], problems: [] };
  if (!isSeq(root)) {
    return {
      entries: [],
      problems: [`${file}:${lineOf(text, root)}: expected a list of credentials`],
    };
  }
  const entries: Credential[] = [];
  const problems: string[] = [];
  root.items.forEach((item, i) => {
    const where = `${file}:${lineOf(text, item as Node)}`;
    const r = parseEntry(item as Node, i, { file, text, where, read });
    if (Array.isArray(r)) problems.push(...r);
    else entries.push(r);
  });
  return { entries, problems };
}

interface EntryContext {
  readonly file: string;
  readonly text: string;
  /** `file:line` of the entry. */
  readonly where: string;
  readonly read: ReadSecret;
}

function parseEntry(node: Node, i: number, ctx: EntryContext): Credential | string[] {
  const problems: string[] = [];
  if (!isMap(node)) return [`${ctx.where}: [${i}]: expected a mapping with a tenant and a credential`];
  const at = (key: string) => {
    const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
    return `${ctx.file}:${lineOf(ctx.text, (pair?.key as Node | undefined) ?? node)}: [${i}].${key}`;
  };
  const value = node.toJSON() as Record<string, unknown>;
  for (const key of Object.keys(value)) {
    if (!ENTRY_KEYS.has(key)) problems.push(`${at(key)}: unknown field`);
  }

  const tenant = value.tenant;
  if (typeof tenant !== 'string' || tenant === '') {
    problems.push(`${at('tenant')}: required, a non-empty string`);
  } else if (!TENANT.test(tenant) || tenant === '.' || tenant === '..') {
    problems.push(
      `${at('tenant')}: "${tenant.slice(0, 160)}" is not a tenant ID: at most 150 of A-Z a-z 0-9 ! - _ . * ' ( ), and not "." or ".."`,
    );
  }

  let bearer: Buffer | undefined;
  if (value.bearerToken !== undefined && value.bearerTokenFile !== undefined) {
    problems.push(`${at('bearerTokenFile')}: give bearerToken or bearerTokenFile, not both`);
  } else if (value.bearerToken !== undefined || value.bearerTokenFile !== undefined) {
    const token = secret(value, 'bearerToken', 'bearerTokenFile', at, ctx, problems);
    if (token !== undefined) {
      if (B64TOKEN.test(token)) bearer = digest(token);
      else {
        const field = value.bearerToken !== undefined ? 'bearerToken' : 'bearerTokenFile';
        problems.push(`${at(field)}: the token must be a b64token (RFC 6750 section 2.1)`);
      }
    }
  }

  let basic: Credential['basic'];
  if (value.basicAuth !== undefined) {
    const b = value.basicAuth;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) {
      problems.push(`${at('basicAuth')}: expected a mapping with username and password or passwordFile`);
    } else {
      const ba = b as Record<string, unknown>;
      for (const key of Object.keys(ba)) {
        if (!BASIC_KEYS.has(key)) problems.push(`${at('basicAuth')}.${key}: unknown field`);
      }
      const username = ba.username;
      if (typeof username !== 'string' || username === '') {
        problems.push(`${at('basicAuth')}.username: required, a non-empty string`);
      } else if (username.includes(':') || /[\p{Cc}]/u.test(username)) {
        problems.push(
          `${at('basicAuth')}.username: must contain neither ":" nor control characters (RFC 7617 section 2)`,
        );
      }
      let password: string | undefined;
      if (ba.password !== undefined && ba.passwordFile !== undefined) {
        problems.push(`${at('basicAuth')}.passwordFile: give password or passwordFile, not both`);
      } else if (ba.password === undefined && ba.passwordFile === undefined) {
        problems.push(`${at('basicAuth')}: password or passwordFile is required`);
      } else {
        const nested = (key: string) => `${at('basicAuth')}.${key}`;
        password = secret(ba, 'password', 'passwordFile', nested, ctx, problems);
        if (password !== undefined && /[\p{Cc}]/u.test(password)) {
          problems.push(
            `${at('basicAuth')}.password: must not contain control characters (RFC 7617 section 2)`,
          );
          password = undefined;
        }
      }
      if (typeof username === 'string' && password !== undefined) {
        basic = Object.freeze({ username: digest(username), password: digest(password) });
      }
    }
  }
  if (
    value.bearerToken === undefined &&
    value.bearerTokenFile === undefined &&
    value.basicAuth === undefined
  ) {
    problems.push(`${ctx.where}: [${i}]: needs bearerToken, bearerTokenFile or basicAuth`);
  }

  let allowedPaths: readonly string[] = DEFAULT_ALLOWED_PATHS;
  if (value.allowedPaths !== undefined) {
    const paths = value.allowedPaths;
    // An empty list is a credential that writes nothing: one for the admin API or a scraper.
    if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string')) {
      problems.push(`${at('allowedPaths')}: expected a list of paths`);
    } else {
      const out: string[] = [];
      for (const p of paths as string[]) {
        const normalised = normalisePattern(p);
        if (normalised === undefined) {
          problems.push(
            `${at('allowedPaths')}: "${p.slice(0, 200)}" is not an ingest path: use /api/v1/write, /write, /metrics/job/* or a path under /metrics/job/ (a trailing /* matches a prefix)`,
          );
        } else out.push(normalised);
      }
      allowedPaths = Object.freeze(out);
    }
  }

  const roles = new Set<Role>();
  if (value.roles !== undefined) {
    const list = value.roles;
    if (!Array.isArray(list) || list.some((r) => typeof r !== 'string' || !ROLES.has(r))) {
      problems.push(`${at('roles')}: expected a list of admin and metrics`);
    } else {
      for (const r of list as Role[]) roles.add(r);
      if (roles.has('admin')) roles.add('metrics');
    }
  }

  if (problems.length > 0) return problems;
  return Object.freeze({
    tenant: tenant as string,
    source: ctx.where,
    bearer,
    basic,
    allowedPaths,
    roles,
  });
}

/**
 * The secret of an entry: inline under `inline`, or read from the file under `fileKey`. A file's
 * trailing newline is dropped (`kubectl create secret --from-file` keeps whatever the file had).
 */
function secret(
  obj: Record<string, unknown>,
  inline: string,
  fileKey: string,
  at: (key: string) => string,
  ctx: EntryContext,
  problems: string[],
): string | undefined {
  const direct = obj[inline];
  if (direct !== undefined) {
    if (typeof direct !== 'string' || direct === '') {
      problems.push(`${at(inline)}: must be a non-empty string`);
      return undefined;
    }
    return direct;
  }
  const ref = obj[fileKey];
  if (typeof ref !== 'string' || ref === '') {
    problems.push(`${at(fileKey)}: must be a non-empty path`);
    return undefined;
  }
  const path = isAbsolute(ref) ? ref : join(dirname(ctx.file), ref);
  let text: string;
  try {
    text = ctx.read(path);
  } catch (err) {
    problems.push(`${at(fileKey)}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return undefined;
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') {
    problems.push(`${at(fileKey)}: ${path} is empty`);
    return undefined;
  }
  return value;
}

/** Problems across entries: a secret that two entries share would make the tenant ambiguous. */
function crossChecks(entries: readonly Credential[]): string[] {
  const problems: string[] = [];
  const bearers = new Map<string, string>();
  const users = new Map<string, string>();
  for (const e of entries) {
    if (e.bearer !== undefined) {
      const key = e.bearer.toString('hex');
      const first = bearers.get(key);
      if (first !== undefined) problems.push(`${e.source}: the same bearer token is also given at ${first}`);
      else bearers.set(key, e.source);
    }
    if (e.basic !== undefined) {
      const key = e.basic.username.toString('hex');
      const first = users.get(key);
      if (first !== undefined)
        problems.push(`${e.source}: the same basicAuth username is also given at ${first}`);
      else users.set(key, e.source);
    }
  }
  return problems;
}

/**
 * The ingest path a request is for, normalised, or undefined when the path is not one that
 * carries data: remote-write (`/api/v1/write` and its alias `/write`) and the Pushgateway push
 * paths (`/metrics/job/<job>{/<label>/<value>}`).
 */
export function ingestPath(path: string): string | undefined {
  if (path === '/api/v1/write' || path === '/write') return '/api/v1/write';
  if (path.startsWith('/metrics/job/')) return path;
  return undefined;
}

function normalisePattern(p: string): string | undefined {
  if (/[\s?#]/.test(p)) return undefined;
  if (p.endsWith('/*')) {
    const prefix = p.slice(0, -1);
    if (prefix.slice(0, -1).includes('*')) return undefined;
    return prefix.startsWith('/metrics/job/') ? p : undefined;
  }
  if (p.includes('*')) return undefined;
  return ingestPath(p);
}

/** Whether a credential may push to `path`, an ingest path as `ingestPath` returns it. */
export function pathAllowed(credential: Credential, path: string): boolean {
  for (const p of credential.allowedPaths) {
    // Every push, also one whose job is spelled in base64 (`/metrics/job@base64/...`).
    if (p === '/metrics/job/*' && path.startsWith('/metrics/job@base64/')) return true;
    if (p.endsWith('/*') ? path.startsWith(p.slice(0, -1)) : path === p) return true;
  }
  return false;
}

function lineOf(text: string, node: Node): number {
  const offset = node.range?.[0] ?? 0;
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
