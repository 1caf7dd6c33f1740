// The engine with limits shared through a store: several engines on one MemoryLimitStore behave
// like replicas on one Redis (the store's own semantics are tested against a real Redis in
// test/integration/limits-store.test.ts).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../codec/proto.js';
import { scanWriteRequestV1 } from '../codec/scan.js';
import type { TimeSeriesV1 } from '../codec/types.js';
import { type AdmissionCheck, type LimitStore, MemoryLimitStore } from '../limits/store.js';
import { compilePipeline, OVERFLOW_VALUE } from './compile.js';
import { type EngineObserver, PolicyEngine, type ProcessResult } from './engine.js';

const opts = {
  verdictCacheSize: 1000,
  maxTrackedSeries: 10_000,
  maxTrackedLabelValues: 10_000,
  maxMetricNames: 100,
};
const quiet: EngineObserver = { slot() {}, forwarded: () => false, newSeries() {} };

function ts(labels: Record<string, string>, t = 1000): TimeSeriesV1 {
  return {
    labels: Object.entries(labels)
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    samples: [{ value: 1, timestamp: t }],
    exemplars: [],
    histograms: [],
  };
}

function replica(spec: MetricPolicySpecT, store: LimitStore, replicas = 1) {
  const pipeline = compilePipeline([{ name: 'p', namespace: undefined, spec }]);
  return new PolicyEngine(pipeline, opts, quiet, { store, replicas });
}

/** Forwarded label sets as `name{k=v,...}` strings. */
async function send(engine: PolicyEngine, series: TimeSeriesV1[], nowMs = Date.now()): Promise<string[]> {
  const req = { timeseries: series, metadata: [] };
  const buf = Buffer.from(encodeWriteRequestV1(req));
  const r: ProcessResult = await engine.run(buf, scanWriteRequestV1(buf), undefined, nowMs);
  const out = r.unchanged ? req : r.body === undefined ? { timeseries: [] } : decodeWriteRequestV1(r.body);
  return out.timeseries.map((t) => t.labels.map((l) => `${l.name}=${l.value}`).join(','));
}

const perMetric = (
  maxSeries: number,
  onExceed: 'dropNewSeries' | 'overflow' = 'dropNewSeries',
): MetricPolicySpecT => ({
  limits: {
    perMetric: [
      { metric: 'm', maxSeries, onExceed, ...(onExceed === 'overflow' ? { overflowLabel: 'id' } : {}) },
    ],
  },
});

const bomb = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ts({ __name__: 'm', id: String(from + i) }));

describe('PolicyEngine with a shared limit store', () => {
  it('admits at most the limit over all replicas, whichever replica a series reaches first', async () => {
    const store = new MemoryLimitStore();
    const [a, b, c] = [
      replica(perMetric(5), store),
      replica(perMetric(5), store),
      replica(perMetric(5), store),
    ];
    const forwarded = [
      ...(await send(a, bomb(0, 3))),
      ...(await send(b, bomb(3, 3))),
      ...(await send(c, bomb(6, 3))),
    ];
    expect(forwarded).toHaveLength(5);
    // A series one replica admitted flows through every other replica too.
    expect(await send(c, bomb(0, 5))).toHaveLength(5);
    expect(await send(a, bomb(5, 4))).toEqual([]);
  });

  it('asks the store once per request, and not at all when every series is known', async () => {
    const store = new MemoryLimitStore();
    const a = replica(perMetric(100), store);
    await send(a, bomb(0, 50));
    expect(store.admits).toBe(1);
    await send(a, bomb(0, 50));
    expect(store.admits).toBe(1);
    await send(a, [...bomb(0, 50), ...bomb(50, 1)]);
    expect(store.admits).toBe(2);
  });

  it('does not ask again, for a while, about series the store refused', async () => {
    const store = new MemoryLimitStore();
    const a = replica(perMetric(5), store);
    expect(await send(a, bomb(0, 10))).toHaveLength(5);
    expect(store.admits).toBe(1);
    expect(await send(a, bomb(0, 10))).toHaveLength(5);
    expect(store.admits).toBe(1);
    // Once the refusal is older than refusedMs (5 s by default), the store is asked again.
    expect(await send(a, bomb(0, 10), Date.now() + 7000)).toHaveLength(5);
    expect(store.admits).toBe(2);
  });

  it('rewrites refused series onto the overflow series, which is not shared', async () => {
    const store = new MemoryLimitStore();
    const [a, b] = [replica(perMetric(2, 'overflow'), store), replica(perMetric(2, 'overflow'), store)];
    expect(await send(a, bomb(0, 2))).toHaveLength(2);
    const out = await send(b, bomb(2, 3));
    expect(out).toEqual([`__name__=m,id=${OVERFLOW_VALUE}`]);
    expect(store.size(store.scopes.keys().next().value!.split('\0')[0]!)).toBe(2);
  });

  it('falls back to limit / replicas while the store is down, and goes back to it', async () => {
    const store = new MemoryLimitStore();
    const a = replica(perMetric(9), store, 3);
    store.down = true;
    expect(await send(a, bomb(0, 10))).toHaveLength(3);
    store.down = false;
    // Admitted while down, these are known here and keep flowing; new ones ask the store again.
    expect(await send(a, bomb(0, 3))).toHaveLength(3);
    expect(await send(a, bomb(100, 20))).toHaveLength(9);
  });

  it('answers synchronously when nothing has to be asked', () => {
    const store = new MemoryLimitStore();
    const a = replica({ drop: ['x'] }, store);
    const buf = Buffer.from(encodeWriteRequestV1({ timeseries: bomb(0, 3), metadata: [] }));
    expect(a.run(buf, scanWriteRequestV1(buf), undefined, Date.now())).not.toBeInstanceOf(Promise);
  });

  it('per-label and per-tenant limits are global too', async () => {
    const store = new MemoryLimitStore();
    const spec: MetricPolicySpecT = {
      limits: { perLabel: [{ label: 'id', maxValues: 4, onExceed: 'dropNewSeries' }], perTenantMaxSeries: 6 },
    };
    const [a, b] = [replica(spec, store), replica(spec, store)];
    const series = (i: number) => ts({ __name__: `m${i % 2}`, id: String(i % 8), k: String(i) });
    const all = Array.from({ length: 20 }, (_, i) => series(i));
    const out = [...(await send(a, all.slice(0, 10))), ...(await send(b, all.slice(10)))];
    // Per metric at most 4 values of id, and at most 6 series over both metrics.
    expect(out.length).toBeLessThanOrEqual(6);
    for (const m of ['m0', 'm1']) {
      const ids = new Set(
        out.filter((s) => s.startsWith(`__name__=${m},`)).map((s) => /id=(\d+)/.exec(s)![1]),
      );
      expect(ids.size).toBeLessThanOrEqual(4);
    }
    expect(out.length).toBe(6);
  });

  it('property: any interleaving of requests over replicas admits min(limit, distinct series)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }),
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: 2 }),
            fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 15 }),
          ),
          {
            maxLength: 12,
          },
        ),
        async (limit, requests) => {
          const store = new MemoryLimitStore();
          const replicas = [0, 1, 2].map(() => replica(perMetric(limit), store));
          const admitted = new Set<string>();
          const seen = new Set<number>();
          for (const [r, ids] of requests) {
            const unique = [...new Set(ids)];
            for (const id of unique) seen.add(id);
            for (const s of await send(
              replicas[r]!,
              unique.map((id) => ts({ __name__: 'm', id: String(id) })),
            ))
              admitted.add(s);
          }
          expect(admitted.size).toBe(Math.min(limit, seen.size));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('tells the store about known series in the background, not per request', async () => {
    let touched = 0;
    const store = new MemoryLimitStore();
    const counting: LimitStore = {
      admit: (c: readonly AdmissionCheck[], now: number) => store.admit(c, now),
      touch: (...args: Parameters<MemoryLimitStore['touch']>) => {
        touched++;
        store.touch(...args);
      },
      get available() {
        return store.available;
      },
      counts: (scopes, now) => store.counts(scopes, now),
      status: () => store.status(),
      close: () => store.close(),
    };
    const a = replica(
      { limits: { window: '40s', perMetric: [{ metric: 'm', maxSeries: 100, onExceed: 'dropNewSeries' }] } },
      counting,
    );
    const t0 = 1_000_000_000_000;
    await send(a, bomb(0, 10), t0);
    for (let s = 1; s <= 9; s++) await send(a, bomb(0, 10), t0 + s * 1000);
    // Window 40 s: each known series is told again once its last telling is 10 s old.
    expect(touched).toBe(0);
    await send(a, bomb(0, 10), t0 + 10_000);
    expect(touched).toBe(10);
    await send(a, bomb(0, 10), t0 + 11_000);
    expect(touched).toBe(10);
  });
});

/** A store whose next `admit` waits until `release` is called: a request held in flight. */
function gated(store: MemoryLimitStore) {
  let hold: Promise<void> | undefined;
  let release = () => {};
  const s: LimitStore = {
    admit: async (c: readonly AdmissionCheck[], now: number) => {
      const wait = hold;
      hold = undefined;
      if (wait !== undefined) await wait;
      return store.admit(c, now);
    },
    touch: (...args: Parameters<MemoryLimitStore['touch']>) => store.touch(...args),
    get available() {
      return store.available;
    },
    counts: (scopes, now) => store.counts(scopes, now),
    status: () => store.status(),
    close: () => store.close(),
  };
  return {
    store: s,
    holdNext() {
      hold = new Promise((r) => {
        release = r;
      });
    },
    release: () => release(),
  };
}

describe('PolicyEngine with a shared limit store that answers', () => {
  const tenantBomb = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => ts({ __name__: 't', id: String(from + i) }));
  const spec: MetricPolicySpecT = { limits: { perTenantMaxSeries: 9 } };

  it('a refused series that keeps coming is asked about again and admitted once the limit has room', async () => {
    const memory = new MemoryLimitStore(2);
    const windowed: MetricPolicySpecT = { limits: { window: '1m', perTenantMaxSeries: 9 } };
    const a = replica(windowed, memory, 2);
    const b = replica(windowed, memory, 2);
    const t0 = 1_000_000_000_000;
    expect(await send(b, tenantBomb(0, 9), t0)).toHaveLength(9);
    // Series 100 comes every 2 s; b's nine are never seen again and leave the window after 1 m.
    let admittedAt: number | undefined;
    for (let t = 0; t <= 90_000 && admittedAt === undefined; t += 2000) {
      if ((await send(a, tenantBomb(100, 1), t0 + t)).length === 1) admittedAt = t;
    }
    // Refused while the nine are active; asked about again (a refusal is remembered 5 s, not
    // refreshed by each sighting) and admitted within a refusal's memory of the room opening.
    expect(admittedAt).toBeGreaterThan(60_000);
    expect(admittedAt).toBeLessThanOrEqual(68_000);
  });

  it('never admits a series on its own share while the store answers, with requests in flight together', async () => {
    const memory = new MemoryLimitStore(3);
    const g = gated(memory);
    // Three replicas: each one's share, were the store down, would be 3.
    const a = replica(spec, g.store, 3);
    const b = replica(spec, memory, 3);
    const t0 = 1_000_000_000_000;
    expect(await send(b, tenantBomb(0, 9), t0)).toHaveLength(9);
    // Refused at t0: replica a refuses series 100 again without asking for the next 5 s.
    expect(await send(a, tenantBomb(100, 1), t0)).toEqual([]);
    // A request with 101 (new, asked about) and then 100 (refused lately, not asked about) waits
    // for the store...
    g.holdNext();
    const held = send(a, [...tenantBomb(101, 1), ...tenantBomb(100, 1)], t0 + 1000);
    // ... while a later request on the same replica goes through, 6 s on.
    expect(await send(a, tenantBomb(200, 600), t0 + 7000)).toEqual([]);
    g.release();
    expect(await held).toEqual([]);
    expect(memory.size([...memory.scopes.keys()][0]!.split('\0')[0]!)).toBe(9);
  });
});
