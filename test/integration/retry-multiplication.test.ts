// Without the queue, the proxy answers its sender only after the upstream did; the sender retries
// a 503 with its own backoff. The proxy must not multiply those retries: with a real Prometheus 2
// sender and a receiver that always fails, the receiver may see at most 1.5 times the requests it
// sees from the sender alone.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  type Closable,
  eventually,
  startPrometheusAgent,
  startProxy,
  startTarget,
  useCleanup,
} from '../framework/index.js';

/** A receiver that answers 503 to everything and notes when each request came. */
async function startFailingReceiver(): Promise<Closable & { url: string; arrivals: number[] }> {
  const state = { arrivals: [] as number[] };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.arrivals.push(Date.now());
      res.writeHead(503).end('unavailable\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/api/v1/write`,
    dirs: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** Prometheus's own backoff defaults, one shard, so the comparison is of one retry loop. */
const SENDER = { minBackoff: '30ms', maxBackoff: '5s', maxShards: 1 };
const WINDOW_MS = 30_000;

describe('retries without the queue', () => {
  const track = useCleanup('each');

  it('a failing receiver sees at most 1.5x the requests of a Prometheus sender alone', async () => {
    const target = track(await startTarget({ sequence: { labels: { suite: 'retry-mult' } } }));
    // Two identical senders at once, over the same window: one alone, one through the proxy.
    const direct = track(await startFailingReceiver());
    const upstream = track(await startFailingReceiver());
    const proxy = track(await startProxy({ upstream: upstream.url }));
    for (const url of [direct.url, proxy.writeUrl]) {
      track(
        await startPrometheusAgent({
          version: 2,
          remoteWriteUrl: url,
          scrapeTargets: [target.address],
          remoteWrite: SENDER,
        }),
      );
    }
    // Each receiver's window starts at its first request, so both senders' backoff is compared
    // from the same point of its own retry loop.
    await eventually(
      () => expect(Math.min(direct.arrivals.length, upstream.arrivals.length)).toBeGreaterThan(0),
      {
        timeoutMs: 60_000,
      },
    );
    const inWindow = (arrivals: number[]) => arrivals.filter((t) => t < arrivals[0]! + WINDOW_MS).length;
    await sleep(Math.max(direct.arrivals[0]!, upstream.arrivals[0]!) + WINDOW_MS - Date.now());
    const aloneCount = inWindow(direct.arrivals);
    const throughProxy = inWindow(upstream.arrivals);
    // Every sender request reached the proxy after the upstream's first one, or was it.
    const senderRequests = await proxy.metric('cardinal_proxy_requests_total');
    const upstreamTotal = upstream.arrivals.length;
    console.log(
      `retries in ${WINDOW_MS / 1000}s from the first: sender alone ${aloneCount} requests; through the proxy ${throughProxy} (in all ${upstreamTotal} for ${senderRequests} sender requests)`,
    );
    expect(aloneCount).toBeGreaterThan(3);
    expect(throughProxy).toBeLessThanOrEqual(1.5 * aloneCount);
    expect(upstreamTotal).toBeLessThanOrEqual(1.5 * Math.max(1, senderRequests));
    // Every answer was a 503, so the sender kept its data and backed off by itself.
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'UPSTREAM_UNAVAILABLE' }),
    ).toBe(await proxy.metric('cardinal_proxy_requests_total'));
  });
});
