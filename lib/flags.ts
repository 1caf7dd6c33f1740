// Flag parsing both binaries share (cardinal-proxy's proxy/config/flags.ts, cardinal-operator's
// operator/controller/options.ts): one error type, which main() turns into exit code 2 with the
// usage text, and one reading of durations and counts, so a flag means the same in both.

/** A flag the user got wrong; the message names the flag and what it wants. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses Prometheus-style durations: 500ms, 10s, 1m30s, 2h. */
export function parseDuration(flag: string, value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  const text = value.trim();
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) break;
    total += Number(m[1]) * (units[m[2] ?? 's'] ?? 0);
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== text.length)
    throw new UsageError(`${flag}: "${value}" is not a duration like 500ms, 10s or 1m`);
  return total;
}
