// Flag parsing both binaries share (cardinal-proxy's proxy/config/flags.ts, cardinal-operator's
// operator/controller/options.ts, and the `cardinal` commands): one parser, one error type, which
// main() turns into exit code 2 with the usage text, and one reading of every kind of value
// (durations, sizes, counts, fractions, booleans, addresses, choices), so a flag means the same
// in each and a mistake is told the same way, naming the flag.

import { parseArgs } from 'node:util';
import { didYouMean } from './suggest.js';
import { parseSize } from './units.js';

/** A flag the user got wrong; the message names the flag and what it wants. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The flags a binary takes, as node:util parseArgs declares them; repeated flags are `multiple`. */
export type FlagSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

/**
 * Parses `argv` strictly against `spec`: an unknown flag, a missing value or (unless allowed) an
 * argument that is not a flag is a UsageError naming it and the closest known flag.
 */
export function parseFlags<T extends FlagSpec>(
  argv: readonly string[],
  spec: T,
  opts: { readonly positionals?: boolean } = {},
) {
  try {
    return parseArgs({
      args: [...argv],
      options: spec,
      strict: true,
      allowPositionals: opts.positionals ?? false,
    });
  } catch (err) {
    throw new UsageError(flagMistake(err, Object.keys(spec)));
  }
}

/**
 * A flag mistake as a person should read it: the flag, and the closest known flag. node:util's
 * parseArgs reports an unknown option with advice about positionals that does not apply here.
 */
export function flagMistake(err: unknown, names: readonly string[]): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const unknown = /^Unknown option '(-{1,2})([^'=]+)/.exec(message);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown !== null) {
    const given = unknown[2]!;
    const s = didYouMean(given, names, false);
    return `unknown flag ${unknown[1]}${given}${s === '' ? '' : s.replace('mean ', 'mean --')}`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']*)'/.exec(message)?.[1];
    return `unexpected argument ${JSON.stringify(arg ?? '')}: every setting is a --flag`;
  }
  return message;
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

/** A duration longer than zero, in ms. */
export function positiveDuration(flag: string, value: string): number {
  const ms = parseDuration(flag, value);
  if (ms <= 0) throw new UsageError(`${flag}: "${value}" must be longer than zero`);
  return ms;
}

/** A whole number above zero. */
export function positiveInt(flag: string, value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) <= 0) {
    throw new UsageError(`${flag}: "${value}" must be a positive integer`);
  }
  return Number(value);
}

/** A number above zero, fractions allowed (rates). */
export function positiveNumber(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0))
    throw new UsageError(`${flag}: "${value}" must be a positive number`);
  return n;
}

/** A number of zero or more, fractions allowed (rates where 0 means none). */
export function nonNegativeNumber(flag: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value.trim()))
    throw new UsageError(`${flag}: "${value}" must be a number of 0 or more`);
  return Number(value);
}

/** A number from 0 to 1. */
export function fraction(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new UsageError(`${flag}: "${value}" must be a number from 0 to 1`);
  }
  return n;
}

/** A size in bytes: plain, or with a unit (32MiB, 4GB); see units.ts. */
export function size(flag: string, value: string): number {
  try {
    return parseSize(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** `true` or `false` (`--flag=false`); `fallback` when the flag is not given. */
export function bool(flag: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new UsageError(`${flag}: "${value}" must be "true" or "false"`);
}

/** Narrows `value` to one of `allowed`, or throws naming them and the closest one. */
export function oneOf<T extends string>(
  flag: string,
  value: string,
  allowed: readonly T[],
): asserts value is T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(
      `${flag}: "${value}" must be ${allowed.map((a) => `"${a}"`).join(' or ')}${didYouMean(value, allowed)}`,
    );
  }
}

/** HOST:PORT, [IPv6]:PORT or :PORT (all interfaces: 0.0.0.0). */
export function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  if (!m) throw new UsageError(`${flag}: "${value}" must be HOST:PORT or :PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`${flag}: port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
