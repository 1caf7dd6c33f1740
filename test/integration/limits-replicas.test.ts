// Limits are global at any number of replicas: three proxy binaries behind haproxy (round robin,
// keep-alive off), vmagent and a Prometheus 2 agent sending, Prometheus 2 receiving, the limits
// shared through Debian's redis-server. A bomb of 20,000 new series under perMetric maxSeries 1000
// ends with exactly 1000 admitted plus at most one overflow series per replica, no sender ever
// gets a 4xx/5xx, and every sample of the other series arrives. Then the store is stopped mid-test:
// ingest goes on, each replica admits at most its share (1000 / 3), and once the store is back the
// limit is global again.

import { describe, expect, it } from 'vitest';
import { eventually, metricSum, startRedis, useCleanup } from '../framework/index.js';
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
  name: bombs
  namespace: platform
spec:
  limits:
    window: 10m
    perMetric:
      - metric: cardinal_bomb.*
        maxSeries: 1000
        onExceed: overflow
        overflowLabel: id
`;

const bomb = (name: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ name, labels: { id: String(i) }, value: i }));

describe('three replicas sharing their limits through Redis', () => {
  const track = useCleanup();

  it('holds a global perMetric limit over a bomb of 20,000 series, and through a store outage', async () => {
    const redis = track(await startRedis({ password: 'redis-secret' }));
    const stack = await startReplicaStack({ store: redis, password: 'redis-secret', policies, track });
    // Both senders flowing through all three replicas before the bomb.
    await eventually(
      async () => {
        expect(await stack.count('cardinal_test_steady')).toBe(50);
        expect(await stack.count('cardinal_test_vm_seq_total')).toBe(1);
      },
      { timeoutMs: 60_000 },
    );

    const beforeBomb = await admitErrors(stack);
    stack.vmTarget.setSeries(bomb('cardinal_bomb', 20_000));
    const scrapes = stack.vmTarget.scrapes;
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(scrapes + 4), {
      timeoutMs: 60_000,
    });
    const bombAdmitted = await expectHeld(stack, `cardinal_bomb{id!="${OVERFLOW}"}`, 1000, beforeBomb);
    expect(await stack.count(`cardinal_bomb{id="${OVERFLOW}"}`)).toBeGreaterThanOrEqual(1);
    // The overflow series are each replica's own: at most one per replica, each with its name.
    const overflow = await stack.receiver.series([`cardinal_bomb{id="${OVERFLOW}"}`]);
    expect(overflow.length).toBeLessThanOrEqual(3);
    for (const l of overflow) expect(l.cardinal_replica).toMatch(/^proxy-[012]$/);
    // Every replica took part, the store was asked, and no replica is falling back now.
    let admits = 0;
    for (const p of stack.proxies) {
      expect(await p.metric('cardinal_proxy_requests_total')).toBeGreaterThan(0);
      admits += await p.metric('cardinal_proxy_limits_store_round_trips_total', { op: 'admit' });
    }
    await eventually(
      async () => {
        for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(0);
      },
      { timeoutMs: 30_000 },
    );
    expect(admits).toBeGreaterThan(0);
    await expectNoFailures(stack);

    // The store goes away mid-test.
    await redis.stop();
    stack.vmTarget.setSeries([...bomb('cardinal_bomb', 20_000), ...bomb('cardinal_bomb_outage', 3000)]);
    await eventually(
      async () => {
        for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(1);
      },
      { timeoutMs: 60_000 },
    );
    const ready = await (await fetch(`${stack.proxies[0]!.url}/-/ready`)).text();
    expect(ready).toMatch(/^Ready; limit store redis:\/\/127\.0\.0\.1:\d+ not answering since .*limit \/ 3/);
    const status = (await (await fetch(`${stack.proxies[0]!.url}/api/v1/status/config`)).json()) as {
      limitsStore: { state: string; limits: string };
    };
    expect(status.limitsStore).toMatchObject({ state: 'fallback', limits: 'local share: limit / 3' });
    const outageScrapes = stack.vmTarget.scrapes;
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(outageScrapes + 4), {
      timeoutMs: 60_000,
    });
    await eventually(
      async () => expect(await stack.count(`cardinal_bomb_outage{id!="${OVERFLOW}"}`)).toBeGreaterThan(0),
      { timeoutMs: 60_000 },
    );
    // Each replica admits at most its share of the limit while on its own.
    const duringOutage = await stack.count(`cardinal_bomb_outage{id!="${OVERFLOW}"}`);
    expect(duringOutage).toBeLessThanOrEqual(999);
    // The series admitted before the outage kept flowing: still exactly the same ones.
    expect(await stack.count(`cardinal_bomb{id!="${OVERFLOW}"}`)).toBe(bombAdmitted);
    await expectNoFailures(stack);

    // The store comes back, empty: the replicas tell it what they admitted meanwhile, then go
    // back to global decisions.
    await redis.start();
    await eventually(
      async () => {
        for (const p of stack.proxies) expect(await p.metric('cardinal_proxy_limits_store_fallback')).toBe(0);
      },
      { timeoutMs: 60_000 },
    );
    stack.vmTarget.setSeries([
      ...bomb('cardinal_bomb', 20_000),
      ...bomb('cardinal_bomb_outage', 3000),
      ...bomb('cardinal_bomb_after', 3000),
    ]);
    const afterScrapes = stack.vmTarget.scrapes;
    const beforeAfter = await admitErrors(stack);
    await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(afterScrapes + 4), {
      timeoutMs: 60_000,
    });
    await expectHeld(stack, `cardinal_bomb_after{id!="${OVERFLOW}"}`, 1000, beforeAfter);
    // What was admitted during the outage counts against the limit again: at most the limit.
    expect(await stack.count(`cardinal_bomb_outage{id!="${OVERFLOW}"}`)).toBeLessThanOrEqual(1000);
    await expectSendersWhole(stack);
    expect(
      await metricSum(stack.proxies[0]!.metricsUrl, 'cardinal_proxy_limits_store_errors_total'),
    ).toBeGreaterThan(0);
    // The password is in no log line and no metric.
    for (const p of stack.proxies) {
      expect(p.program.logTail(100_000)).not.toContain('redis-secret');
      expect(await (await fetch(p.metricsUrl)).text()).not.toContain('redis-secret');
    }
  }, 170_000);
});
