// The shared limit store against real Redis (Debian's redis-server): a single server and a Redis
// Cluster of three masters. The admission script is checked against its model (runGroup in
// proxy/limits/store.ts) on random check sequences; then timeouts, fallback and recovery.

import fc from 'fast-check';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLimitStore } from '../../proxy/limits/redis.js';
import {
  type AdmissionCheck,
  ANSWER_ADMITTED,
  ANSWER_REFUSED,
  CHECK_SERIES_START,
  MemoryLimitStore,
} from '../../proxy/limits/store.js';
import {
  eventually,
  type RedisProgram,
  startRedis,
  startRedisCluster,
  useCleanup,
} from '../framework/index.js';

const logger = { warn() {}, info() {} };

function storeOn(
  redis: RedisProgram,
  o: { password?: string; registry?: Registry; timeoutMs?: number } = {},
) {
  return new RedisLimitStore({
    url: redis.url,
    password: o.password,
    prefix: 'test',
    timeoutMs: o.timeoutMs ?? 2000,
    connectTimeoutMs: 2000,
    retryIntervalMs: 200,
    flushIntervalMs: 100,
    maxPendingTouches: 10_000,
    replicas: () => ({ count: 3, source: 'flag' }),
    registry: o.registry ?? new Registry(),
    logger,
  });
}

const check = (
  tag: string,
  member: string,
  limit: number,
  flags = CHECK_SERIES_START,
  sub = '',
): AdmissionCheck => ({
  tag,
  sub,
  member,
  limit,
  windowSeconds: 5,
  flags,
});

describe.each([
  ['a single server', () => startRedis({ password: 'not-in-logs' })],
  ['a Redis Cluster of three masters', () => startRedisCluster({ password: 'not-in-logs' })],
])('the limit store on %s', (_name, start) => {
  const track = useCleanup();
  let redis: RedisProgram;
  let store: RedisLimitStore;
  beforeAll(async () => {
    redis = track(await start());
    store = storeOn(redis, { password: 'not-in-logs' });
    expect(await store.waitReady(10_000)).toBe(true);
  }, 120_000);
  afterAll(async () => store?.close());

  it('answers every check sequence exactly as its model does', async () => {
    let run = 0;
    const arbCheck = fc.record({
      tag: fc.constantFrom('a', 'b', 'c', 'd'),
      sub: fc.constantFrom('', ':l0'),
      member: fc.integer({ min: 0, max: 25 }).map((n) => n.toString(36)),
      limit: fc.constantFrom(-1, 1, 2, 3, 5, 8),
      windowSeconds: fc.constant(5),
      flags: fc.integer({ min: 0, max: 15 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 4 }), fc.array(arbCheck, { minLength: 1, maxLength: 30 })),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        async (batches) => {
          run++;
          const model = new MemoryLimitStore();
          let now = 1_900_000_000_000;
          for (const [advance, checks] of batches) {
            now += advance * 1000;
            // Fresh scopes per run: the tag is unique to it.
            const mine = checks.map((c) => ({ ...c, tag: `${process.pid}.${run}.${c.tag}` }));
            const real = await store.admit(mine, now);
            const expected = await model.admit(mine, now);
            expect(real).toEqual(expected);
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);

  it('admits the last place under a limit to one of two replicas asking at once', async () => {
    const other = storeOn(redis, { password: 'not-in-logs' });
    expect(await other.waitReady(10_000)).toBe(true);
    try {
      for (let round = 0; round < 20; round++) {
        const tag = `race.${round}`;
        const [x, y] = await Promise.all([
          store.admit([check(tag, 'x', 1)], Date.now()),
          other.admit([check(tag, 'y', 1)], Date.now()),
        ]);
        expect([x![0], y![0]].sort()).toEqual([ANSWER_ADMITTED, ANSWER_REFUSED]);
      }
    } finally {
      await other.close();
    }
  });

  it('counts the active members of scopes on any node, for statistics', async () => {
    const now = Date.now();
    const checks = [
      check('count.a', 'x', 10),
      check('count.a', 'y', 10),
      check('count.b', 'x', 10),
      check('count.b', 'y', 10, CHECK_SERIES_START, ':l0'),
    ];
    await store.admit(checks.slice(0, 1), now - 9000);
    await store.admit(checks, now);
    const scopes = [
      { tag: 'count.a', sub: '', windowSeconds: 5 },
      { tag: 'count.b', sub: '', windowSeconds: 5 },
      { tag: 'count.b', sub: ':l0', windowSeconds: 5 },
      { tag: 'count.none', sub: '', windowSeconds: 5 },
    ];
    expect(await store.counts(scopes, now)).toEqual([2, 1, 1, 0]);
    // Seven seconds on, the window (5 s) holds none of them.
    expect(await store.counts(scopes, now + 7000)).toEqual([0, 0, 0, 0]);
  });

  it('keeps a member active through batched activity, and keys carry the hash tag', async () => {
    const now = Date.now();
    await store.admit([check('touch', 'm1', 10)], now - 4000);
    store.touch('touch', '', 'm1', 5);
    const client = redis.client();
    try {
      await eventually(async () => {
        const score = Number(await client.zscore('{test:touch}', 'm1'));
        expect(score).toBeGreaterThanOrEqual(Math.floor(now / 1000));
      });
      // Two seconds later the window (5 s) would have dropped it without the refresh.
      expect((await store.admit([check('touch', 'm2', 1)], now + 2000))![0]).toBe(ANSWER_REFUSED);
      expect(await client.ttl('{test:touch}')).toBeGreaterThan(60);
    } finally {
      client.disconnect();
    }
  });
});

describe('a store that stops answering', () => {
  const track = useCleanup();

  it('falls back at once, counts it, and goes back to the store when it answers again', async () => {
    const redis = track(await startRedis());
    const registry = new Registry();
    const store = storeOn(redis, { registry, timeoutMs: 100 });
    expect(await store.waitReady(10_000)).toBe(true);
    try {
      expect(await store.admit([check('f', 'a', 5)], Date.now())).toEqual(new Uint8Array([ANSWER_ADMITTED]));
      await redis.stop();
      expect(await store.admit([check('f', 'b', 5)], Date.now())).toBeUndefined();
      expect(store.available).toBe(false);
      expect(store.status().state).toBe('fallback');
      // While falling back, admit answers without asking.
      expect(await store.admit([check('f', 'c', 5)], Date.now())).toBeUndefined();
      const text = await registry.metrics();
      expect(text).toMatch(/cardinal_proxy_limits_store_fallback 1/);
      expect(text).toMatch(/cardinal_proxy_limits_store_errors_total\{op="admit",reason="[a-z]+"\} 1/);
      await redis.start();
      await eventually(() => expect(store.available).toBe(true), { timeoutMs: 30_000 });
      // Nothing was persisted: the restarted store starts empty.
      expect(await store.admit([check('f', 'd', 5)], Date.now())).toEqual(new Uint8Array([ANSWER_ADMITTED]));
      expect(await registry.metrics()).toMatch(/cardinal_proxy_limits_store_fallback 0/);
    } finally {
      await store.close();
    }
  }, 90_000);

  it('falls back when the store is too slow, never waiting longer than the timeout', async () => {
    const redis = track(await startRedis());
    const store = storeOn(redis, { timeoutMs: 100 });
    expect(await store.waitReady(10_000)).toBe(true);
    try {
      expect(await store.admit([check('s', 'a', 5)], Date.now())).toBeDefined();
      redis.programs[0]!.kill('SIGSTOP');
      const answer = await store.admit([check('s', 'b', 5)], Date.now());
      expect(answer).toBeUndefined();
      expect(store.status().lastError).toMatch(/timed? ?out/i);
      redis.programs[0]!.kill('SIGCONT');
      await eventually(() => expect(store.available).toBe(true), { timeoutMs: 30_000 });
    } finally {
      redis.programs[0]!.kill('SIGCONT');
      await store.close();
    }
  }, 90_000);
});
