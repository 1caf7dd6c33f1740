// The durable queue: segment files in one directory, appended with group commit, read in order by
// one consumer (proxy/queue/drain.ts), deleted once everything in them was delivered.
//
// Durability contract (the at-least-once boundary):
// - `append` resolves only after the record and every record before it are written and
//   fdatasync'd; the caller acknowledges its sender after that. Appends that arrive while one
//   fsync runs share the next one (group commit), so throughput does not fall to one request per
//   fsync.
// - The consumer's progress lives in the `ack` file: `acked` moves after the upstream accepted a
//   batch; `sent` is written before a batch is sent. After a crash, reading resumes at `acked`, and
//   the first batch ends exactly at `sent`, so the upstream sees the same batch again, not a larger
//   one mixing old and new samples. Only that one batch can reach the upstream twice.
// - The ack file is replaced by rename without fsync: a process crash keeps it (the page cache
//   survives), and a power loss at worst leaves the previous one, which means more re-sending,
//   never loss.
//
// A full disk is a state, not a failure: an append that cannot be written (ENOSPC) is refused with
// 503 and Retry-After, nothing of it enqueued, and `refusing` turns true so that /-/ready sends
// senders elsewhere. Delivered data is deleted even then (a delivered active segment is unlinked
// before its successor is created, and read handles are closed before a file is unlinked, so the
// space really returns), and the state ends by itself once the file system has room again.

import { statfsSync } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { CardinalError } from '../errors.js';
import {
  type AckState,
  checkSegmentHeader,
  comparePositions,
  decodeAck,
  encodeAck,
  encodeRecord,
  encodeSegmentHeader,
  FORMAT_VERSION,
  type ParseResult,
  type Position,
  parseRecord,
  parseSegmentFileName,
  type QueueEntry,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from './format.js';
import type { QueueGauges, QueueMetrics } from './metrics.js';

export type FullPolicy = 'reject' | 'drop-oldest';

/** The durable queue as an ingest adapter sees it. */
export interface IngestQueue {
  /** Resolves once the entry is fsync'd; throws CardinalError QUEUE_* when it cannot be queued. */
  append(entry: QueueEntry): Promise<void>;
  /** Sent as Retry-After with QUEUE_FULL answers. */
  readonly retryAfterSeconds: number;
}

export interface QueueLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DiskQueueOptions {
  readonly dir: string;
  /** Bytes of segment files the queue may hold; appends beyond are refused or make room. */
  readonly maxBytes: number;
  /** A segment is sealed and a new one started once it holds this many bytes. */
  readonly segmentMaxBytes: number;
  readonly fullPolicy: FullPolicy;
  /** The error a refused append throws: 429 or 503 for the sender. */
  readonly fullCode: 'QUEUE_FULL' | 'QUEUE_FULL_UNAVAILABLE';
  readonly metrics: QueueMetrics;
  readonly logger: QueueLogger;
  readonly now?: () => number;
}

/** One record as read back: the entry and where it lies. */
export interface QueueRecord {
  readonly entry: QueueEntry;
  readonly start: Position;
  readonly end: Position;
}

interface Segment {
  readonly id: number;
  /** Bytes made durable (the committed end); records are read only below it. */
  size: number;
  sealed: boolean;
  /** Records and samples in this segment not yet acknowledged by the consumer. */
  records: number;
  samples: number;
}

interface Pending {
  readonly buf: Buffer;
  readonly samples: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** Size of a read from a segment; records larger than it are read whole. */
const READ_CHUNK = 1 << 20;

function entrySamples(e: { samples: number; histograms: number }): number {
  return e.samples + e.histograms;
}

export class DiskQueue {
  readonly #opts: DiskQueueOptions;
  readonly #now: () => number;
  readonly #segments: Segment[];
  /** The segment appends go to, and its handle; undefined when it could not be created (disk full). */
  #active: Segment | undefined;
  #writer: FileHandle | undefined;
  /** Set by a write that failed for want of space: the bytes it needed. */
  #diskFull: { need: number; probedAt: number } | undefined;
  #acked: Position;
  #sent: Position;
  /** The end of the batch in flight before the last restart, if any: the first batch ends there. */
  readonly replayEnd: Position | undefined;
  #pending: Pending[] = [];
  #pendingBytes = 0;
  #flushing: Promise<void> | undefined;
  #waiters = new Set<() => void>();
  #reader: { segment: number; fh: FileHandle } | undefined;
  #chunk: { segment: number; offset: number; buf: Buffer } | undefined;
  #ackWrite: Promise<void> = Promise.resolve();
  /** The last ack write failed; logged once until one succeeds. */
  #ackFailing = false;
  /**
   * The run of failed appends since the last write that succeeded: its first failure of each
   * error code is logged, the rest only counted, and the count logged when a write succeeds.
   */
  #writeFailures: { appends: number; codes: Set<string>; sinceMs: number } | undefined;
  #reading: Promise<void> = Promise.resolve();
  #refusing = false;
  #generation = 0;
  #headAtMs: number | undefined;
  #dropListeners = new Set<() => void>();
  #closed = false;
  /** Corrupt places in the active segment, and where reading resumes after each. */
  readonly #skips = new Map<string, Position>();

  private constructor(
    opts: DiskQueueOptions,
    segments: Segment[],
    writer: FileHandle | undefined,
    ack: AckState,
    replayEnd: Position | undefined,
  ) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#segments = segments;
    this.#active = writer === undefined ? undefined : segments.at(-1);
    this.#writer = writer;
    this.#acked = ack.acked;
    this.#sent = ack.sent;
    this.replayEnd = replayEnd;
  }

  /**
   * Opens (or creates) the queue in `opts.dir`: reads the ack file, checks every segment from the
   * acknowledged position on, cuts off a torn or corrupt tail (reported as a corruption; records
   * before it are kept), and starts a new segment for appends.
   */
  static async open(opts: DiskQueueOptions): Promise<DiskQueue> {
    const { dir, logger, metrics } = opts;
    await mkdir(dir, { recursive: true });
    const ids = (await readdir(dir))
      .map(parseSegmentFileName)
      .filter((id): id is number => id !== undefined)
      .sort((a, b) => a - b);

    let ack: AckState = { acked: { segment: 0, offset: 0 }, sent: { segment: 0, offset: 0 } };
    const ackRaw = await readFile(join(dir, 'ack')).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (ackRaw !== undefined) {
      const decoded = decodeAck(ackRaw);
      if (typeof decoded === 'string') {
        metrics.corruption('ack');
        logger.warn(
          { file: join(dir, 'ack'), problem: decoded },
          'queue ack file unreadable; re-sending every queued record (the upstream may see some twice)',
        );
      } else {
        ack = decoded;
      }
    }

    const segments: Segment[] = [];
    for (const id of ids) {
      const path = join(dir, segmentFileName(id));
      if (id < ack.acked.segment) {
        // Fully acknowledged before a crash cut the deletion short.
        await unlink(path);
        continue;
      }
      const seg = await recoverSegment(path, id, id === ack.acked.segment ? ack.acked.offset : 0, opts);
      if (seg !== undefined) segments.push(seg);
    }

    // Clamp the positions to what exists: an ack beyond a truncated tail, or into a deleted segment.
    const first = segments[0];
    let acked = ack.acked;
    const ackedSeg = segments.find((s) => s.id === acked.segment);
    if (ackedSeg === undefined) {
      acked = first === undefined ? acked : { segment: first.id, offset: SEGMENT_HEADER_BYTES };
    } else if (acked.offset > ackedSeg.size || acked.offset < SEGMENT_HEADER_BYTES) {
      acked = {
        segment: acked.segment,
        offset: Math.min(Math.max(acked.offset, SEGMENT_HEADER_BYTES), ackedSeg.size),
      };
    }
    let replayEnd: Position | undefined;
    const sentSeg = segments.find((s) => s.id === ack.sent.segment);
    if (comparePositions(ack.sent, acked) > 0 && sentSeg !== undefined && ack.sent.offset <= sentSeg.size) {
      replayEnd = ack.sent;
    }

    // Segments wholly delivered go before a new one is made: on a full disk, that is the room.
    while (segments.length > 0) {
      const s = segments[0]!;
      const delivered = s.id < acked.segment || (s.id === acked.segment && acked.offset >= s.size);
      if (!delivered) break;
      segments.shift();
      await unlink(join(dir, segmentFileName(s.id)));
    }
    const nextId = Math.max(ids.at(-1) ?? 0, ack.acked.segment, ack.sent.segment) + 1;
    let created: { seg: Segment; fh: FileHandle } | undefined;
    try {
      created = await createSegment(dir, nextId);
      segments.push(created.seg);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      logger.error(
        { dir },
        'queue disk full at start: delivering what is queued, refusing appends until there is room',
      );
    }
    const head = segments[0];
    if (head === undefined) {
      acked = { segment: nextId, offset: SEGMENT_HEADER_BYTES };
    } else if (comparePositions(acked, { segment: head.id, offset: SEGMENT_HEADER_BYTES }) < 0) {
      acked = { segment: head.id, offset: SEGMENT_HEADER_BYTES };
    }
    if (replayEnd !== undefined && comparePositions(replayEnd, acked) <= 0) replayEnd = undefined;
    const q = new DiskQueue(opts, segments, created?.fh, { acked, sent: replayEnd ?? acked }, replayEnd);
    if (created === undefined) {
      q.#diskFull = { need: SEGMENT_HEADER_BYTES, probedAt: 0 };
      // Logged above: the first write that succeeds ends this run of failures.
      q.#writeFailures = { appends: 0, codes: new Set(['ENOSPC']), sinceMs: q.#now() };
    }
    const queued = segments.reduce((n, s) => n + s.records, 0);
    logger.info(
      { dir, segments: segments.length, records: queued, bytes: q.bytes, formatVersion: FORMAT_VERSION },
      'queue opened',
    );
    // Segments emptied by the clamping above go now.
    await q.#deleteAcked();
    return q;
  }

  /** Bytes of segment files, committed or being committed. */
  get bytes(): number {
    let n = this.#pendingBytes;
    for (const s of this.#segments) n += s.size;
    return n;
  }

  /**
   * Bytes that count against --queue.max-bytes: the segment files less the part of the oldest one
   * already delivered, so that a drained queue is never full.
   */
  #liveBytes(): number {
    const head = this.#segments[0];
    const delivered =
      head !== undefined && head.id === this.#acked.segment ? this.#acked.offset - SEGMENT_HEADER_BYTES : 0;
    return this.bytes - Math.max(0, delivered);
  }

  get acked(): Position {
    return this.#acked;
  }

  /** Bumped whenever drop-oldest moved `acked` forward; a consumer then restarts from `acked`. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * True from a refused append until one is taken again or the queue drained below 90% of its
   * limit: /-/ready reports not ready meanwhile. The margin keeps readiness from flapping with
   * every delivered batch.
   */
  get refusing(): boolean {
    if (this.#refusing && this.#liveBytes() < 0.9 * this.#opts.maxBytes) this.#refusing = false;
    return this.#refusing || this.diskFull;
  }

  /**
   * True from a write that failed for want of space until a write succeeds again, or the file
   * system has room for what failed (looked at at most once a second, so a proxy nobody sends to
   * while it is not ready still finds out).
   */
  get diskFull(): boolean {
    const full = this.#diskFull;
    if (full === undefined) return false;
    const now = this.#now();
    if (now - full.probedAt >= 1000) {
      full.probedAt = now;
      try {
        const st = statfsSync(this.#opts.dir);
        // A page for a new segment's header, and the group that failed.
        if (st.bavail * st.bsize >= full.need + 2 * 4096) this.#diskFull = undefined;
      } catch {
        // Unknown: stay in the state; the next write decides.
      }
    }
    return this.#diskFull !== undefined;
  }

  gauges(): QueueGauges {
    const drained = this.drained;
    return {
      bytes: this.bytes,
      maxBytes: this.#opts.maxBytes,
      segments: this.#segments.length,
      oldestAgeSeconds:
        drained || this.#headAtMs === undefined ? 0 : Math.max(0, (this.#now() - this.#headAtMs) / 1000),
      full: this.refusing,
      diskFull: this.diskFull,
    };
  }

  /** True when every committed record was acknowledged: nothing is left to deliver. */
  get drained(): boolean {
    let p = this.#acked;
    for (const s of this.#segments) {
      if (s.id < p.segment) continue;
      if (s.id > p.segment) p = { segment: s.id, offset: SEGMENT_HEADER_BYTES };
      if (p.offset < s.size) return false;
    }
    return true;
  }

  /** Called by the consumer with the enqueue time of the oldest record it holds. */
  noteHead(enqueuedAtMs: number): void {
    this.#headAtMs = enqueuedAtMs;
  }

  onDrop(listener: () => void): () => void {
    this.#dropListeners.add(listener);
    return () => this.#dropListeners.delete(listener);
  }

  /**
   * Appends one entry durably. Resolves once it is on disk and fsync'd; throws CardinalError
   * QUEUE_FULL (or QUEUE_FULL_UNAVAILABLE) when it does not fit, with nothing of it enqueued.
   * The entry's body is copied before this returns its promise.
   */
  append(entry: QueueEntry): Promise<void> {
    if (this.#closed) return Promise.reject(new CardinalError('SHUTTING_DOWN'));
    const samples = entrySamples(entry);
    const buf = encodeRecord(entry);
    if (buf.length + SEGMENT_HEADER_BYTES > this.#opts.maxBytes) {
      this.#opts.metrics.refused(samples);
      return Promise.reject(
        new CardinalError(
          'QUEUE_RECORD_TOO_LARGE',
          `${buf.length} bytes, --queue.max-bytes is ${this.#opts.maxBytes}`,
        ),
      );
    }
    if (this.#liveBytes() + buf.length > this.#opts.maxBytes) {
      if (this.#opts.fullPolicy === 'drop-oldest') this.#dropOldest(buf.length);
      if (this.#liveBytes() + buf.length > this.#opts.maxBytes) {
        this.#refusing = true;
        this.#opts.metrics.refused(samples);
        return Promise.reject(
          new CardinalError(this.#opts.fullCode, `${this.bytes} of ${this.#opts.maxBytes} bytes queued`),
        );
      }
    }
    this.#refusing = false;
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ buf, samples, resolve, reject });
      this.#pendingBytes += buf.length;
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      // Appends that came after the loop's last look at the list.
      if (this.#pending.length > 0) this.#kick();
    });
  }

  /** Writes and fsyncs everything pending, again and again while appends keep arriving. */
  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const group = this.#pending;
      this.#pending = [];
      let bytes = 0;
      for (const p of group) bytes += p.buf.length;
      const started = performance.now();
      try {
        if (
          this.#active === undefined ||
          (this.#active.size > SEGMENT_HEADER_BYTES && this.#active.size + bytes > this.#opts.segmentMaxBytes)
        ) {
          await this.#rotate();
        }
        const data =
          group.length === 1
            ? group[0]!.buf
            : Buffer.concat(
                group.map((p) => p.buf),
                bytes,
              );
        await writeFully(this.#writer!, data, this.#active!.size);
        await this.#writer!.datasync();
      } catch (err) {
        this.#pendingBytes -= bytes;
        // A torn record may sit past the committed end; cut it off so later appends continue a
        // valid segment. If even that fails, the next append starts a new segment (the torn tail
        // is then reported and skipped when the segment is read after a restart).
        const active = this.#active;
        const writer = this.#writer;
        if (active !== undefined && writer !== undefined) {
          await writer.truncate(active.size).catch(async () => {
            active.sealed = true;
            this.#active = undefined;
            this.#writer = undefined;
            await writer.close().catch(() => undefined);
          });
        }
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
        const noSpace = code === 'ENOSPC';
        if (noSpace) this.#diskFull = { need: bytes, probedAt: this.#now() };
        this.#noteWriteFailure(err, code, group.length, bytes);
        const e = noSpace
          ? new CardinalError('QUEUE_DISK_FULL', `no space left in ${this.#opts.dir}`, { cause: err })
          : new CardinalError('QUEUE_WRITE_FAILED', (err as Error).message, { cause: err });
        for (const p of group) p.reject(e);
        continue;
      }
      this.#diskFull = undefined;
      this.#noteWriteSuccess();
      const seg = this.#active!;
      seg.size += bytes;
      this.#pendingBytes -= bytes;
      for (const p of group) {
        seg.records++;
        seg.samples += p.samples;
        this.#opts.metrics.appended(p.samples);
      }
      this.#opts.metrics.fsync((performance.now() - started) / 1000, group.length);
      for (const p of group) p.resolve();
      this.#wake();
    }
  }

  /**
   * Logs a failed append once per run of failures (and once more for each other error code in the
   * run): on a full or broken disk every request fails the same way, and a log line per request
   * would bury the first one.
   */
  #noteWriteFailure(err: unknown, code: string, records: number, bytes: number): void {
    let run = this.#writeFailures;
    if (run === undefined) {
      run = { appends: 0, codes: new Set(), sinceMs: this.#now() };
      this.#writeFailures = run;
    }
    run.appends += records;
    if (run.codes.has(code)) return;
    run.codes.add(code);
    const dir = this.#opts.dir;
    if (code === 'ENOSPC') {
      this.#opts.logger.error(
        { dir, records, bytes },
        'queue disk full: refusing appends with 503 until there is room; delivering what is queued',
      );
    } else {
      this.#opts.logger.error(
        { err, dir, records },
        'writing to the queue failed; further failures are counted until a write succeeds',
      );
    }
  }

  /** A write succeeded: ends the run of failures, if any, saying how many appends it refused. */
  #noteWriteSuccess(): void {
    const run = this.#writeFailures;
    if (run === undefined) return;
    this.#writeFailures = undefined;
    this.#opts.logger.info(
      {
        dir: this.#opts.dir,
        failedAppends: run.appends,
        codes: [...run.codes],
        seconds: Math.max(0, (this.#now() - run.sinceMs) / 1000),
      },
      run.codes.has('ENOSPC') ? 'queue disk has room again' : 'writing to the queue works again',
    );
  }

  /** Seals the active segment (if any) and starts the next one. */
  async #rotate(): Promise<void> {
    const old = this.#writer;
    if (this.#active !== undefined) this.#active.sealed = true;
    this.#active = undefined;
    this.#writer = undefined;
    await old?.close();
    // After the last one; with none left, the one `acked` already points to (ids only grow).
    const last = this.#segments.at(-1)?.id;
    const { seg, fh } = await createSegment(
      this.#opts.dir,
      last === undefined ? this.#acked.segment : last + 1,
    );
    this.#segments.push(seg);
    this.#active = seg;
    this.#writer = fh;
    // The sealed one may already be wholly delivered.
    await this.#deleteAcked();
  }

  /**
   * The active segment holds only delivered records and nothing is being appended: it is sealed
   * and deleted, so that its space returns even when no append ever fills it (on a full disk
   * none can). The next append starts a new segment. Runs in the append chain (#flushing).
   */
  #retireDelivered(): void {
    const a = this.#active;
    if (
      a === undefined ||
      a.size <= SEGMENT_HEADER_BYTES ||
      this.#flushing !== undefined ||
      this.#pending.length > 0 ||
      this.#closed ||
      this.#acked.segment !== a.id ||
      this.#acked.offset < a.size
    ) {
      return;
    }
    this.#flushing = (async () => {
      const writer = this.#writer;
      a.sealed = true;
      this.#active = undefined;
      this.#writer = undefined;
      await writer?.close();
      await this.#deleteAcked();
    })()
      .catch((err: unknown) => this.#opts.logger.warn({ err }, 'retiring a delivered queue segment failed'))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#pending.length > 0) this.#kick();
      });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const w of waiters) w();
  }

  /** Resolves when new records were committed, after `timeoutMs`, or when `signal` aborts. */
  waitForData(timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done, { once: true });
      this.#waiters.add(done);
    });
  }

  /**
   * Reads the record at `pos` (or at the start of the next segment when `pos` is at the end of a
   * sealed one). Returns undefined when nothing committed lies at or after `pos`. A corrupt record
   * is reported, and the rest of its segment skipped.
   */
  read(pos: Position): Promise<QueueRecord | undefined> {
    // One read at a time: reads share the file handle and the read buffer.
    const r = this.#reading.then(() => this.#read(pos));
    this.#reading = r.then(
      () => undefined,
      () => undefined,
    );
    return r;
  }

  async #read(pos: Position): Promise<QueueRecord | undefined> {
    let p: Position | undefined = this.#normalize(pos);
    for (;;) {
      if (p === undefined) return undefined;
      const seg = this.#segment(p.segment);
      if (seg === undefined) {
        // Deleted (delivered, or dropped): go on at the next segment there is.
        const n = this.#segments.find((x) => x.id > p!.segment);
        if (n === undefined) return undefined;
        p = { segment: n.id, offset: SEGMENT_HEADER_BYTES };
        continue;
      }
      if (p.offset >= seg.size) {
        if (!seg.sealed) return undefined;
        p = this.#next(seg);
        continue;
      }
      const parsed = await this.#parseAt(seg, p.offset);
      if (parsed.kind === 'record') {
        return { entry: parsed.entry, start: p, end: { segment: seg.id, offset: p.offset + parsed.size } };
      }
      const kind = parsed.kind === 'corrupt' ? parsed.reason : 'truncated';
      this.#opts.metrics.corruption(kind);
      this.#opts.logger.error(
        { segment: segmentFileName(seg.id), offset: p.offset, kind },
        'corrupt queue record; skipping the rest of the segment',
      );
      if (!seg.sealed) {
        // Appends go on past the damage; reading resumes after what is committed now.
        const to = { segment: seg.id, offset: seg.size };
        this.#skips.set(`${seg.id}:${p.offset}`, to);
        p = to;
        continue;
      }
      seg.size = p.offset;
      p = this.#next(seg);
    }
  }

  async #parseAt(seg: Segment, offset: number): Promise<ParseResult> {
    let c = this.#chunk;
    if (c !== undefined && c.segment === seg.id && offset >= c.offset && offset < c.offset + c.buf.length) {
      const r = parseRecord(c.buf, offset - c.offset);
      if (r.kind !== 'incomplete') return r;
      if (c.offset + c.buf.length >= seg.size) return r;
    }
    // Read from `offset` on: at least one chunk, or the whole record when it is larger.
    let want = READ_CHUNK;
    for (;;) {
      const len = Math.min(want, seg.size - offset);
      c = { segment: seg.id, offset, buf: await this.#readAt(seg.id, offset, len) };
      this.#chunk = c;
      const r = parseRecord(c.buf, 0);
      if (r.kind !== 'incomplete' || len >= seg.size - offset || c.buf.length < len) return r;
      want = r.need;
    }
  }

  async #readAt(segment: number, offset: number, len: number): Promise<Buffer> {
    if (this.#reader?.segment !== segment) {
      await this.#reader?.fh.close();
      this.#reader = undefined;
      this.#reader = { segment, fh: await open(join(this.#opts.dir, segmentFileName(segment)), 'r') };
    }
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.#reader.fh.read(buf, got, len - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === len ? buf : buf.subarray(0, got);
  }

  #segment(id: number): Segment | undefined {
    for (const s of this.#segments) if (s.id === id) return s;
    return undefined;
  }

  #next(seg: Segment): Position | undefined {
    const i = this.#segments.indexOf(seg);
    const n = this.#segments[i + 1];
    return n === undefined ? undefined : { segment: n.id, offset: SEGMENT_HEADER_BYTES };
  }

  /** A position before `acked` or in a deleted segment reads from `acked` on. */
  #normalize(pos: Position): Position {
    const p = comparePositions(pos, this.#acked) < 0 ? this.#acked : pos;
    return this.#skips.get(`${p.segment}:${p.offset}`) ?? p;
  }

  /**
   * Records that the batch ending at `end` is about to be sent, so that after a crash the first
   * batch is cut at the same place.
   */
  markSent(end: Position): Promise<void> {
    this.#sent = end;
    return this.#persistAck();
  }

  /**
   * Everything before `end` reached the upstream or was dropped and counted: persists it and
   * deletes the segments that are wholly behind it. `records` are the records of the batch.
   */
  async ack(end: Position, records: readonly QueueRecord[]): Promise<void> {
    if (comparePositions(end, this.#acked) <= 0) return;
    for (const r of records) {
      if (comparePositions(r.start, this.#acked) < 0) continue;
      const seg = this.#segment(r.start.segment);
      if (seg === undefined) continue;
      seg.records--;
      seg.samples -= entrySamples(r.entry);
    }
    this.#acked = end;
    if (comparePositions(this.#sent, end) < 0) this.#sent = end;
    this.#headAtMs = undefined;
    await this.#persistAck();
    await this.#deleteAcked();
    this.#retireDelivered();
  }

  #persistAck(): Promise<void> {
    const dir = this.#opts.dir;
    // Chained, so that renames happen in order and the file on disk only moves forward.
    // A failed write is logged, not thrown: the consumer's position in memory is right, and the
    // stale file on disk only means more re-sending after a crash.
    this.#ackWrite = this.#ackWrite.then(async () => {
      const tmp = join(dir, 'ack.tmp');
      try {
        await writeFile(tmp, encodeAck({ acked: this.#acked, sent: this.#sent }));
        await rename(tmp, join(dir, 'ack'));
        if (this.#ackFailing) {
          this.#ackFailing = false;
          this.#opts.logger.info({ dir }, 'the queue ack file is written again');
        }
      } catch (err) {
        // Once per run of failures: on a full disk every delivered batch fails it.
        if (!this.#ackFailing) this.#opts.logger.warn({ err }, 'writing the queue ack file failed');
        this.#ackFailing = true;
      }
    });
    return this.#ackWrite;
  }

  async #deleteAcked(): Promise<void> {
    for (;;) {
      const s = this.#segments[0];
      if (s === undefined || s === this.#active) return;
      const behind =
        s.id < this.#acked.segment ||
        (s.id === this.#acked.segment && s.sealed && this.#acked.offset >= s.size);
      if (!behind) return;
      this.#segments.shift();
      if (s.records > 0) {
        // Acknowledged past records never read: they lay behind a corrupt place.
        this.#opts.metrics.dropped('corrupt', s.records, s.samples);
      }
      if (comparePositions(this.#acked, { segment: s.id + 1, offset: 0 }) < 0) {
        const next = this.#segments[0];
        // With no segment left (the delivered active one was retired), the next one created.
        this.#acked = { segment: next?.id ?? s.id + 1, offset: SEGMENT_HEADER_BYTES };
        this.#sent = this.#acked;
        void this.#persistAck();
      }
      await this.#unlink(s.id);
      // Space came back: the next write may succeed.
      if (this.#diskFull !== undefined) this.#diskFull.probedAt = 0;
    }
  }

  /**
   * Deletes a segment file. The reader's handle on it is closed first: an unlinked file's space
   * returns only when its last handle closes, and the reader may not come back to move on.
   */
  async #unlink(id: number): Promise<void> {
    if (this.#reader?.segment === id) {
      const fh = this.#reader.fh;
      this.#reader = undefined;
      this.#chunk = undefined;
      // Reads are serialised; wait for one in progress before closing under it.
      await this.#reading;
      await fh.close().catch(() => undefined);
    }
    await unlink(join(this.#opts.dir, segmentFileName(id))).catch((err: unknown) =>
      this.#opts.logger.warn({ err, segment: segmentFileName(id) }, 'deleting a queue segment failed'),
    );
  }

  /**
   * drop-oldest: drops whole sealed segments, oldest first, until `need` more bytes fit, counting
   * what they held. Synchronous bookkeeping, so that concurrent appends see the freed space at once;
   * the files go in the background. The consumer is told to abandon its batch and restart at `acked`.
   */
  #dropOldest(need: number): void {
    let dropped = false;
    while (this.#liveBytes() + need > this.#opts.maxBytes) {
      const s = this.#segments[0];
      if (s === undefined || s === this.#active) break;
      this.#segments.shift();
      this.#opts.metrics.dropped('full', s.records, s.samples);
      this.#opts.logger.warn(
        { segment: segmentFileName(s.id), records: s.records, samples: s.samples },
        'queue full: dropped the oldest segment',
      );
      dropped = true;
      void this.#unlink(s.id);
    }
    if (!dropped) return;
    const head = this.#segments[0]!;
    this.#acked = { segment: head.id, offset: SEGMENT_HEADER_BYTES };
    this.#sent = this.#acked;
    this.#headAtMs = undefined;
    this.#generation++;
    void this.#persistAck();
    for (const l of this.#dropListeners) l();
  }

  /** Waits for pending appends, then closes the files. The data stays for the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#ackWrite.catch(() => undefined);
    this.#wake();
    await this.#writer?.close();
    await this.#reader?.fh.close();
    this.#reader = undefined;
  }
}

async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function createSegment(dir: string, id: number): Promise<{ seg: Segment; fh: FileHandle }> {
  const path = join(dir, segmentFileName(id));
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx');
  } catch (err) {
    // A file of this id shorter than a header is an earlier attempt cut short (its removal failed
    // too); it holds nothing, so it goes. Anything longer is not ours to overwrite.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if ((await stat(path)).size >= SEGMENT_HEADER_BYTES) throw err;
    await unlink(path);
    fh = await open(path, 'wx');
  }
  try {
    await writeFully(fh, encodeSegmentHeader(), 0);
    await fh.sync();
    // The new directory entry must survive a crash too, or the fsync'd records in it would not.
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    await fh.close();
    // On a full disk the header's write fails after the file exists: without its removal the
    // next attempt at this id would find it (EEXIST) and the queue could never start a segment.
    await unlink(path).catch(() => undefined);
    throw err;
  }
  return { seg: { id, size: SEGMENT_HEADER_BYTES, sealed: false, records: 0, samples: 0 }, fh };
}

/**
 * Checks one segment left by an earlier run: counts its records from `from` on, and cuts off a
 * torn or corrupt tail (reported; the records before it are kept). A segment whose header is not
 * this format is moved aside as `<name>.corrupt`; one of a newer format version stops the start,
 * so that nothing written by a newer proxy is misread or deleted.
 */
async function recoverSegment(
  path: string,
  id: number,
  from: number,
  opts: DiskQueueOptions,
): Promise<Segment | undefined> {
  const { metrics, logger } = opts;
  const buf = await readFile(path);
  const header = checkSegmentHeader(buf);
  if (!header.ok) {
    if (header.reason === 'version') {
      throw new Error(
        `queue segment ${path} has format version ${header.version}; this proxy reads version ${FORMAT_VERSION}. Use a newer proxy or another --queue.dir.`,
      );
    }
    if (header.reason === 'short') {
      // A crash while the segment was being created: its header is written and fsync'd before
      // any record, so it holds nothing that was acknowledged.
      metrics.corruption('truncated');
      logger.warn(
        { path, bytes: buf.length },
        'queue segment creation was cut short; removed (it held no records)',
      );
      await unlink(path);
      return undefined;
    }
    metrics.corruption('header');
    logger.error({ path, problem: header.reason }, 'queue segment has no valid header; moved aside');
    await rename(path, `${path}.corrupt`);
    return undefined;
  }
  const seg: Segment = { id, size: SEGMENT_HEADER_BYTES, sealed: true, records: 0, samples: 0 };
  let pos = SEGMENT_HEADER_BYTES;
  while (pos < buf.length) {
    const r = parseRecord(buf, pos);
    if (r.kind !== 'record') {
      const kind = r.kind === 'corrupt' ? r.reason : 'truncated';
      metrics.corruption(kind);
      logger.warn(
        { path, offset: pos, kind, droppedBytes: buf.length - pos },
        kind === 'truncated'
          ? 'queue segment ends in a torn record (a write cut short, never acknowledged); cut off'
          : 'corrupt queue record; the rest of the segment is cut off',
      );
      await truncate(path, pos);
      break;
    }
    if (pos >= from) {
      seg.records++;
      seg.samples += entrySamples(r.entry);
    }
    pos += r.size;
  }
  seg.size = pos;
  return seg;
}
