// Two operator replicas campaigning for one coordination.k8s.io/v1 Lease on a real API server: at
// most one leads at any moment, the Lease names it, and leadership moves on when the leader releases
// the Lease, dies, or loses the API server. Short timings keep the file quick; the defaults differ
// only in scale.

import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  candidateIdentity,
  LeaderElector,
  type LeaseApi,
  leaseApiFromKubeConfig,
} from '../../operator/leader/lease.js';
import {
  type ControlPlane,
  eventually,
  freePort,
  startControlPlane,
  useCleanup,
} from '../framework/index.js';

const TIMINGS = { leaseDurationMs: 2_000, renewDeadlineMs: 1_500, retryPeriodMs: 300 };
/** Room for an API round trip and timer lateness on a busy machine. */
const SLACK_MS = 500;

interface Candidate {
  elector: LeaderElector;
  /** Start and end of each term, by Date.now(). */
  terms: { start: number; end?: number; signal: AbortSignal }[];
  errors: unknown[];
}

/** Samples isLeader() of every candidate every 100 ms until stopped. */
function sampleLeaders(candidates: Candidate[]): { stop(): { samples: number; both: number } } {
  let samples = 0;
  let both = 0;
  const timer = setInterval(() => {
    samples += 1;
    if (candidates.filter((c) => c.elector.isLeader()).length > 1) both += 1;
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return { samples, both };
    },
  };
}

/** A LeaseApi that sends every call to `broken` instead of `working` once `isBroken()` says so. */
function switchable(working: LeaseApi, broken: LeaseApi, isBroken: () => boolean): LeaseApi {
  const pick = () => (isBroken() ? broken : working);
  return {
    get: (ref) => pick().get(ref),
    create: (request) => pick().create(request),
    replace: (request) => pick().replace(request),
  };
}

describe('leader election on a real API server', () => {
  const track = useCleanup();
  const ns = `cardinal-leader-${randomBytes(4).toString('hex')}`;
  let plane: ControlPlane;
  let api: LeaseApi;

  beforeAll(async () => {
    plane = track(await startControlPlane());
    expect((await plane.kubectl(['create', 'namespace', ns])).code).toBe(0);
    track({
      dirs: [],
      close: async () => {
        await plane.kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
      },
    });
    const kc = new KubeConfig();
    kc.loadFromFile(plane.kubeconfig);
    api = leaseApiFromKubeConfig(kc);
  });

  function candidate(lease: string, client: LeaseApi = api): Candidate {
    const terms: Candidate['terms'] = [];
    const errors: unknown[] = [];
    const elector = new LeaderElector({
      namespace: ns,
      name: lease,
      identity: candidateIdentity('cardinal-operator-test'),
      client,
      ...TIMINGS,
      onStartedLeading: (signal) => terms.push({ start: Date.now(), signal }),
      onStoppedLeading: () => {
        const term = terms.at(-1);
        if (term !== undefined) term.end = Date.now();
      },
      onError: (err) => errors.push(err),
    });
    track({ dirs: [], close: () => elector.stop() });
    elector.start();
    return { elector, terms, errors };
  }

  const leads = (c: Candidate) =>
    eventually(() => expect(c.elector.isLeader()).toBe(true), { timeoutMs: 10_000, intervalMs: 20 });

  async function leaseJson(name: string): Promise<{
    spec: {
      holderIdentity?: string;
      leaseDurationSeconds: number;
      leaseTransitions: number;
      renewTime: string;
    };
  }> {
    const r = await plane.kubectl(['--namespace', ns, 'get', 'lease', name, '-o', 'json']);
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout);
  }

  it('lets exactly one of two candidates lead, and the Lease names it', async () => {
    const pair = [candidate('steady'), candidate('steady')];
    const sampler = sampleLeaders(pair);
    await eventually(() => expect(pair.some((c) => c.elector.isLeader())).toBe(true), { intervalMs: 20 });
    const leader = pair.find((c) => c.elector.isLeader()) as Candidate;
    const follower = pair.find((c) => c !== leader) as Candidate;
    // Several lease durations: the leader keeps renewing, the follower keeps following.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { samples, both } = sampler.stop();
    expect(samples).toBeGreaterThanOrEqual(25);
    expect(both).toBe(0);
    expect(leader.elector.isLeader()).toBe(true);
    expect(leader.terms).toHaveLength(1);
    expect(follower.terms).toEqual([]);

    const lease = await leaseJson('steady');
    expect(lease.spec).toMatchObject({
      holderIdentity: leader.elector.identity,
      leaseDurationSeconds: 2,
      leaseTransitions: 0,
    });
    // metav1.MicroTime, renewed within the last retry period or so.
    expect(lease.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Date.now() - Date.parse(lease.spec.renewTime)).toBeLessThan(TIMINGS.retryPeriodMs + SLACK_MS);
  });

  it('hands over within a retry period when the leader releases the Lease', async () => {
    const a = candidate('released');
    await leads(a);
    const b = candidate('released');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(b.elector.isLeader()).toBe(false);
    const sampler = sampleLeaders([a, b]);

    await a.elector.release();
    const releasedAt = Date.now();
    expect(a.elector.isLeader()).toBe(false);
    expect(a.terms[0]?.signal.aborted).toBe(true);
    await leads(b);
    expect(Date.now() - releasedAt).toBeLessThan(TIMINGS.retryPeriodMs + SLACK_MS);
    expect(sampler.stop().both).toBe(0);
    expect((await leaseJson('released')).spec).toMatchObject({
      holderIdentity: b.elector.identity,
      leaseDurationSeconds: 2,
      leaseTransitions: 1,
    });
  });

  it('hands over once the Lease expires when the leader dies without releasing it', async () => {
    const a = candidate('abandoned');
    await leads(a);
    const b = candidate('abandoned');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const sampler = sampleLeaders([a, b]);

    // Stops its timers and leaves the Lease alone, as a killed process would.
    await a.elector.stop();
    const diedAt = Date.now();
    const lastRenewal = (await api.get({ namespace: ns, name: 'abandoned' }))?.spec;
    expect(lastRenewal?.holderIdentity).toBe(a.elector.identity);
    await leads(b);
    const takenAt = b.terms[0]?.start ?? Number.NaN;
    // Not before the Lease expired, and then within a couple of retry periods.
    expect(takenAt).toBeGreaterThan((lastRenewal?.renewTime ?? Number.NaN) + TIMINGS.leaseDurationMs);
    expect(takenAt - diedAt).toBeLessThan(TIMINGS.leaseDurationMs + 2 * TIMINGS.retryPeriodMs + SLACK_MS);
    expect(sampler.stop().both).toBe(0);
    expect((await leaseJson('abandoned')).spec).toMatchObject({
      holderIdentity: b.elector.identity,
      leaseTransitions: 1,
    });
  });

  it('a leader that loses the API server steps down within the renew deadline, before anyone takes over', async () => {
    // Nothing listens on a port freePort() has given back: every call is refused.
    const closed = new KubeConfig();
    closed.loadFromOptions({
      clusters: [{ name: 'closed', server: `https://127.0.0.1:${await freePort()}`, skipTLSVerify: true }],
      users: [{ name: 'nobody', token: 'none' }],
      contexts: [{ name: 'closed', cluster: 'closed', user: 'nobody' }],
      currentContext: 'closed',
    });
    let broken = false;
    const a = candidate(
      'partitioned',
      switchable(api, leaseApiFromKubeConfig(closed), () => broken),
    );
    await leads(a);
    const b = candidate('partitioned');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const sampler = sampleLeaders([a, b]);

    broken = true;
    const brokenAt = Date.now();
    await eventually(() => expect(a.elector.isLeader()).toBe(false), { timeoutMs: 5_000, intervalMs: 20 });
    // isLeader() turns false by the clock at the deadline; the term's signal is aborted when the
    // elector's timer runs, which on a loaded machine can be a few milliseconds later.
    await eventually(() => expect(a.terms[0]?.signal.aborted).toBe(true), {
      timeoutMs: 5_000,
      intervalMs: 20,
    });
    const steppedDownAt = a.terms[0]?.end ?? Number.NaN;
    // The last successful renewal was sent before brokenAt; the term ends renewDeadline after it.
    expect(steppedDownAt - brokenAt).toBeLessThanOrEqual(TIMINGS.renewDeadlineMs + 100);
    expect(a.errors.map(String).join('\n')).toMatch(/ECONNREFUSED/);

    await leads(b);
    const takenAt = b.terms[0]?.start ?? Number.NaN;
    // The margin leaseDuration - renewDeadline is what keeps the two terms apart.
    expect(takenAt).toBeGreaterThan(steppedDownAt);
    expect(sampler.stop().both).toBe(0);
    expect(a.terms).toHaveLength(1);
    expect((await leaseJson('partitioned')).spec.holderIdentity).toBe(b.elector.identity);
  });
});
