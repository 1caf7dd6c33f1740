// Verifies the Authorization header of an ingest request against the configured credentials.
// Bearer tokens follow RFC 6750 section 2.1, Basic credentials RFC 7617 section 2, the header
// itself RFC 9110 section 11.6.2 (the scheme is case-insensitive).
//
// Comparison is constant-time in what matters: the presented secret is hashed to a fixed-length
// sha256 digest and compared with crypto.timingSafeEqual against every configured digest, without
// stopping at a match, so neither the secret's length nor which entry matched shows in the time.

import { timingSafeEqual } from 'node:crypto';
import { B64TOKEN, type Credential, type Credentials, digest } from './credentials.js';

/** Why a request was not authenticated; a fixed set, used as a metric label. */
export const AUTH_FAILURES = ['missing', 'malformed', 'unsupported_scheme', 'invalid'] as const;
export type AuthFailure = (typeof AUTH_FAILURES)[number];

export type Presented =
  | { readonly scheme: 'bearer'; readonly token: string }
  | { readonly scheme: 'basic'; readonly username: string; readonly password: string };

const SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+\-.^_`|~]*)(?: +(.*))?$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses an Authorization header value; never throws. */
export function parseAuthorization(header: string | undefined): Presented | AuthFailure {
  if (header === undefined || header === '') return 'missing';
  const m = SCHEME.exec(header.trim());
  if (m === null) return 'malformed';
  const scheme = (m[1] ?? '').toLowerCase();
  const param = (m[2] ?? '').trim();
  if (scheme === 'bearer') {
    return B64TOKEN.test(param) ? { scheme: 'bearer', token: param } : 'malformed';
  }
  if (scheme === 'basic') {
    if (param === '' || param.length % 4 !== 0 || !BASE64.test(param)) return 'malformed';
    let decoded: string;
    try {
      decoded = utf8.decode(Buffer.from(param, 'base64'));
    } catch {
      return 'malformed';
    }
    const colon = decoded.indexOf(':');
    if (colon < 0) return 'malformed';
    return { scheme: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return 'unsupported_scheme';
}

export type AuthResult =
  | { readonly ok: true; readonly credential: Credential }
  | { readonly ok: false; readonly failure: AuthFailure };

/** Finds the credential an Authorization header presents; never throws. */
export function authenticate(credentials: Credentials, header: string | undefined): AuthResult {
  const presented = parseAuthorization(header);
  if (typeof presented === 'string') return { ok: false, failure: presented };
  let found: Credential | undefined;
  if (presented.scheme === 'bearer') {
    const d = digest(presented.token);
    for (const c of credentials.entries) {
      if (c.bearer !== undefined && timingSafeEqual(d, c.bearer)) found = c;
    }
  } else {
    const u = digest(presented.username);
    const p = digest(presented.password);
    for (const c of credentials.entries) {
      if (c.basic === undefined) continue;
      // Both comparisons always run, so a right username with a wrong password takes as long.
      const userOk = timingSafeEqual(u, c.basic.username);
      const passwordOk = timingSafeEqual(p, c.basic.password);
      if (userOk && passwordOk) found = c;
    }
  }
  return found === undefined ? { ok: false, failure: 'invalid' } : { ok: true, credential: found };
}
