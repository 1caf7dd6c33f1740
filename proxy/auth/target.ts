// The request target a hardened server accepts: origin-form only (RFC 9112 section 3.2.1), with
// no fragment (RFC 9112 section 3.2: a fragment is never sent in a request target), no dot
// segments (RFC 3986 section 3.3, which a client removes before sending), no empty segments and
// no percent-encoded slash, backslash or control character. Everything else is refused with 400
// before routing, so that the path the router matches and the path authentication judges can
// never disagree about which resource a request is for.

/** Why `target` is not acceptable, in one line; undefined when it is. */
export function targetProblem(target: string): string | undefined {
  if (target.length === 0 || target.charCodeAt(0) !== 0x2f /* / */) {
    return 'the request target must be an absolute path (origin-form), not an absolute URI or authority';
  }
  if (target.includes('#')) return 'the request target must not contain a fragment (#)';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x5c /* \ */) {
      return 'the request target contains a space, a control character or a backslash';
    }
  }
  // Percent-encoding must be well formed everywhere (RFC 3986 section 2.1).
  if (/%(?![0-9A-Fa-f]{2})/.test(target)) return 'the request target has a malformed percent-encoding';
  if (/%(2f|5c|00|0[1-9a-f]|1[0-9a-f]|7f)/i.test(path)) {
    return 'the request path must not percent-encode a slash, a backslash or a control character';
  }
  if (path.length > 1) {
    const segments = path.slice(1).split('/');
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i] as string;
      // The last segment may be empty: `/metrics/job/x/` is a path with a trailing slash.
      if (s === '' && i < segments.length - 1)
        return 'the request path must not contain an empty segment (//)';
      const d = s.replace(/%2e/gi, '.');
      if (d === '.' || d === '..') return 'the request path must not contain a dot segment (. or ..)';
    }
  }
  return undefined;
}
