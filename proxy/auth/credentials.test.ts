import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { projectConfigMap } from '../../test/framework/kubelet.js';
import { DEFAULT_ALLOWED_PATHS, digest, ingestPath, loadCredentials, pathAllowed } from './credentials.js';
import { CredentialStore } from './store.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'cardinal-auth-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function file(name: string, text: string): string {
  const path = join(root, name);
  writeFileSync(path, text);
  return path;
}

describe('loadCredentials', () => {
  it('reads bearer tokens, token files and basic auth, keeping only digests', () => {
    file('a.token', 'tok-a/file\n');
    file('b.password', 'pw b');
    const path = file(
      'creds.yaml',
      [
        '- tenant: team-a',
        '  bearerToken: s3cr3t-A',
        '- tenant: team-a',
        '  bearerTokenFile: a.token',
        '- tenant: team-b',
        '  basicAuth: { username: bob, passwordFile: b.password }',
        '  allowedPaths: [/write, /metrics/job/*]',
      ].join('\n'),
    );
    const c = loadCredentials(path);
    expect(c.tenants).toEqual(['team-a', 'team-b']);
    expect(c.basic).toBe(true);
    expect(c.files).toEqual([path]);
    const [a, aFile, b] = c.entries;
    expect(a?.bearer?.equals(digest('s3cr3t-A'))).toBe(true);
    expect(aFile?.bearer?.equals(digest('tok-a/file'))).toBe(true);
    expect(b?.basic?.username.equals(digest('bob'))).toBe(true);
    expect(b?.basic?.password.equals(digest('pw b'))).toBe(true);
    expect(a?.allowedPaths).toEqual(DEFAULT_ALLOWED_PATHS);
    expect(b?.allowedPaths).toEqual(['/api/v1/write', '/metrics/job/*']);
    expect([...(a?.roles ?? [])]).toEqual([]);
    expect(a?.source).toBe(`${path}:1`);
    expect(JSON.stringify(c)).not.toContain('s3cr3t-A');
  });

  it('reads roles; admin implies metrics, and an empty allowedPaths writes nothing', () => {
    const path = file(
      'roles.yaml',
      '- { tenant: ops, bearerToken: t1, allowedPaths: [], roles: [admin] }\n- { tenant: s, bearerToken: t2, roles: [metrics] }\n',
    );
    const [ops, scraper] = loadCredentials(path).entries;
    expect([...(ops?.roles ?? [])].sort()).toEqual(['admin', 'metrics']);
    expect(ops?.allowedPaths).toEqual([]);
    expect([...(scraper?.roles ?? [])]).toEqual(['metrics']);
    expect(scraper?.allowedPaths).toEqual(DEFAULT_ALLOWED_PATHS);
  });

  it('reads every YAML file of a mounted Secret, through the kubelet layout', async () => {
    const dir = join(root, 'secret');
    await projectConfigMap(dir, {
      'a.yaml': '- { tenant: a, bearerTokenFile: a.token }\n',
      'b.yml': '- { tenant: b, bearerToken: tb }\n',
      'a.token': 'ta',
    });
    const c = loadCredentials(dir);
    expect(c.tenants).toEqual(['a', 'b']);
    expect(c.files).toEqual([join(dir, 'a.yaml'), join(dir, 'b.yml')]);
  });

  it.each([
    ['tenant: a', ':1: expected a list of credentials'],
    ['- tenant: a', ':1: [0]: needs bearerToken, bearerTokenFile or basicAuth'],
    ['- bearerToken: x', ':1: [0].tenant: required, a non-empty string'],
    ['- { tenant: "a b", bearerToken: x }', ':1: [0].tenant: "a b" is not a tenant ID'],
    ['- { tenant: "..", bearerToken: x }', 'is not a tenant ID'],
    ['- tenant: a\n  bearerToken: x\n  bearer: y', ':3: [0].bearer: unknown field'],
    [
      '- tenant: a\n  bearerToken: x\n  bearerTokenFile: f',
      ':3: [0].bearerTokenFile: give bearerToken or bearerTokenFile',
    ],
    ['- tenant: a\n  bearerToken: "has space"', ':2: [0].bearerToken: the token must be a b64token'],
    ['- tenant: a\n  bearerTokenFile: missing.token', ':2: [0].bearerTokenFile: cannot read'],
    [
      '- tenant: a\n  basicAuth: { username: "a:b", password: p }',
      '[0].basicAuth.username: must contain neither ":"',
    ],
    ['- tenant: a\n  basicAuth: { username: u }', '[0].basicAuth: password or passwordFile is required'],
    ['- tenant: a\n  basicAuth: { username: u, password: p, pw: q }', '[0].basicAuth.pw: unknown field'],
    [
      '- tenant: a\n  bearerToken: x\n  allowedPaths: [/api/v1/query]',
      ':3: [0].allowedPaths: "/api/v1/query" is not an ingest path',
    ],
    ['- tenant: a\n  bearerToken: x\n  allowedPaths: /write', '[0].allowedPaths: expected a list of paths'],
    ['- tenant: a\n  bearerToken: x\n  roles: [root]', ':3: [0].roles: expected a list of admin and metrics'],
    [
      '- tenant: a\n  bearerToken: x\n- tenant: b\n  bearerToken: x',
      ':3: the same bearer token is also given at',
    ],
    [
      '- { tenant: a, basicAuth: { username: u, password: p } }\n- { tenant: b, basicAuth: { username: u, password: q } }',
      'the same basicAuth username',
    ],
    ['- tenant: a\n  tenant: b', 'Map keys must be unique'],
    ['', 'no credentials; every ingest request would be refused'],
  ])('%j is rejected with %j', (text, message) => {
    const path = file('creds.yaml', text);
    expect(() => loadCredentials(path)).toThrow(message);
  });

  it('reports every problem at once and never quotes a secret', () => {
    const path = file(
      'creds.yaml',
      '- tenant: a\n  bearerToken: "s3cret with space"\n- tenant: "b b"\n  basicAuth: { username: u, password: "zq\\u0001zq" }\n',
    );
    let message = '';
    try {
      loadCredentials(path);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.split('\n')).toHaveLength(3);
    expect(message).toContain(`${path}:2: [0].bearerToken`);
    expect(message).toContain(`${path}:3: [1].tenant`);
    expect(message).not.toContain('s3cret');
    expect(message).not.toContain('zq');
  });
});

describe('allowed paths', () => {
  it.each([
    ['/api/v1/write', '/api/v1/write'],
    ['/write', '/api/v1/write'],
    ['/metrics/job/x/instance/y', '/metrics/job/x/instance/y'],
    ['/metrics', undefined],
    ['/api/v1/query', undefined],
  ])('ingestPath(%j) is %j', (path, want) => {
    expect(ingestPath(path)).toBe(want);
  });

  it('matches exact paths and /* prefixes', () => {
    const path = file(
      'creds.yaml',
      '- { tenant: a, bearerToken: x, allowedPaths: [/write, "/metrics/job/batch/*"] }\n',
    );
    const [c] = loadCredentials(path).entries;
    expect(pathAllowed(c!, '/api/v1/write')).toBe(true);
    expect(pathAllowed(c!, '/metrics/job/batch/instance/1')).toBe(true);
    expect(pathAllowed(c!, '/metrics/job/other')).toBe(false);
    // A job with a slash is spelled in base64: only the catch-all pattern covers it.
    expect(pathAllowed(c!, '/metrics/job@base64/YmF0Y2gvMQ')).toBe(false);
    const [all] = loadCredentials(file('all.yaml', '- { tenant: a, bearerToken: x }\n')).entries;
    expect(pathAllowed(all!, '/metrics/job@base64/YmF0Y2gvMQ')).toBe(true);
  });
});

describe('CredentialStore', () => {
  it('reloads new credentials, and keeps the old ones when the new are invalid', () => {
    const path = file('creds.yaml', '- { tenant: a, bearerToken: one }\n');
    const store = new CredentialStore(path);
    file('creds.yaml', '- { tenant: b, bearerToken: two }\n');
    expect(store.reload().lastError).toBeUndefined();
    expect(store.credentials.tenants).toEqual(['b']);

    file('creds.yaml', '- { tenant: c }\n');
    const status = store.reload();
    expect(status.lastError?.message).toContain(`${path}:1: [0]: needs bearerToken`);
    expect(status.tenants).toEqual(['b']);
    expect(store.credentials.entries[0]?.bearer?.equals(digest('two'))).toBe(true);
  });
});
