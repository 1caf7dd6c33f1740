import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type Decision,
  decide,
  heldSpec,
  LeaderElector,
  type LeaderElectorOptions,
  type Lease,
  type LeaseApi,
  LeaseApiError,
  type LeaseRef,
  type LeaseSpec,
  releasedSpec,
} from './lease.js';

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);
const SECOND = 1000;

function lease(spec: Partial<LeaseSpec>, resourceVersion = '7'): Lease {
  return {
    metadata: { resourceVersion },
    spec: {
      holderIdentity: 'b',
      leaseDurationSeconds: 15,
      acquireTime: NOW - 60 * SECOND,
      renewTime: NOW - 5 * SECOND,
      leaseTransitions: 3,
      ...spec,
    },
  };
}

describe('decide', () => {
  it.each<[string, Lease | undefined, Decision]>([
    ['absent', undefined, 'acquire'],
    ['ours', lease({ holderIdentity: 'a' }), 'renew'],
    ['ours even when expired', lease({ holderIdentity: 'a', renewTime: NOW - 60 * SECOND }), 'renew'],
    ["someone else's, fresh", lease({}), 'follow'],
    ["someone else's, renewed exactly leaseDuration ago", lease({ renewTime: NOW - 15 * SECOND }), 'follow'],
    ["someone else's, expired", lease({ renewTime: NOW - 15 * SECOND - 1 }), 'acquire'],
    [
      "someone else's, released",
      lease({ holderIdentity: '', leaseDurationSeconds: 1, renewTime: NOW }),
      'acquire',
    ],
    [
      "someone else's, expired by the holder's shorter duration",
      lease({ leaseDurationSeconds: 2, renewTime: NOW - 3 * SECOND }),
      'acquire',
    ],
    [
      "someone else's, fresh by the holder's longer duration",
      lease({ leaseDurationSeconds: 60, renewTime: NOW - 30 * SECOND }),
      'follow',
    ],
    [
      "someone else's without a duration: ours applies",
      lease({ leaseDurationSeconds: undefined, renewTime: NOW - 16 * SECOND }),
      'acquire',
    ],
    [
      "someone else's without renewTime: acquireTime counts",
      lease({ renewTime: undefined, acquireTime: NOW - 1 * SECOND }),
      'follow',
    ],
    ["someone else's without any time", lease({ renewTime: undefined, acquireTime: undefined }), 'acquire'],
  ])('%s', (_case, current, expected) => {
    expect(decide(current, NOW, 'a', 15 * SECOND)).toBe(expected);
  });
});

describe('heldSpec and releasedSpec', () => {
  it.each<[string, LeaseSpec | undefined, LeaseSpec]>([
    [
      'creating',
      undefined,
      {
        holderIdentity: 'a',
        leaseDurationSeconds: 15,
        acquireTime: NOW,
        renewTime: NOW,
        leaseTransitions: 0,
      },
    ],
    [
      'renewing keeps acquireTime and the transition count',
      lease({ holderIdentity: 'a' }).spec,
      {
        holderIdentity: 'a',
        leaseDurationSeconds: 15,
        acquireTime: NOW - 60 * SECOND,
        renewTime: NOW,
        leaseTransitions: 3,
      },
    ],
    [
      "taking someone else's over counts a transition",
      lease({}).spec,
      {
        holderIdentity: 'a',
        leaseDurationSeconds: 15,
        acquireTime: NOW,
        renewTime: NOW,
        leaseTransitions: 4,
      },
    ],
    [
      'taking a released one over counts a transition',
      releasedSpec(lease({}).spec, NOW - SECOND),
      {
        holderIdentity: 'a',
        leaseDurationSeconds: 15,
        acquireTime: NOW,
        renewTime: NOW,
        leaseTransitions: 4,
      },
    ],
  ])('%s', (_case, previous, expected) => {
    expect(heldSpec(previous, 'a', NOW, 15)).toEqual(expected);
  });

  it('releasing empties the holder and keeps the transition count', () => {
    expect(releasedSpec(lease({ holderIdentity: 'a' }).spec, NOW)).toEqual({
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: NOW,
      renewTime: NOW,
      leaseTransitions: 3,
    });
  });
});

/** One Lease in memory with the API server's optimistic concurrency. */
class MemoryLease implements LeaseApi {
  current: Lease | undefined;
  #version = 0;

  async get(_ref: LeaseRef): Promise<Lease | undefined> {
    return structuredClone(this.current);
  }

  async create({ spec }: LeaseRef & { spec: LeaseSpec }): Promise<Lease> {
    if (this.current !== undefined) throw new LeaseApiError(409, 'already exists');
    return this.put(spec);
  }

  async replace({ spec, resourceVersion }: LeaseRef & { resourceVersion: string; spec: LeaseSpec }) {
    if (this.current === undefined) throw new LeaseApiError(404, 'not found');
    if (this.current.metadata.resourceVersion !== resourceVersion) throw new LeaseApiError(409, 'conflict');
    return this.put(spec);
  }

  /** Writes the Lease as another party would. */
  put(spec: LeaseSpec): Lease {
    this.#version += 1;
    this.current = { metadata: { resourceVersion: String(this.#version) }, spec: { ...spec } };
    return structuredClone(this.current);
  }
}

/** A LeaseApi whose calls fail, as if the API server were unreachable, while `down()` says so. */
function unreliable(api: LeaseApi, down: () => boolean): LeaseApi {
  const refused = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));
  return {
    get: (ref) => (down() ? refused() : api.get(ref)),
    create: (request) => (down() ? refused() : api.create(request)),
    replace: (request) => (down() ? refused() : api.replace(request)),
  };
}

interface Candidate {
  elector: LeaderElector;
  events: string[];
  signals: AbortSignal[];
}

describe('LeaderElector', () => {
  const started: LeaderElector[] = [];

  beforeEach(() => {
    vi.useFakeTimers({ now: NOW });
  });
  afterEach(async () => {
    for (const elector of started.splice(0)) await elector.stop();
    vi.useRealTimers();
  });

  function candidate(
    identity: string,
    client: LeaseApi,
    extra: Partial<LeaderElectorOptions> = {},
  ): Candidate {
    const events: string[] = [];
    const signals: AbortSignal[] = [];
    const elector = new LeaderElector({
      namespace: 'ops',
      name: 'cardinal-operator',
      identity,
      client,
      onStartedLeading: (signal) => {
        signals.push(signal);
        events.push(`started at ${Date.now() - NOW}`);
      },
      onStoppedLeading: () => {
        events.push(`stopped at ${Date.now() - NOW}`);
      },
      ...extra,
    });
    started.push(elector);
    elector.start();
    return { elector, events, signals };
  }

  const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

  it('creates an absent Lease, leads, and renews it every retry period', async () => {
    const store = new MemoryLease();
    const a = candidate('a', store);
    await advance(0);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events).toEqual(['started at 0']);
    expect(store.current?.spec).toEqual({
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: NOW,
      renewTime: NOW,
      leaseTransitions: 0,
    });
    await advance(2 * SECOND);
    expect(store.current?.spec).toMatchObject({ acquireTime: NOW, renewTime: NOW + 2 * SECOND });
    await advance(60 * SECOND);
    expect(store.current?.spec.renewTime).toBe(NOW + 62 * SECOND);
    expect(a.events).toEqual(['started at 0']);
  });

  it('lets only one of two candidates lead, for as long as the leader renews', async () => {
    const store = new MemoryLease();
    const a = candidate('a', store);
    const b = candidate('b', store);
    for (let t = 0; t < 60; t++) {
      await advance(SECOND);
      expect([a.elector.isLeader(), b.elector.isLeader()]).toEqual([true, false]);
    }
    expect(b.events).toEqual([]);
    expect(store.current?.spec.holderIdentity).toBe('a');
  });

  it('steps down exactly at the renew deadline when renewals fail, and a follower takes over after the lease expires', async () => {
    const store = new MemoryLease();
    let broken = false;
    const errors: unknown[] = [];
    const a = candidate(
      'a',
      unreliable(store, () => broken),
      { onError: (err) => errors.push(err) },
    );
    await advance(0);
    const b = candidate('b', store);
    await advance(0);
    expect(a.elector.isLeader()).toBe(true);
    broken = true;
    await advance(10 * SECOND - 1);
    expect(a.elector.isLeader()).toBe(true);
    await advance(1);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started at 0', 'stopped at 10000']);
    expect(a.signals[0]?.aborted).toBe(true);
    expect(errors.length).toBeGreaterThan(0);
    // The last renewal was at 0 and the Lease lasts 15 s; b reads it every 2 s.
    await advance(5 * SECOND);
    expect(b.elector.isLeader()).toBe(false);
    await advance(2 * SECOND);
    expect(b.events).toEqual(['started at 16000']);
    expect(store.current?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('steps down at once when another party has taken the Lease (409 on renewal)', async () => {
    const store = new MemoryLease();
    const a = candidate('a', store);
    await advance(0);
    await advance(SECOND);
    store.put(heldSpec(store.current?.spec, 'intruder', Date.now(), 15));
    await advance(SECOND);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started at 0', 'stopped at 2000']);
    expect(store.current?.spec.holderIdentity).toBe('intruder');
  });

  it('waits a whole lease duration by its own clock before taking a Lease whose renewTime looks stale', async () => {
    // The holder's clock may lag ours: its renewTime says expired, yet it may still be renewing.
    const store = new MemoryLease();
    store.put(lease({ holderIdentity: 'x', renewTime: NOW - 60 * SECOND }).spec);
    const a = candidate('a', store);
    await advance(14 * SECOND);
    expect(a.elector.isLeader()).toBe(false);
    await advance(2 * SECOND);
    expect(a.events).toEqual(['started at 16000']);
    expect(store.current?.spec).toMatchObject({
      holderIdentity: 'a',
      leaseTransitions: 4,
      acquireTime: NOW + 16 * SECOND,
    });
  });

  it('follows a holder that keeps renewing even when its renewTime looks stale', async () => {
    const store = new MemoryLease();
    store.put(lease({ holderIdentity: 'x', renewTime: NOW - 60 * SECOND }).spec);
    const a = candidate('a', store);
    for (let t = 0; t < 30; t++) {
      await advance(SECOND);
      // Each write changes the resourceVersion, which is what a candidate watches.
      store.put({ ...(store.current as Lease).spec, renewTime: Date.now() - 60 * SECOND });
      expect(a.elector.isLeader()).toBe(false);
    }
  });

  it('release() waits for onStoppedLeading, then hands the Lease over within a retry period', async () => {
    const store = new MemoryLease();
    let finishWrites = () => {};
    const a = candidate('a', store, {
      onStoppedLeading: () => new Promise<void>((resolve) => (finishWrites = resolve)),
    });
    await advance(0);
    const b = candidate('b', store);
    await advance(5 * SECOND);
    let released = false;
    const releasing = a.elector.release().then(() => (released = true));
    await advance(0);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.signals[0]?.aborted).toBe(true);
    // Still a's while its writes finish.
    expect(store.current?.spec.holderIdentity).toBe('a');
    expect(released).toBe(false);
    finishWrites();
    await releasing;
    expect(store.current?.spec).toMatchObject({
      holderIdentity: '',
      leaseDurationSeconds: 1,
      leaseTransitions: 0,
    });
    await advance(2 * SECOND);
    expect(b.elector.isLeader()).toBe(true);
    expect(store.current?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('stop() stops leading and leaves the Lease to expire', async () => {
    const store = new MemoryLease();
    const a = candidate('a', store);
    await advance(0);
    await a.elector.stop();
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started at 0', 'stopped at 0']);
    const before = structuredClone(store.current);
    await advance(30 * SECOND);
    expect(store.current).toEqual(before);
  });

  it('gives up a request that hangs and steps down by the deadline all the same', async () => {
    const store = new MemoryLease();
    let hang = false;
    const hanging: LeaseApi = {
      get: (ref) => (hang ? new Promise(() => {}) : store.get(ref)),
      create: (request) => store.create(request),
      replace: (request) => (hang ? new Promise(() => {}) : store.replace(request)),
    };
    const a = candidate('a', hanging, { onError: () => {} });
    await advance(0);
    hang = true;
    await advance(10 * SECOND);
    expect(a.events).toEqual(['started at 0', 'stopped at 10000']);
    hang = false;
    // The renewal sent at 2 s is abandoned at 12 s; the next round, at once, finds the Lease still ours.
    await advance(3 * SECOND);
    expect(a.elector.isLeader()).toBe(true);
    // setTimeout(0) waits a millisecond.
    expect(a.events).toEqual([
      'started at 0',
      'stopped at 10000',
      expect.stringMatching(/^started at 1200[01]$/),
    ]);
  });

  it.each([
    [{ leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }],
    [{ renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }],
    [{ retryPeriodMs: 0 }],
  ])('rejects timings that break leaseDuration > renewDeadline > retryPeriod > 0: %o', (timings) => {
    expect(
      () =>
        new LeaderElector({
          namespace: 'ops',
          name: 'cardinal-operator',
          identity: 'a',
          client: new MemoryLease(),
          onStartedLeading: () => {},
          onStoppedLeading: () => {},
          ...timings,
        }),
    ).toThrow(RangeError);
  });
});
