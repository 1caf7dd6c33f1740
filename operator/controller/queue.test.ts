import { describe, expect, it, vi } from 'vitest';
import { WorkQueue } from './queue.js';

describe('WorkQueue', () => {
  it('puts a key added first at the front, moving it there when it waits already', async () => {
    const q = new WorkQueue<string>();
    for (const k of ['a', 'b', 'c']) q.add(k);
    q.add('c', true);
    q.add('d', true);
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await q.get())!);
    expect(got).toEqual(['d', 'c', 'a', 'b']);
  });

  it('queues a key once however often it is added', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('hands a key being processed to no one else, and queues it once more when it changed meanwhile', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    const key = await q.get();
    q.add('a');
    q.add('a');
    expect(q.length).toBe(0);
    q.done(key!);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('wakes a waiting worker', async () => {
    const q = new WorkQueue<string>();
    const next = q.get();
    q.add('a');
    expect(await next).toBe('a');
  });

  it('backs off per key, doubling, capped, and forgets on success', () => {
    const q = new WorkQueue<string>({ baseDelayMs: 10, maxDelayMs: 50 });
    expect([1, 2, 3, 4, 5].map(() => q.addRateLimited('a'))).toEqual([10, 20, 40, 50, 50]);
    expect(q.addRateLimited('b')).toBe(10);
    q.forget('a');
    expect(q.failures('a')).toBe(0);
    expect(q.addRateLimited('a')).toBe(10);
    void q.shutDown();
  });

  it('limits retries over all keys with a token bucket', () => {
    let now = 0;
    const q = new WorkQueue<string>({ baseDelayMs: 1, retriesPerSecond: 10, retryBurst: 2, now: () => now });
    expect(q.addRateLimited('a')).toBe(1);
    expect(q.addRateLimited('b')).toBe(1);
    expect(q.addRateLimited('c')).toBe(100);
    now = 1000;
    expect(q.addRateLimited('d')).toBe(1);
    void q.shutDown();
  });

  it('queues a rate-limited key after its delay', async () => {
    vi.useFakeTimers();
    try {
      const q = new WorkQueue<string>({ baseDelayMs: 100 });
      q.addRateLimited('a');
      expect(q.length).toBe(0);
      vi.advanceTimersByTime(100);
      expect(q.length).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drains on shutdown: queued keys are still handed out, then get resolves to undefined', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    q.add('b');
    const key = await q.get();
    let drained = false;
    const shutdown = q.shutDown().then(() => {
      drained = true;
    });
    q.add('c');
    expect(q.length).toBe(1);
    q.done(key!);
    const last = await q.get();
    expect(last).toBe('b');
    await Promise.resolve();
    expect(drained).toBe(false);
    q.done(last!);
    await shutdown;
    expect(await q.get()).toBeUndefined();
  });
});
