// Tails Prometheus's query log (`query_log_file` in prometheus.yml: one JSON object per line per
// query, with `ruleGroup: {file, name}` for rule evaluations, which never cross HTTP). Only rule
// evaluations count as reads here, by group: queries over HTTP are seen by the read path itself.
//
// The file is polled. A new inode at the path (logrotate's rename, then Prometheus reopening on
// reload) is read from its start after the old file is read to its end; a file shorter than the
// position (copytruncate) is read from its start. The position is saved with the usage state, so a
// restarted proxy goes on where it stopped; a file that exists when the proxy starts but was
// never seen is read from its end; one that appears later is read from its start.

import { type FileHandle, open, stat } from 'node:fs/promises';
import type { Logger } from 'pino';

/** The longest line read; a longer one is skipped and counted. */
export const MAX_LINE_BYTES = 1 << 20;
const CHUNK_BYTES = 64 * 1024;

export interface LogPosition {
  readonly path: string;
  readonly ino: number;
  readonly offset: number;
}

export type LineOutcome = 'rule' | 'other' | 'invalid' | 'too_long';

export interface QueryLogEntry {
  /** The rule group's file and name. */
  readonly file: string;
  readonly group: string;
  readonly query: string;
}

/** A query-log line's rule evaluation, `other` for a query that is not one, or `invalid`. */
export function parseQueryLogLine(line: string): QueryLogEntry | 'other' | 'invalid' {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return 'invalid';
  }
  if (o === null || typeof o !== 'object') return 'invalid';
  const { params, ruleGroup } = o as {
    params?: { query?: unknown };
    ruleGroup?: { file?: unknown; name?: unknown };
  };
  const query = params?.query;
  if (typeof query !== 'string') return 'invalid';
  if (ruleGroup === undefined || typeof ruleGroup.name !== 'string') return 'other';
  return { file: typeof ruleGroup.file === 'string' ? ruleGroup.file : '', group: ruleGroup.name, query };
}

export interface TailerOptions {
  readonly path: string;
  readonly pollMs: number;
  /** Where a previous run stopped; used when the file at `path` is still that inode. */
  readonly start?: LogPosition | undefined;
  readonly onLine: (line: string) => void;
  readonly onTooLong: () => void;
  readonly logger: Logger;
}

export class QueryLogTailer {
  readonly #opts: TailerOptions;
  #fh: FileHandle | undefined;
  #ino = -1;
  #offset = 0;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #skipping = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #first = true;
  #closed = false;
  /** The saved position, until the first open used it or not. */
  #start: LogPosition | undefined;

  constructor(opts: TailerOptions) {
    this.#opts = opts;
    this.#start = opts.start;
  }

  /** Where reading stands, for the state file. */
  position(): LogPosition | undefined {
    // A line not yet complete is read again from its start.
    return this.#ino < 0
      ? undefined
      : { path: this.#opts.path, ino: this.#ino, offset: this.#offset - this.#partialBytes };
  }

  start(): void {
    const tick = () => {
      this.#running = this.poll()
        .catch((err: unknown) =>
          this.#opts.logger.warn({ err, path: this.#opts.path }, 'reading the query log failed'),
        )
        .finally(() => {
          if (!this.#closed) this.#timer = setTimeout(tick, this.#opts.pollMs);
        });
    };
    tick();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#fh?.close();
    this.#fh = undefined;
  }

  /** One round: reads what was appended, following rotation and truncation. Exposed for tests. */
  async poll(): Promise<void> {
    let st: Awaited<ReturnType<typeof stat>> | undefined;
    try {
      st = await stat(this.#opts.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (this.#fh !== undefined && (st === undefined || st.ino !== this.#ino)) {
      // Rotated away: what the old file got before the rename is still read.
      await this.#readToEnd();
      await this.#fh.close();
      this.#fh = undefined;
      this.#dropPartial();
    }
    if (st === undefined) {
      // Not there at the start: when it appears, everything in it is new.
      if (this.#start === undefined) this.#first = false;
      return;
    }
    if (this.#fh === undefined) {
      this.#fh = await open(this.#opts.path, 'r');
      const opened = await this.#fh.stat();
      const start = this.#start;
      this.#start = undefined;
      if (this.#first && start !== undefined && start.path === this.#opts.path && start.ino === opened.ino) {
        this.#offset = start.offset <= opened.size ? start.offset : 0;
      } else {
        this.#offset = this.#first ? opened.size : 0;
      }
      this.#ino = opened.ino;
      this.#first = false;
    }
    const size = (await this.#fh.stat()).size;
    if (size < this.#offset) {
      // Truncated in place: the file starts again.
      this.#offset = 0;
      this.#dropPartial();
    }
    await this.#readToEnd();
  }

  #dropPartial(): void {
    this.#partial = [];
    this.#partialBytes = 0;
    this.#skipping = false;
  }

  async #readToEnd(): Promise<void> {
    const fh = this.#fh;
    if (fh === undefined) return;
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK_BYTES, this.#offset);
      if (bytesRead === 0) return;
      this.#offset += bytesRead;
      this.#consume(buf.subarray(0, bytesRead));
    }
  }

  #consume(chunk: Buffer): void {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      const piece = chunk.subarray(from, nl);
      if (this.#skipping) {
        this.#skipping = false;
      } else if (this.#partialBytes + piece.length > MAX_LINE_BYTES) {
        this.#opts.onTooLong();
      } else {
        const line =
          this.#partial.length === 0
            ? piece.toString('utf8')
            : Buffer.concat([...this.#partial, piece]).toString('utf8');
        if (line.trim() !== '') this.#opts.onLine(line);
      }
      this.#partial = [];
      this.#partialBytes = 0;
      from = nl + 1;
    }
    const rest = chunk.subarray(from);
    if (rest.length === 0 || this.#skipping) return;
    if (this.#partialBytes + rest.length > MAX_LINE_BYTES) {
      this.#opts.onTooLong();
      this.#partial = [];
      this.#partialBytes = 0;
      this.#skipping = true;
      return;
    }
    // A copy: `chunk` is the read buffer, reused by the next read.
    this.#partial.push(Buffer.from(rest));
    this.#partialBytes += rest.length;
  }
}
