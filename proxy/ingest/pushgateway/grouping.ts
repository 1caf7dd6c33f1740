// The grouping key of a Pushgateway-protocol request, read from its path (Pushgateway README,
// "URL"): `/metrics/job/<JOB_NAME>{/<LABEL_NAME>/<LABEL_VALUE>}`. A name may carry the suffix
// `@base64`, and then its value is base64url (RFC 4648 section 5, padding optional); that is the
// only way to send a value holding a `/`, and `=` alone is the empty value.
//
// The proxy forwards the canonical path built from the parsed key (`groupingPath`), never the
// path as received, so the group the Pushgateway stores is the group the policies were run for.

import { isValidLabelName } from '../exposition/parse.js';

export const PUSH_PREFIX = '/metrics/job';

export interface GroupingKey {
  /** Label pairs in path order, `job` first. Names are unique. */
  readonly labels: readonly (readonly [string, string])[];
}

export type GroupingResult = { ok: true; key: GroupingKey } | { ok: false; reason: string };

const BASE64_SUFFIX = '@base64';

/**
 * Parses the raw (still percent-encoded) path of a push, without the query string. Each segment
 * is percent-decoded after splitting, so an encoded `%2F` stays inside its value.
 */
export function parseGroupingKey(rawPath: string): GroupingResult {
  if (!rawPath.startsWith(`${PUSH_PREFIX}/`) && !rawPath.startsWith(`${PUSH_PREFIX}${BASE64_SUFFIX}/`)) {
    return { ok: false, reason: `path must start with ${PUSH_PREFIX}/<job>` };
  }
  const segments = rawPath.slice('/metrics/'.length).split('/');
  // A trailing slash leaves an empty last segment, which is no label; the Pushgateway redirects
  // such paths, so the proxy reads them as if the slash were absent.
  if (segments.length > 2 && segments.length % 2 === 1 && segments[segments.length - 1] === '') {
    segments.pop();
  }
  if (segments.length % 2 !== 0) {
    return {
      ok: false,
      reason: `label "${short(segments[segments.length - 1] ?? '')}" has no value in the path`,
    };
  }
  const labels: [string, string][] = [];
  const seen = new Set<string>();
  for (let i = 0; i < segments.length; i += 2) {
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(segments[i]!);
      value = decodeURIComponent(segments[i + 1]!);
    } catch {
      return { ok: false, reason: `segment ${i + 1} of the grouping key is not valid percent-encoding` };
    }
    if (name.endsWith(BASE64_SUFFIX)) {
      name = name.slice(0, -BASE64_SUFFIX.length);
      const decoded = decodeBase64Url(value);
      if (decoded === undefined) {
        return {
          ok: false,
          reason: `value of label "${short(name)}" is not valid base64url: "${short(value)}"`,
        };
      }
      value = decoded;
    }
    if (!isValidLabelName(name) || name.startsWith('__')) {
      return { ok: false, reason: `improper label name "${short(name)}" in the grouping key` };
    }
    if (seen.has(name)) {
      return { ok: false, reason: `label "${name}" appears twice in the grouping key` };
    }
    seen.add(name);
    if (name === 'job' && value === '') {
      return { ok: false, reason: 'job name is empty' };
    }
    labels.push([name, value]);
  }
  return { ok: true, key: { labels } };
}

/** The canonical path of a grouping key: plain segments where they can be, base64url otherwise. */
export function groupingPath(key: GroupingKey): string {
  let out = '/metrics';
  for (const [name, value] of key.labels) {
    if (value === '') out += `/${name}${BASE64_SUFFIX}/=`;
    else if (value.includes('/'))
      out += `/${name}${BASE64_SUFFIX}/${Buffer.from(value).toString('base64url')}`;
    else out += `/${name}/${encodeURIComponent(value)}`;
  }
  return out;
}

/**
 * Decodes base64url with optional padding, and also the standard alphabet's `+` and `/` (the
 * Pushgateway accepts both). Undefined for anything that is not base64 or not UTF-8.
 */
function decodeBase64Url(s: string): string | undefined {
  if (s === '=' || s === '') return '';
  if (!/^[A-Za-z0-9_+/-]*={0,2}$/.test(s)) return undefined;
  const body = s.replace(/=+$/, '');
  if (body.length % 4 === 1) return undefined;
  const bytes = Buffer.from(body.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
  const text = bytes.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD; a label value must be valid UTF-8.
  if (text.includes('\uFFFD') && !Buffer.from(text, 'utf8').equals(bytes)) return undefined;
  return text;
}

function short(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}...` : s;
}
