import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { CardinalError } from '../errors.js';
import { encodeRecord, type QueueEntry, SEGMENT_HEADER_BYTES } from './format.js';
import type { QueueMetrics } from './metrics.js';
import { DiskQueue, type DiskQueueOptions, type QueueRecord } from './queue.js';

const dirs: string[] = [];
afterEach(() => {
  // Every queue a test opens is closed by it: a handle left to the garbage collector is closed
  // late, with Node's DEP0137 warning, and on a full disk keeps deleted segments' space taken.
  const held = openFilesUnder(dirs);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  expect(held).toEqual([]);
});

/** The files of this process's open descriptors that lie under one of `roots` (Linux /proc). */
function openFilesUnder(roots: readonly string[]): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(join('/proc/self/fd', fd));
    } catch {
      continue; // closed meanwhile (the descriptor readdir itself used)
    }
    if (roots.some((r) => target.startsWith(`${r}/`))) out.push(target);
  }
  return out;
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'cardinal-queue-'));
  dirs.push(d);
  return d;
}

function recorder() {
  const calls = {
    appended: 0,
    refused: 0,
    dropped: [] as [string, number, number][],
    corruption: [] as string[],
    fsyncs: 0,
    fsyncRecords: 0,
  };
  const metrics: QueueMetrics = {
    appended: (s) => {
      calls.appended += s;
    },
    refused: (s) => {
      calls.refused += s;
    },
    dropped: (reason, records, samples) => calls.dropped.push([reason, records, samples]),
    sent: () => undefined,
    retried: () => undefined,
    corruption: (kind) => calls.corruption.push(kind),
    fsync: (_s, records) => {
      calls.fsyncs++;
      calls.fsyncRecords += records;
    },
  };
  const logs: string[] = [];
  const log = (_o: object, msg: string) => logs.push(msg);
  return { calls, metrics, logger: { info: () => undefined, warn: log, error: log }, logs };
}

function entry(i: number, size = 50, tenant?: string): QueueEntry {
  return {
    version: '1.0',
    tenant,
    enqueuedAtMs: 1_700_000_000_000 + i,
    series: 1,
    samples: 10,
    histograms: 0,
    exemplars: 0,
    metadata: 0,
    body: Buffer.alloc(size, i % 256),
  };
}

async function open(dir: string, r: ReturnType<typeof recorder>, over: Partial<DiskQueueOptions> = {}) {
  return DiskQueue.open({
    dir,
    maxBytes: 1 << 20,
    segmentMaxBytes: 1 << 16,
    fullPolicy: 'reject',
    fullCode: 'QUEUE_FULL',
    metrics: r.metrics,
    logger: r.logger,
    ...over,
  });
}

/** Reads every committed record from the consumer's position on. */
async function readAll(q: DiskQueue): Promise<QueueRecord[]> {
  const out: QueueRecord[] = [];
  let pos = q.replayEnd === undefined ? q.acked : q.acked;
  for (;;) {
    const r = await q.read(pos);
    if (r === undefined) return out;
    out.push(r);
    pos = r.end;
  }
}

const bodies = (rs: QueueRecord[]) => rs.map((r) => r.entry.body[0]);
const segments = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.seg'));

describe('DiskQueue', () => {
  it('reads back what was appended, in order, after a reopen too; acked records are gone after a reopen', async () => {
    const dir = tmp();
    const r = recorder();
    let q = await open(dir, r);
    for (let i = 0; i < 5; i++) await q.append(entry(i, 50, i % 2 ? 'team-a' : undefined));
    let got = await readAll(q);
    expect(bodies(got)).toEqual([0, 1, 2, 3, 4]);
    expect(got.map((x) => x.entry.tenant)).toEqual([undefined, 'team-a', undefined, 'team-a', undefined]);
    await q.ack(got[1]!.end, got.slice(0, 2));
    await q.close();

    q = await open(dir, r);
    got = await readAll(q);
    expect(bodies(got)).toEqual([2, 3, 4]);
    expect(r.calls.corruption).toEqual([]);
    await q.close();
  });

  it('rotates segments and deletes the ones wholly acknowledged', async () => {
    const dir = tmp();
    const r = recorder();
    const q = await open(dir, r, { segmentMaxBytes: 400 });
    for (let i = 0; i < 20; i++) await q.append(entry(i, 100));
    expect(segments(dir).length).toBeGreaterThan(5);
    const got = await readAll(q);
    expect(bodies(got)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await q.ack(got[9]!.end, got.slice(0, 10));
    const left = segments(dir).length;
    expect(left).toBeLessThan(8);
    expect(q.drained).toBe(false);
    await q.ack(got[19]!.end, got.slice(10));
    expect(q.drained).toBe(true);
    expect(segments(dir)).toHaveLength(1);
    expect(q.gauges()).toMatchObject({ segments: 1, oldestAgeSeconds: 0 });
    await q.close();
  });

  it('starts its next segment over a file that a creation cut short left behind, never over one with records', async () => {
    const dir = tmp();
    const r = recorder();
    const q = await open(dir, r, { segmentMaxBytes: 400 });
    await q.append(entry(0, 100));
    // On a full disk the header of a new segment can fail to be written after its file exists.
    const [first] = segments(dir);
    const next = (n: number) =>
      `${String(Number.parseInt(first!, 10) + n).padStart(first!.length - 4, '0')}.seg`;
    writeFileSync(join(dir, next(1)), Buffer.alloc(SEGMENT_HEADER_BYTES - 1));
    for (let i = 1; i < 6; i++) await q.append(entry(i, 100));
    expect(segments(dir)).toContain(next(1));
    expect(statSync(join(dir, next(1))).size).toBeGreaterThan(SEGMENT_HEADER_BYTES);
    expect(bodies(await readAll(q))).toEqual([0, 1, 2, 3, 4, 5]);
    // A file of the next id that holds more than a header is left alone, and the append fails.
    const last = segments(dir).at(-1)!;
    const after = `${String(Number.parseInt(last, 10) + 1).padStart(last.length - 4, '0')}.seg`;
    writeFileSync(join(dir, after), Buffer.alloc(SEGMENT_HEADER_BYTES + 10, 7));
    const appends = [];
    for (let i = 6; i < 12; i++)
      appends.push(
        q.append(entry(i, 100)).then(
          () => 'ok',
          (e: Error) => e.message,
        ),
      );
    const answers = await Promise.all(appends);
    expect(answers.filter((a) => a !== 'ok')).not.toEqual([]);
    for (const a of answers.filter((x) => x !== 'ok')) expect(a).toMatch(/EEXIST/);
    expect(readFileSync(join(dir, after))).toEqual(Buffer.alloc(SEGMENT_HEADER_BYTES + 10, 7));
    await q.close();
  });

  it('logs a run of failed appends once, and how many failed when a write succeeds again', async () => {
    const dir = tmp();
    const r = recorder();
    const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
    const at = (level: string) => (obj: object, msg: string) =>
      lines.push({ level, msg, obj: obj as Record<string, unknown> });
    const logger = { info: at('info'), warn: at('warn'), error: at('error') };
    let now = 1_000_000;
    // Every record is larger than half a segment: each append after the first starts a segment.
    const q = await open(dir, r, { segmentMaxBytes: 400, logger, now: () => now });
    await q.append(entry(0, 300));
    const [first] = segments(dir);
    const blocked = `${String(Number.parseInt(first!, 10) + 1).padStart(first!.length - 4, '0')}.seg`;
    // A file with records where the next segment goes: creating it fails (EEXIST) until it is gone.
    writeFileSync(join(dir, blocked), Buffer.alloc(SEGMENT_HEADER_BYTES + 10, 7));
    lines.length = 0;
    for (let i = 1; i <= 5; i++) {
      await expect(q.append(entry(i, 300))).rejects.toMatchObject({ code: 'QUEUE_WRITE_FAILED' });
      now += 1000;
    }
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['error', 'writing to the queue failed; further failures are counted until a write succeeds'],
    ]);
    expect(lines[0]!.obj).toMatchObject({ dir, records: 1 });
    rmSync(join(dir, blocked));
    await q.append(entry(6, 300));
    expect(lines.slice(1).map((l) => [l.level, l.msg, l.obj])).toEqual([
      ['info', 'writing to the queue works again', { dir, failedAppends: 5, codes: ['EEXIST'], seconds: 5 }],
    ]);
    // The run is over: the next failure is the first of a new run, and logged.
    const last = segments(dir).at(-1)!;
    const next = `${String(Number.parseInt(last, 10) + 1).padStart(last.length - 4, '0')}.seg`;
    writeFileSync(join(dir, next), Buffer.alloc(SEGMENT_HEADER_BYTES + 10, 7));
    await expect(q.append(entry(7, 300))).rejects.toMatchObject({ code: 'QUEUE_WRITE_FAILED' });
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(2);
    rmSync(join(dir, next));
    await q.append(entry(8, 300));
    expect(lines.at(-1)).toMatchObject({ level: 'info', obj: { failedAppends: 1 } });
    expect(bodies(await readAll(q))).toEqual([0, 6, 8]);
    await q.close();
  });

  it('shares one fsync among concurrent appends (group commit) and reads while appending', async () => {
    const dir = tmp();
    const r = recorder();
    const q = await open(dir, r, { segmentMaxBytes: 4096 });
    const n = 300;
    const seen: number[] = [];
    const reader = (async () => {
      let pos = q.acked;
      const ctl = new AbortController();
      while (seen.length < n) {
        const rec = await q.read(pos);
        if (rec === undefined) {
          await q.waitForData(1000, ctl.signal);
          continue;
        }
        seen.push(rec.entry.enqueuedAtMs - 1_700_000_000_000);
        await q.ack(rec.end, [rec]);
        pos = rec.end;
      }
    })();
    await Promise.all(Array.from({ length: n }, (_, i) => q.append(entry(i, 20 + (i % 7) * 30))));
    await reader;
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(r.calls.fsyncRecords).toBe(n);
    expect(r.calls.fsyncs).toBeLessThan(n);
    expect(r.calls.appended).toBe(n * 10);
    await q.close();
    // Everything was delivered: no segment is left, not even the one appends went to.
    expect(segments(dir)).toHaveLength(0);
  });

  it('recovers every record before a truncation at any byte of the last record', async () => {
    const base = tmp();
    const r0 = recorder();
    const q = await open(base, r0);
    for (let i = 0; i < 3; i++) await q.append(entry(i, 30));
    await q.close();
    const [seg] = segments(base);
    const path = (d: string) => join(d, seg!);
    const full = statSync(path(base)).size;
    const last = encodeRecord(entry(2, 30)).length;
    for (let cut = full - last; cut < full; cut++) {
      const dir = tmp();
      cpSync(base, dir, { recursive: true });
      truncateSync(path(dir), cut);
      const r = recorder();
      const reopened = await open(dir, r);
      expect(bodies(await readAll(reopened))).toEqual([0, 1]);
      // Cutting exactly at the record boundary leaves nothing torn to report.
      expect(r.calls.corruption).toEqual(cut === full - last ? [] : ['truncated']);
      await reopened.append(entry(9, 30));
      expect(bodies(await readAll(reopened))).toEqual([0, 1, 9]);
      await reopened.close();
      rmSync(dir, { recursive: true });
      dirs.pop();
    }
  });

  it('reports a flipped bit, keeps the records before it and those in later segments', async () => {
    const dir = tmp();
    const r0 = recorder();
    const q = await open(dir, r0, { segmentMaxBytes: 300 });
    for (let i = 0; i < 8; i++) await q.append(entry(i, 60));
    await q.close();
    const [first] = segments(dir);
    const path = join(dir, first!);
    const buf = readFileSync(path);
    const rec = encodeRecord(entry(0, 60)).length;
    // Flip a bit in the body of the second record of the first segment.
    buf[SEGMENT_HEADER_BYTES + rec + 50]! ^= 0x04;
    writeFileSync(path, buf);
    const r = recorder();
    const reopened = await open(dir, r, { segmentMaxBytes: 300 });
    const got = bodies(await readAll(reopened));
    expect(r.calls.corruption).toEqual(['checksum']);
    expect(got[0]).toBe(0);
    expect(got).not.toContain(1);
    expect(got.slice(1)).toEqual(Array.from({ length: 8 }, (_, i) => i).filter((i) => i >= got[1]!));
    expect(got.at(-1)).toBe(7);
    await reopened.close();
  });

  it('refuses appends when full (reject) and takes them again once space was freed', async () => {
    const dir = tmp();
    const r = recorder();
    const size = encodeRecord(entry(0, 100)).length;
    const q = await open(dir, r, { maxBytes: 20 * size + 200, segmentMaxBytes: 2 * size });
    let accepted = 0;
    let refusal: unknown;
    for (let i = 0; i < 30; i++) {
      try {
        await q.append(entry(i, 100));
        accepted++;
      } catch (err) {
        refusal = err;
        break;
      }
    }
    expect(refusal).toBeInstanceOf(CardinalError);
    expect((refusal as CardinalError).code).toBe('QUEUE_FULL');
    expect(q.refusing).toBe(true);
    expect(r.calls.refused).toBe(10);
    const got = await readAll(q);
    expect(got).toHaveLength(accepted);
    // Delivering one record is not enough room to report ready again; draining is.
    await q.ack(got[0]!.end, got.slice(0, 1));
    expect(q.refusing).toBe(true);
    await q.ack(got.at(-1)!.end, got.slice(1));
    expect(q.refusing).toBe(false);
    await q.append(entry(99, 100));
    await expect(q.append(entry(1, 10_000))).rejects.toMatchObject({ code: 'QUEUE_RECORD_TOO_LARGE' });
    await q.close();
  });

  it('drop-oldest drops whole old segments and counts what they held', async () => {
    const dir = tmp();
    const r = recorder();
    const size = encodeRecord(entry(0, 100)).length;
    const q = await open(dir, r, {
      maxBytes: 6 * size,
      segmentMaxBytes: 2 * size,
      fullPolicy: 'drop-oldest',
    });
    let drops = 0;
    q.onDrop(() => drops++);
    for (let i = 0; i < 20; i++) await q.append(entry(i, 100));
    const dropped = r.calls.dropped.filter(([reason]) => reason === 'full');
    const droppedRecords = dropped.reduce((n, [, records]) => n + records, 0);
    const left = await readAll(q);
    expect(droppedRecords + left.length).toBe(20);
    expect(dropped.reduce((n, [, , s]) => n + s, 0)).toBe(droppedRecords * 10);
    expect(bodies(left)).toEqual(Array.from({ length: left.length }, (_, i) => 20 - left.length + i));
    expect(drops).toBeGreaterThan(0);
    expect(q.bytes).toBeLessThanOrEqual(6 * size);
    await q.close();
  });

  it('after a crash, the batch that was in flight is the first again, exactly', async () => {
    const dir = tmp();
    const r = recorder();
    const crashed = await open(dir, r);
    for (let i = 0; i < 6; i++) await crashed.append(entry(i));
    const got = await readAll(crashed);
    await crashed.ack(got[0]!.end, got.slice(0, 1));
    await crashed.markSent(got[3]!.end);
    // No ack for records 1..3: the process "dies" here (its files are left as they are).
    const q = await open(dir, r);
    expect(q.acked).toEqual(got[1]!.start);
    expect(q.replayEnd).toEqual(got[3]!.end);
    expect(bodies(await readAll(q))).toEqual([1, 2, 3, 4, 5]);
    await q.close();
    // What a dead process's kernel would do: its handles go. Closing writes nothing.
    await crashed.close();
  });

  it('does not start on a segment of a newer format version, moves a headerless one aside, removes a torn one', async () => {
    const dir = tmp();
    writeFileSync(join(dir, '0000000000000001.seg'), Buffer.from('CRDQ\x07\0\0\0', 'latin1'));
    await expect(open(dir, recorder())).rejects.toThrow(/format version 7; this proxy reads version 1/);
    writeFileSync(join(dir, '0000000000000001.seg'), Buffer.from('garbage!', 'latin1'));
    // A segment whose creation a crash cut short (shorter than its header) held no records.
    writeFileSync(join(dir, '0000000000000002.seg'), Buffer.from('CRD', 'latin1'));
    const r = recorder();
    const q = await open(dir, r);
    expect(r.calls.corruption).toEqual(['header', 'truncated']);
    expect(readdirSync(dir)).toContain('0000000000000001.seg.corrupt');
    expect(readdirSync(dir)).not.toContain('0000000000000002.seg');
    await q.close();
  });

  it('an unreadable ack file means re-sending everything, never losing it', async () => {
    const dir = tmp();
    const r = recorder();
    let q = await open(dir, r);
    for (let i = 0; i < 3; i++) await q.append(entry(i));
    const got = await readAll(q);
    await q.ack(got[1]!.end, got.slice(0, 2));
    await q.close();
    writeFileSync(join(dir, 'ack'), 'nonsense');
    q = await open(dir, r);
    expect(r.calls.corruption).toEqual(['ack']);
    expect(bodies(await readAll(q))).toEqual([0, 1, 2]);
    await q.close();
  });

  it('behaves like a list under any sequence of concurrent appends, acknowledgements and reopens', async () => {
    const op = fc.oneof(
      fc.record({
        op: fc.constant('append' as const),
        n: fc.integer({ min: 1, max: 6 }),
        size: fc.nat({ max: 300 }),
      }),
      fc.record({ op: fc.constant('ack' as const), k: fc.nat({ max: 7 }) }),
      fc.record({ op: fc.constant('reopen' as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 20 }), async (ops) => {
        const dir = tmp();
        const r = recorder();
        const options = { segmentMaxBytes: 500 };
        let q = await open(dir, r, options);
        const model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if (o.op === 'append') {
            const ids = Array.from({ length: o.n }, () => next++);
            await Promise.all(ids.map((id) => q.append(entry(id, o.size))));
            model.push(...ids);
          } else if (o.op === 'ack') {
            const got: QueueRecord[] = [];
            let pos = q.acked;
            while (got.length < Math.min(o.k, model.length)) {
              const rec = await q.read(pos);
              if (rec === undefined) break;
              got.push(rec);
              pos = rec.end;
            }
            expect(got.map((x) => x.entry.enqueuedAtMs - 1_700_000_000_000)).toEqual(
              model.slice(0, got.length),
            );
            if (got.length > 0) await q.ack(got.at(-1)!.end, got);
            model.splice(0, got.length);
          } else {
            await q.close();
            q = await open(dir, r, options);
          }
        }
        const left = await readAll(q);
        expect(left.map((x) => x.entry.enqueuedAtMs - 1_700_000_000_000)).toEqual(model);
        expect(q.drained).toBe(model.length === 0);
        if (left.length > 0) await q.ack(left.at(-1)!.end, left);
        // Everything delivered: only the segment being appended to is left.
        expect(segments(dir)).toHaveLength(1);
        expect(r.calls.corruption).toEqual([]);
        await q.close();
        rmSync(dir, { recursive: true, force: true });
      }),
      { numRuns: 30 },
    );
    // Opens, fsyncs and closes real files: generous for a loaded machine.
  }, 30_000);
});
