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

/** A receiver that answers 503 to everything and counts what it got. */
async function startFailingReceiver(): Promise<Closable & { url: string; requests: number }> {
  const state = { requests: 0 };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.requests++;
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
const WINDOW_MS = 25_000;

describe('retries without the queue', () => {
  const track = useCleanup('each');

  it('a failing receiver sees at most 1.5x the requests of a Prometheus sender alone', async () => {
    const target = track(await startTarget({ sequence: { labels: { suite: 'retry-mult' } } }));

    // The sender alone.
    const direct = track(await startFailingReceiver());
    const alone = await startPrometheusAgent({
      version: 2,
      remoteWriteUrl: direct.url,
      scrapeTargets: [target.address],
      remoteWrite: SENDER,
    });
    await eventually(() => expect(direct.requests).toBeGreaterThan(0), { timeoutMs: 60_000 });
    const from = direct.requests;
    await sleep(WINDOW_MS);
    const aloneCount = direct.requests - from;
    await alone.close();

    // The same sender through the proxy.
    const upstream = track(await startFailingReceiver());
    const proxy = track(await startProxy({ upstream: upstream.url }));
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
        remoteWrite: SENDER,
      }),
    );
    await eventually(() => expect(upstream.requests).toBeGreaterThan(0), { timeoutMs: 60_000 });
    const up0 = upstream.requests;
    const in0 = await proxy.metric('cardinal_proxy_requests_total');
    await sleep(WINDOW_MS);
    const throughProxy = upstream.requests - up0;
    const senderRequests = (await proxy.metric('cardinal_proxy_requests_total')) - in0;
    console.log(
      `retries in ${WINDOW_MS / 1000}s: sender alone ${aloneCount} requests; through the proxy the receiver saw ${throughProxy} for ${senderRequests} sender requests`,
    );
    expect(throughProxy).toBeLessThanOrEqual(1.5 * aloneCount);
    expect(throughProxy).toBeLessThanOrEqual(1.5 * Math.max(1, senderRequests));
    // Every answer was a 503, so the sender kept its data and backed off by itself.
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'UPSTREAM_UNAVAILABLE' }),
    ).toBe(await proxy.metric('cardinal_proxy_requests_total'));
  });
});
