import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Credential, type Credentials, DEFAULT_ALLOWED_PATHS, digest } from './credentials.js';
import { authenticate, parseAuthorization } from './verify.js';

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;

function credentials(): Credentials {
  const entry = (tenant: string, rest: Partial<Credential>): Credential => ({
    tenant,
    source: 'test',
    bearer: undefined,
    basic: undefined,
    allowedPaths: DEFAULT_ALLOWED_PATHS,
    roles: new Set(),
    ...rest,
  });
  return {
    entries: [
      entry('team-a', { bearer: digest('token-a') }),
      entry('team-b', { bearer: digest('token-b') }),
      entry('team-c', { basic: { username: digest('carol'), password: digest('pässword:1') } }),
    ],
    files: [],
    tenants: ['team-a', 'team-b', 'team-c'],
    basic: true,
    fingerprint: '',
  };
}

describe('parseAuthorization', () => {
  it.each([
    [undefined, 'missing'],
    ['', 'missing'],
    ['Bearer abc-._~+/==', { scheme: 'bearer', token: 'abc-._~+/==' }],
    ['bearer   abc', { scheme: 'bearer', token: 'abc' }],
    ['Bearer', 'malformed'],
    ['Bearer a b', 'malformed'],
    ['Bearer a=b', 'malformed'],
    [basic('u', 'p:q'), { scheme: 'basic', username: 'u', password: 'p:q' }],
    [basic('', ''), { scheme: 'basic', username: '', password: '' }],
    ['Basic dXNlcg==', 'malformed'],
    ['Basic !!!!', 'malformed'],
    ['Basic dXNlcjpw', { scheme: 'basic', username: 'user', password: 'p' }],
    ['Basic /w==', 'malformed'],
    ['Digest username="u"', 'unsupported_scheme'],
    [' ', 'malformed'],
  ])('%j', (header, want) => {
    expect(parseAuthorization(header)).toEqual(want);
  });
});

describe('authenticate', () => {
  const creds = credentials();
  it.each([
    ['Bearer token-a', 'team-a'],
    ['BEARER token-b', 'team-b'],
    [basic('carol', 'pässword:1'), 'team-c'],
  ])('%j is tenant %s', (header, tenant) => {
    const r = authenticate(creds, header);
    expect(r.ok && r.credential.tenant).toBe(tenant);
  });

  it.each([
    [undefined, 'missing'],
    ['Bearer token-c', 'invalid'],
    ['Bearer token-a2', 'invalid'],
    [basic('carol', 'wrong'), 'invalid'],
    [basic('token-a', ''), 'invalid'],
    ['Token token-a', 'unsupported_scheme'],
    ['Bearer  ', 'malformed'],
  ])('%j fails as %s', (header, failure) => {
    expect(authenticate(creds, header)).toEqual({ ok: false, failure });
  });

  it('never throws and never accepts a header it was not given the secret of', () => {
    fc.assert(
      fc.property(fc.option(fc.string({ unit: 'binary' }), { nil: undefined }), (header) => {
        const r = authenticate(creds, header);
        if (r.ok)
          expect(['Bearer token-a', 'Bearer token-b']).toContain(header?.replace(/^bearer/i, 'Bearer'));
      }),
    );
    fc.assert(
      fc.property(fc.string(), fc.string(), (user, password) => {
        const r = authenticate(creds, basic(user, password));
        expect(r.ok).toBe(user === 'carol' && password === 'pässword:1');
      }),
    );
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9\-._~+/]+=*$/), (token) => {
        const r = authenticate(creds, `Bearer ${token}`);
        expect(r.ok).toBe(token === 'token-a' || token === 'token-b');
      }),
    );
    // Each attempt hashes; on a shared, loaded machine the three properties take seconds.
  }, 60_000);
});
