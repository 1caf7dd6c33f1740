// The same three replicas as limits-replicas.test.ts, their limits on a Redis Cluster of three
// masters (Debian's redis-server, made into a cluster by the test): perLabel and
// perTenantMaxSeries are global too, each scope on the master that owns its hash tag (policy and
// metric, or policy and tenant). Then the whole cluster is stopped mid-test and started again,
// empty: ingest never fails, each replica admits at most its share of each limit while it is
// down (README "Limits across replicas": limit / replicas), and the limits are global again once
// it is back.

import { describe, expect, it } from 'vitest';
import { eventually, startRedisCluster, useCleanup } from '../framework/index.js';
import {
  admitErrors,
  expectHeld,
  expectNoFailures,
  expectSendersWhole,
  startReplicaStack,
} from '../framework/replicas.js';

const OVERFLOW = '__cardinality_overflow__';
const policies = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: users
  namespace: platform
spec:
  match:
    selector: '{__name__=~"cardinal_lbomb.*"}'
  limits:
    window: 10m
    perLabel:
      - label: user
        maxValues: 500
        onExceed: overflow
---
apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: tenant
  namespace: platform
spec:
  match:
    selector: '{__name__="cardinal_tbomb"}'
  limits:
    window: 10m
    perTenantMaxSeries: 700
`;

describe('three replicas sharing their limits through a Redis Cluster', () => {
  const track = useCleanup();

  it('holds perLabel and perTenantMaxSeries limits globally over bombs of new series', async () => {
    const redis = track(await startRedisCluster());
    const stack = await startReplicaStack({ store: redis, policies, track });
    await eventually(async () => expect(await stack.count('cardinal_test_steady')).toBe(50), {
      timeoutMs: 60_000,
    });

    const beforeBomb = await admitErrors(stack);
    stack.vmTarget.setSeries([
      // 5,000 series of two metrics, each with its own user: 500 users per metric pass.
      ...Array.from({ length: 2500 }, (_, i) => ({
        name: 'cardinal_lbomb',
        labels: { user: `u${i}` },
        value: i,
      })),
      ...Array.from({ length: 2500 }, (_, i) => ({
        name: 'cardinal_lbomb_b',
        labels: { user: `u${i}` },
        value: i,
      })),
      ...Array.from({ length: 3000 }, (_, i) => ({
        name: 'cardinal_tbomb',
        labels: { id: String(i) },
        value: i,
      })),
    ]);
    const scrapes = stack.vmTarget.scrapes;
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(scrapes + 4), {
      timeoutMs: 60_000,
    });
    await expectHeld(stack, `cardinal_lbomb{user!="${OVERFLOW}"}`, 500, beforeBomb);
    await expectHeld(stack, `cardinal_lbomb_b{user!="${OVERFLOW}"}`, 500, beforeBomb);
    await expectHeld(stack, 'cardinal_tbomb', 700, beforeBomb);
    const overflow = await stack.receiver.series([`cardinal_lbomb{user="${OVERFLOW}"}`]);
    expect(overflow.length).toBeGreaterThanOrEqual(1);
    expect(overflow.length).toBeLessThanOrEqual(3);
    for (const l of overflow) expect(l.cardinal_replica).toMatch(/^proxy-[012]$/);
    await expectNoFailures(stack);
    // One scope per (policy, metric) or tenant, each named with its hash tag, on whichever master
    // owns the tag's slot.
    const { Redis } = await import('ioredis');
    const keys: string[] = [];
    for (const address of redis.url.replace('redis+cluster://', '').split(',')) {
      const c = new Redis(`redis://${address}`);
      try {
        keys.push(...(await c.keys('*')));
      } finally {
        c.disconnect();
      }
    }
    expect(keys.length).toBe(3);
    for (const k of keys) expect(k).toMatch(/^\{it:[^{}]+\}(:l0)?$/);
    for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(0);

    // The whole cluster goes away mid-test; a new metric's users and a new tenant bomb arrive.
    await redis.stop();
    const users = (name: string) =>
      Array.from({ length: 2500 }, (_, i) => ({ name, labels: { user: `u${i}` }, value: i }));
    const before = [
      ...users('cardinal_lbomb'),
      ...users('cardinal_lbomb_b'),
      ...Array.from({ length: 3000 }, (_, i) => ({
        name: 'cardinal_tbomb',
        labels: { id: String(i) },
        value: i,
      })),
    ];
    stack.vmTarget.setSeries([...before, ...users('cardinal_lbomb_outage')]);
    await eventually(
      async () => {
        for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(1);
      },
      { timeoutMs: 60_000 },
    );
    const outageScrapes = stack.vmTarget.scrapes;
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(outageScrapes + 4), {
      timeoutMs: 60_000,
    });
    const outage = `cardinal_lbomb_outage{user!="${OVERFLOW}"}`;
    await eventually(async () => expect(await stack.count(outage)).toBeGreaterThan(0), { timeoutMs: 60_000 });
    // Each of the three replicas admits at most floor(500 / 3) = 166 users on its own.
    const duringOutage = await stack.count(outage);
    console.log(
      `limits-cluster: ${duringOutage} users of a new metric admitted during the outage (bound 498)`,
    );
    expect(duringOutage).toBeLessThanOrEqual(498);
    // What was admitted before kept flowing.
    expect(await stack.count(`cardinal_lbomb{user!="${OVERFLOW}"}`)).toBe(500);
    expect(await stack.count('cardinal_tbomb')).toBe(700);
    await expectNoFailures(stack);

    // The cluster comes back, empty (nothing is persisted): global again.
    await redis.start();
    await eventually(
      async () => {
        for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(0);
      },
      { timeoutMs: 90_000 },
    );
    stack.vmTarget.setSeries([
      ...before,
      ...users('cardinal_lbomb_outage'),
      ...users('cardinal_lbomb_after'),
    ]);
    const afterScrapes = stack.vmTarget.scrapes;
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(afterScrapes + 4), {
      timeoutMs: 60_000,
    });
    await eventually(
      async () => expect(await stack.count(`cardinal_lbomb_after{user!="${OVERFLOW}"}`)).toBe(500),
      { timeoutMs: 60_000 },
    );
    expect(await stack.count(outage)).toBeLessThanOrEqual(500);
    await expectSendersWhole(stack);
    let errors = 0;
    for (const p of stack.proxies) errors += await p.metric('cardinal_proxy_limits_store_errors_total');
    expect(errors).toBeGreaterThan(0);
  }, 360_000);
});
