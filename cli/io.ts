// What a command reads and writes, passed in so that commands run the same in tests as in a shell.

import { type FlagSpec, parseFlags as parseFlagArgs, UsageError } from '../lib/flags.js';

export interface Io {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** The next line a person types, for confirmations; undefined at end of input. */
  readonly readLine: (prompt: string) => Promise<string | undefined>;
}

export class CommandError extends Error {
  override name = 'CommandError';
}

/** Parses a command's flags (lib/flags.ts); a mistake is a CommandError naming the closest flag. */
export function parseFlags<T extends FlagSpec>(argv: readonly string[], options: T) {
  try {
    return parseFlagArgs(argv, options, { positionals: true });
  } catch (err) {
    if (err instanceof UsageError) throw new CommandError(err.message);
    throw err;
  }
}

/** A plain text table, columns padded to their widest cell; numbers are right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
