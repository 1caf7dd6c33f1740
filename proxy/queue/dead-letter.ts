// Queued records the upstream keeps refusing, out of the way of the others. The drain loop moves a
// record here once it has isolated it as the one a batch fails for (proxy/queue/drain.ts); here it
// is retried alone, never merged again, until the upstream takes it, refuses it for good, or it
// has failed for longer than --queue.max-retry-age or more than --queue.max-retry-attempts times.
// Then it stays as a dead letter: kept, bounded, listed by GET /api/v1/queue/dead-letter and put
// back into the queue by POST /api/v1/queue/dead-letter/requeue.
//
// One file per record in `<queue.dir>/dead-letter/`, named by a growing sequence number:
//   u32 LE length of the JSON state, the state (UTF-8 JSON), then the record as the queue encodes
//   it (proxy/queue/format.ts, with its CRC-32C).
// A file is written and fsync'd (with its directory) before the queue acknowledges the record,
// so a record is always in exactly one place that survives a crash (or in both, after a crash
// between the two, which means one more delivery, never loss). State changes replace the file by
// rename.

import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProtocolVersion } from '../ingest/negotiate.js';
import { encodeRecord, parseRecord, type QueueEntry } from './format.js';
import type { DropReason, QueueMetrics } from './metrics.js';
import type { QueueLogger } from './queue.js';

export interface DeadLetterState {
  /** retrying: sent again with backoff; dead: kept until requeued or pushed out by the bound. */
  status: 'retrying' | 'dead';
  /** Why it is here: the last upstream status or network error. */
  lastError: string;
  /** Why it stopped being retried (dead only). */
  reason?: DropReason;
  attempts: number;
  firstFailureMs: number;
  nextAttemptMs: number;
}

export interface DeadLetter {
  readonly id: number;
  readonly state: DeadLetterState;
  readonly entry: QueueEntry;
  readonly bytes: number;
}

/** GET /api/v1/queue/dead-letter; with --workers N it has each worker's part too (proxy/workers/queues.ts). */
export interface DeadLetterReport {
  readonly deadLetters: readonly DeadLetterInfo[];
}

/** What the API lists of one dead letter. */
export interface DeadLetterInfo {
  readonly id: number;
  readonly status: 'retrying' | 'dead';
  readonly reason: DropReason | null;
  readonly lastError: string;
  readonly attempts: number;
  readonly firstFailure: string;
  readonly enqueuedAt: string;
  readonly protocol: ProtocolVersion;
  readonly tenant: string | null;
  readonly series: number;
  readonly samples: number;
  readonly bytes: number;
}

export interface DeadLetterOptions {
  readonly dir: string;
  /** Bytes of files kept; beyond, the oldest go (counted as dead_letter_full). */
  readonly maxBytes: number;
  readonly metrics: QueueMetrics;
  readonly logger: QueueLogger;
}

const FILE_RE = /^(\d{16})\.dlq$/;

export class DeadLetters {
  readonly #opts: DeadLetterOptions;
  readonly #letters = new Map<number, DeadLetter>();
  #nextId = 1;
  #bytes = 0;

  private constructor(opts: DeadLetterOptions) {
    this.#opts = opts;
  }

  static async open(opts: DeadLetterOptions): Promise<DeadLetters> {
    const d = new DeadLetters(opts);
    await mkdir(opts.dir, { recursive: true });
    for (const name of (await readdir(opts.dir)).sort()) {
      const m = FILE_RE.exec(name);
      const path = join(opts.dir, name);
      if (m === null) {
        // A state change cut short by a crash: the old file is still there.
        if (name.endsWith('.tmp')) await unlink(path).catch(() => undefined);
        continue;
      }
      const id = Number(m[1]);
      d.#nextId = Math.max(d.#nextId, id + 1);
      const buf = await readFile(path);
      const letter = decode(id, buf);
      if (letter === undefined) {
        opts.metrics.corruption('payload');
        opts.logger.error({ path }, 'dead letter unreadable; moved aside');
        await rename(path, `${path}.corrupt`);
        continue;
      }
      d.#letters.set(id, letter);
      d.#bytes += letter.bytes;
    }
    return d;
  }

  get size(): number {
    return this.#letters.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The letters in order of arrival. */
  list(): DeadLetter[] {
    return [...this.#letters.values()].sort((a, b) => a.id - b.id);
  }

  get(id: number): DeadLetter | undefined {
    return this.#letters.get(id);
  }

  /** Stores a record durably; resolves once it is fsync'd. */
  async add(entry: QueueEntry, state: DeadLetterState): Promise<DeadLetter> {
    const id = this.#nextId++;
    const letter = await this.#write(id, entry, state);
    this.#letters.set(id, letter);
    this.#bytes += letter.bytes;
    await this.#bound(id);
    return letter;
  }

  /** Replaces a letter's state (by rename, so a crash keeps the old or the new one). */
  async update(id: number, state: DeadLetterState): Promise<void> {
    const old = this.#letters.get(id);
    if (old === undefined) return;
    const letter = await this.#write(id, old.entry, state);
    this.#letters.set(id, letter);
    this.#bytes += letter.bytes - old.bytes;
  }

  async remove(id: number): Promise<void> {
    const old = this.#letters.get(id);
    if (old === undefined) return;
    this.#letters.delete(id);
    this.#bytes -= old.bytes;
    await unlink(join(this.#opts.dir, fileName(id))).catch((err: unknown) =>
      this.#opts.logger.warn({ err, id }, 'deleting a dead letter failed'),
    );
  }

  /** The oldest letters go, counted, until the directory is within its bound (never `keep`). */
  async #bound(keep: number): Promise<void> {
    for (const l of this.list()) {
      if (this.#bytes <= this.#opts.maxBytes) return;
      if (l.id === keep) continue;
      this.#opts.metrics.dropped('dead_letter_full', 1, l.entry.samples + l.entry.histograms);
      this.#opts.logger.warn(
        { id: l.id, samples: l.entry.samples },
        'dead letters over their bound: the oldest deleted',
      );
      await this.remove(l.id);
    }
  }

  async #write(id: number, entry: QueueEntry, state: DeadLetterState): Promise<DeadLetter> {
    const json = Buffer.from(JSON.stringify(state));
    const head = Buffer.alloc(4);
    head.writeUInt32LE(json.length, 0);
    const data = Buffer.concat([head, json, encodeRecord(entry)]);
    const path = join(this.#opts.dir, fileName(id));
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dir = await open(this.#opts.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    // The entry's body is copied: the caller's buffer may be a view of the queue's read chunk.
    const parsed = parseRecord(data, 4 + json.length);
    if (parsed.kind !== 'record') throw new Error('dead letter did not round-trip');
    return { id, state, entry: parsed.entry, bytes: data.length };
  }
}

function fileName(id: number): string {
  return `${String(id).padStart(16, '0')}.dlq`;
}

function decode(id: number, buf: Buffer): DeadLetter | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readUInt32LE(0);
  if (4 + len > buf.length) return undefined;
  let state: DeadLetterState;
  try {
    state = JSON.parse(buf.toString('utf8', 4, 4 + len)) as DeadLetterState;
  } catch {
    return undefined;
  }
  if (state.status !== 'retrying' && state.status !== 'dead') return undefined;
  const parsed = parseRecord(buf, 4 + len);
  if (parsed.kind !== 'record' || 4 + len + parsed.size !== buf.length) return undefined;
  return { id, state, entry: parsed.entry, bytes: buf.length };
}

export function describeLetter(l: DeadLetter): DeadLetterInfo {
  return {
    id: l.id,
    status: l.state.status,
    reason: l.state.reason ?? null,
    lastError: l.state.lastError,
    attempts: l.state.attempts,
    firstFailure: new Date(l.state.firstFailureMs).toISOString(),
    enqueuedAt: new Date(l.entry.enqueuedAtMs).toISOString(),
    protocol: l.entry.version,
    tenant: l.entry.tenant ?? null,
    series: l.entry.series,
    samples: l.entry.samples + l.entry.histograms,
    bytes: l.bytes,
  };
}
