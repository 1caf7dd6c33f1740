// The proxy's log: pino, as JSON lines for collectors, or as logfmt for a person at a terminal.
// A multi-line message (a configuration's problems, one per line) stays readable in logfmt: its
// first line is the `msg`, the others follow as indented text, instead of one line with `\n`s.

import type { Writable } from 'node:stream';
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import type { LogFormat } from './config/flags.js';

const LEVELS: Readonly<Record<number, string>> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

export function createLogger(
  format: LogFormat,
  options: LoggerOptions,
  out: Writable = process.stdout,
): Logger {
  // pino's own destination (sonic-boom on fd 1) unless the caller asks for another stream.
  if (format === 'json')
    return out === process.stdout ? pino(options) : pino(options, out as unknown as DestinationStream);
  const destination: DestinationStream = {
    write(line: string) {
      out.write(logfmt(line));
    },
  };
  return pino(options, destination);
}

/** One pino JSON line as logfmt: `ts=... level=info msg="..." key=value`, then extra message lines. */
export function logfmt(jsonLine: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine;
  }
  const { time, level, msg, ...rest } = record;
  const [first = '', ...more] = typeof msg === 'string' ? msg.split('\n') : [];
  const parts = [
    `ts=${typeof time === 'number' ? new Date(time).toISOString() : String(time)}`,
    `level=${LEVELS[level as number] ?? String(level)}`,
    `msg=${value(first)}`,
  ];
  for (const [k, v] of Object.entries(rest)) {
    if (k === 'pid' || k === 'hostname') continue;
    if (k === 'err' && v !== null && typeof v === 'object') {
      parts.push(`err=${value(String((v as { message?: unknown }).message ?? ''))}`);
      continue;
    }
    parts.push(`${k}=${value(v)}`);
  }
  return `${parts.join(' ')}\n${more.map((l) => `    ${l}\n`).join('')}`;
}

function value(v: unknown): string {
  const s = typeof v === 'string' ? v : v === null || v === undefined ? String(v) : JSON.stringify(v);
  return /^[^\s"=\\]+$/.test(s) ? s : JSON.stringify(s);
}
