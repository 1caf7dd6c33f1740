import { describe, expect, it } from 'vitest';
import { RateLimiterClosedError, TokenBucket } from './ratelimit.js';

/** A bucket on a fake clock whose sleeps advance the clock and are recorded. */
function bucket(qps: number, burst: number) {
  let now = 0;
  const sleeps: number[] = [];
  const b = new TokenBucket({
    qps,
    burst,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { b, sleeps, advance: (ms: number) => (now += ms) };
}

describe('TokenBucket', () => {
  it('lets a burst through, then one per 1/qps seconds', async () => {
    const { b, sleeps } = bucket(5, 2);
    await b.take();
    await b.take();
    expect(sleeps).toEqual([]);
    await b.take();
    await b.take();
    // Tokens are reserved in order: the second waiter waits behind the first.
    expect(sleeps).toEqual([200, 400]);
  });

  it('refills with time, up to the burst', async () => {
    const { b, sleeps, advance } = bucket(1, 3);
    for (let i = 0; i < 3; i++) await b.take();
    advance(60_000);
    for (let i = 0; i < 3; i++) await b.take();
    expect(sleeps).toEqual([]);
    await b.take();
    expect(sleeps).toEqual([1000]);
  });

  it('refuses to hand out tokens once closed', async () => {
    const { b } = bucket(1, 1);
    b.close();
    await expect(b.take()).rejects.toThrow(RateLimiterClosedError);
  });

  it('hands out every token at once with qps 0, until closed', async () => {
    const { b, sleeps } = bucket(0, 1);
    for (let i = 0; i < 100; i++) await b.take();
    expect(sleeps).toEqual([]);
    b.close();
    await expect(b.take()).rejects.toThrow(RateLimiterClosedError);
  });

  it.each([
    [-1, 1],
    [1, 0],
    [1, 1.5],
  ])('rejects qps %d, burst %d', (qps, burst) => {
    expect(() => new TokenBucket({ qps, burst })).toThrow(RangeError);
  });
});
