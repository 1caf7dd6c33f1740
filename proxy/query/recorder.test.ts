import { describe, expect, it } from 'vitest';
import {
  bytesPerMetric,
  DAY_BUCKET_MS,
  HOUR_BUCKET_MS,
  MINUTE_BUCKET_MS,
  UsageRecorder,
} from './recorder.js';

const T0 = Date.UTC(2026, 0, 10, 12, 0, 0);
const opts = { maxMetrics: 100, maxReaders: 10, readersPerMetric: 2 };
const row = (r: UsageRecorder, name: string, now: number) => r.rows(now, 10).find((x) => x.metric === name);

describe('UsageRecorder', () => {
  it('counts a metric once per request, however often the request names it', () => {
    const r = new UsageRecorder(opts, T0);
    r.record(['a', 'a', 'b'], [], 'x', T0);
    r.record(['a'], [], 'y', T0 + 1000);
    expect(row(r, 'a', T0 + 1000)).toMatchObject({
      reads1h: 2,
      reads24h: 2,
      reads30d: 2,
      readsTotal: 2,
      lastRead: T0 + 1000,
    });
    expect(row(r, 'b', T0 + 1000)).toMatchObject({ readsTotal: 1, lastRead: T0 });
    expect(r.readers()).toEqual([
      { reader: 'x', reads: 1, lastRead: T0 },
      { reader: 'y', reads: 1, lastRead: T0 + 1000 },
    ]);
  });

  it('lets reads leave the 1 h, 24 h and 30 d windows bucket by bucket', () => {
    const r = new UsageRecorder(opts, T0);
    r.record(['a'], [], 'x', T0);
    expect(row(r, 'a', T0 + (60 * MINUTE_BUCKET_MS) / 5 - 1)).toMatchObject({ reads1h: 1 });
    expect(row(r, 'a', T0 + 12 * MINUTE_BUCKET_MS)).toMatchObject({ reads1h: 0, reads24h: 1, reads30d: 1 });
    expect(row(r, 'a', T0 + 24 * HOUR_BUCKET_MS)).toMatchObject({ reads24h: 0, reads30d: 1 });
    expect(row(r, 'a', T0 + 30 * DAY_BUCKET_MS)).toMatchObject({ reads30d: 0, readsTotal: 1, lastRead: T0 });
    // A read after the windows emptied counts in all of them again.
    r.record(['a'], [], 'x', T0 + 31 * DAY_BUCKET_MS);
    expect(row(r, 'a', T0 + 31 * DAY_BUCKET_MS)).toMatchObject({
      reads1h: 1,
      reads24h: 1,
      reads30d: 1,
      readsTotal: 2,
    });
  });

  it('resolves name patterns against the known metrics, cached until they change', () => {
    const known = { gen: 1, names: ['node_cpu', 'node_mem', 'up'] };
    const r = new UsageRecorder(opts, T0, { generation: () => known.gen, names: () => known.names });
    r.record([], ['node_.*'], 'x', T0);
    expect(r.names()).toEqual(['node_cpu', 'node_mem']);
    known.names = [...known.names, 'node_disk'];
    known.gen++;
    r.record(['node_cpu'], ['node_.*'], 'x', T0);
    expect(row(r, 'node_cpu', T0)?.readsTotal).toBe(2);
    expect(row(r, 'node_disk', T0)?.readsTotal).toBe(1);
    expect(r.patternReads).toBe(4);
    r.record([], ['(unclosed'], 'x', T0);
    expect(r.invalidPatterns).toBe(1);
  });

  it('keeps the readers read most recently, within its bounds', () => {
    const r = new UsageRecorder({ maxMetrics: 2, maxReaders: 3, readersPerMetric: 2 }, T0);
    r.record(['a'], [], 'r1', T0);
    r.record(['a'], [], 'r2', T0 + 1);
    r.record(['a'], [], 'r1', T0 + 2);
    r.record(['a'], [], 'r3', T0 + 3);
    // r2 was read least recently: r3 took its place.
    expect(
      row(r, 'a', T0 + 3)
        ?.readers.map((x) => x.reader)
        .sort(),
    ).toEqual(['r1', 'r3']);
    r.record(['a'], [], 'r4', T0 + 4);
    expect(r.readers().find((x) => x.reader === 'other')).toMatchObject({ reads: 1 });
    r.record(['b', 'c', 'd'], [], 'r1', T0 + 5);
    expect(r.trackedMetrics).toBe(2);
    expect(r.untracked).toBe(2);
  });

  it('continues from its state as it was saved', () => {
    const r = new UsageRecorder(opts, T0);
    r.record(['a', 'b'], [], 'dash', T0);
    r.record(['a'], [], 'rule', T0 + HOUR_BUCKET_MS);
    const saved = JSON.parse(JSON.stringify(r.toState(T0 + HOUR_BUCKET_MS)));
    const later = T0 + 2 * DAY_BUCKET_MS;
    const back = UsageRecorder.fromState(saved, opts, later);
    expect(back.sinceMs).toBe(T0);
    expect(back.rows(later, 10)).toEqual(r.rows(later, 10));
    expect(back.readers()).toEqual(r.readers());
    expect(row(back, 'a', later)).toMatchObject({
      reads24h: 0,
      reads30d: 2,
      readsTotal: 2,
      lastRead: T0 + HOUR_BUCKET_MS,
    });
    expect(() => UsageRecorder.fromState({ ...saved, metrics: [{ name: 'a' }] }, opts, later)).toThrow(
      /metrics\[0\]\.total/,
    );
    expect(() => UsageRecorder.fromState({ version: 2 }, opts, later)).toThrow(/version/);
  });

  it('documents its memory: a fixed number of bytes per metric', () => {
    expect(bytesPerMetric(5)).toBe(16 + 4 * 66 + 5 * 16 + 4);
  });

  it('absorbs another recorder: reads summed per bucket and reader, the latest read kept, counters added', () => {
    const a = new UsageRecorder(opts, T0);
    const b = new UsageRecorder(opts, T0 - DAY_BUCKET_MS);
    a.record(['m', 'only_a'], [], 'x', T0);
    b.record(['m'], [], 'x', T0 - 2 * HOUR_BUCKET_MS);
    b.record(['m'], [], 'y', T0 + 5000);
    b.record(['m'], [], 'z', T0 + 6000);
    b.untracked = 3;
    const now = T0 + 10_000;
    a.absorb(b, now);
    expect(row(a, 'm', now)).toMatchObject({
      reads1h: 3,
      reads24h: 4,
      reads30d: 4,
      readsTotal: 4,
      lastRead: T0 + 6000,
    });
    // Two readers a metric: the two read most recently (b had let x go for z already).
    expect(row(a, 'm', now)?.readers).toEqual([
      { reader: 'z', reads: 1, lastRead: T0 + 6000 },
      { reader: 'y', reads: 1, lastRead: T0 + 5000 },
    ]);
    const c = new UsageRecorder(opts, T0);
    c.record(['m'], [], 'x', T0 + 7000);
    a.absorb(c, now);
    expect(row(a, 'm', now)?.readers).toEqual([
      { reader: 'x', reads: 1, lastRead: T0 + 7000 },
      { reader: 'z', reads: 1, lastRead: T0 + 6000 },
    ]);
    // The same reader in both: its reads added.
    const d = new UsageRecorder(opts, T0);
    d.record(['m'], [], 'x', T0 + 8000);
    a.absorb(d, now);
    expect(row(a, 'm', now)?.readers[0]).toEqual({ reader: 'x', reads: 2, lastRead: T0 + 8000 });
    expect(row(a, 'only_a', now)).toMatchObject({ readsTotal: 1 });
    expect(row(a, 'm', now)).toMatchObject({ readsTotal: 6, lastRead: T0 + 8000 });
    expect(a.readers()).toEqual([
      { reader: 'x', reads: 4, lastRead: T0 + 8000 },
      { reader: 'y', reads: 1, lastRead: T0 + 5000 },
      { reader: 'z', reads: 1, lastRead: T0 + 6000 },
    ]);
    expect(a.untracked).toBe(3);
    expect(a.sinceMs).toBe(T0 - DAY_BUCKET_MS);
    expect(a.trackedMetrics).toBe(2);
  });

  it('absorbing past maxMetrics counts the metrics it cannot track as untracked reads', () => {
    const a = new UsageRecorder({ ...opts, maxMetrics: 1 }, T0);
    const b = new UsageRecorder(opts, T0);
    a.record(['a'], [], 'x', T0);
    b.record(['b'], [], 'x', T0);
    b.record(['b'], [], 'x', T0 + 1);
    a.absorb(b, T0 + 2);
    expect(a.trackedMetrics).toBe(1);
    expect(a.untracked).toBe(2);
  });
});
