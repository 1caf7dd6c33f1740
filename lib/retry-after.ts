// The Retry-After header (RFC 9110 section 10.2.3), read by both programs: the proxy's forwarders
// (proxy/forward) and the operator's writes throttled by the API server (operator/kube/throttle.ts).

/**
 * Parses a Retry-After header: either delay-seconds or an HTTP-date. Returns milliseconds from
 * `nowMs`, or undefined when absent or unparseable.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}
