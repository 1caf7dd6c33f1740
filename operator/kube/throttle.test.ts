import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { KubeClient } from './client.js';
import { retryAfterMs, throttleWaitMs, withThrottleRetry } from './throttle.js';

/** An error as @kubernetes/client-node's ApiException carries a refusal. */
function refused(code: number, headers: Record<string, string> = {}) {
  return Object.assign(new Error(`HTTP ${code}`), { code, headers, body: '' });
}

/** A call that fails with each of `failures` in turn, then returns the number of calls. */
function flaky(failures: unknown[]) {
  let calls = 0;
  return {
    call: async () => {
      const failure = failures[calls++];
      if (failure !== undefined) throw failure;
      return calls;
    },
    calls: () => calls,
  };
}

describe('retryAfterMs', () => {
  it.each([
    ['3', 3000],
    [' 0 ', 0],
    [['2'], 2000],
    ['Wed, 02 Dec 2026 10:00:05 GMT', 5000],
    ['Wed, 02 Dec 2026 09:00:00 GMT', 0],
    ['soon', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('reads %j as %s ms', (value, ms) => {
    expect(retryAfterMs(value, Date.parse('2026-12-02T10:00:00Z'))).toBe(ms);
  });
});

describe('throttleWaitMs', () => {
  it('waits the Retry-After, never less than the backoff, at most 30 s, a fifth longer at most', () => {
    expect(throttleWaitMs(0, 1000, 0)).toBe(1000);
    expect(throttleWaitMs(0, undefined, 0)).toBe(250);
    expect(throttleWaitMs(3, undefined, 0)).toBe(2000);
    // Each 429 says 1 s; the fourth and later back off beyond it.
    expect(throttleWaitMs(4, 1000, 0)).toBe(4000);
    expect(throttleWaitMs(20, 1000, 0)).toBe(30_000);
    expect(throttleWaitMs(0, 600_000, 0)).toBe(30_000);
    expect(throttleWaitMs(0, 1000, 1)).toBe(1200);
  });
});

describe('withThrottleRetry', () => {
  it('makes the write again after each 429, waiting its Retry-After, and counts each', async () => {
    const sleeps: number[] = [];
    const counted: string[] = [];
    const f = flaky([refused(429, { 'retry-after': '2' }), refused(429, { 'retry-after': '1' })]);
    const result = await withThrottleRetry('patch', 'metricpolicies/status', f.call, {
      sleep: async (ms) => sleeps.push(ms),
      random: () => 0,
      throttled: (verb, resource) => counted.push(`${verb} ${resource}`),
    });
    expect(result).toBe(3);
    expect(sleeps).toEqual([2000, 1000]);
    expect(counted).toEqual(['patch metricpolicies/status', 'patch metricpolicies/status']);
  });

  it('throws any other refusal at once', async () => {
    const f = flaky([refused(409), refused(429)]);
    await expect(withThrottleRetry('patch', 'x', f.call, { sleep: async () => {} })).rejects.toMatchObject({
      code: 409,
    });
    expect(f.calls()).toBe(1);
  });

  it('gives up after maxRetries 429s with the last one', async () => {
    const f = flaky(Array.from({ length: 20 }, () => refused(429)));
    const sleeps: number[] = [];
    await expect(
      withThrottleRetry('create', 'events', f.call, {
        sleep: async (ms) => sleeps.push(ms),
        random: () => 0,
      }),
    ).rejects.toMatchObject({ code: 429 });
    expect(f.calls()).toBe(11);
    expect(sleeps).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('starts no retry past the deadline', async () => {
    let now = 0;
    const f = flaky(Array.from({ length: 20 }, () => refused(429, { 'retry-after': '1' })));
    await expect(
      withThrottleRetry('update', 'leases', f.call, {
        deadlineMs: 2500,
        now: () => now,
        random: () => 0,
        sleep: async (ms) => {
          now += ms;
        },
      }),
    ).rejects.toMatchObject({ code: 429 });
    // Waits of 1 s and 1 s fit in 2.5 s; a third would end at 3 s.
    expect(f.calls()).toBe(3);
  });
});

describe('KubeClient under priority and fairness', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.close();
  });

  /** An API server that answers the first `refusals` requests with 429 and Retry-After 0, then 200. */
  async function apiServer(refusals: number) {
    const seen: string[] = [];
    server = createServer(async (req: IncomingMessage, res) => {
      for await (const _ of req);
      seen.push(`${req.method} ${req.url?.split('?')[0]}`);
      if (seen.length <= refusals) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '0' });
        res.end(
          JSON.stringify({
            kind: 'Status',
            code: 429,
            reason: 'TooManyRequests',
            message: 'too many requests',
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Event', metadata: { name: 'e', namespace: 'ns' } }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const kc = new KubeConfig();
    const port = (server.address() as AddressInfo).port;
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    return { kc, seen };
  }

  it('writes an Event and a status through two 429s each, counting them', async () => {
    const { kc, seen } = await apiServer(2);
    const counted: string[] = [];
    const kube = new KubeClient(kc, { throttled: (verb, resource) => counted.push(`${verb} ${resource}`) });
    await kube.createEvent({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: 'e', namespace: 'ns' },
    } as Parameters<KubeClient['createEvent']>[0]);
    expect(seen).toEqual([
      'POST /api/v1/namespaces/ns/events',
      'POST /api/v1/namespaces/ns/events',
      'POST /api/v1/namespaces/ns/events',
    ]);
    expect(counted).toEqual(['create events', 'create events']);
  });

  it('throws a 429 that outlasts the retries', async () => {
    const { kc, seen } = await apiServer(100);
    const sleeps: number[] = [];
    const kube = new KubeClient(kc, { maxRetries: 3, sleep: async (ms) => sleeps.push(ms) });
    await expect(
      kube.patchEvent('ns', 'e', { count: 2, message: 'm', lastTimestamp: new Date() }),
    ).rejects.toMatchObject({
      code: 429,
    });
    expect(seen).toHaveLength(4);
    expect(sleeps).toHaveLength(3);
  });
});
