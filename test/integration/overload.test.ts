// Overload protection without the queue: a bound on requests in flight (503 with Retry-After
// beyond it, before the body is read), no forwarding for senders that gave up, and, against
// Debian's Prometheus 2.42, no invented 2.0 written counts.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeRequestV2, encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  type Closable,
  eventually,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

/** An upstream that takes 3 s to answer each request, noting when each reached it. */
async function startSlowUpstream(): Promise<Closable & { url: string; arrivals: number[] }> {
  const state = { arrivals: [] as number[] };
  const server = createServer((req, res) => {
    state.arrivals.push(Date.now());
    req.resume();
    const timer = setTimeout(() => res.writeHead(204).end(), 3000);
    res.on('close', () => clearTimeout(timer));
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

const BODY = snappyEncode(
  encodeWriteRequestV1({
    timeseries: [
      {
        labels: [{ name: '__name__', value: 'overload_test' }],
        samples: [{ value: 1, timestamp: Date.now() }],
        exemplars: [],
        histograms: [],
      },
    ],
    metadata: [],
  }),
);

describe('overload protection', () => {
  const track = useCleanup('each');

  it('beyond --max-inflight-requests senders get 503 with Retry-After; requests whose senders gave up are never forwarded', async () => {
    const upstream = track(await startSlowUpstream());
    const proxy = track(
      await startProxy({
        upstream: upstream.url,
        args: () => ['--max-inflight-requests', '6', '--upstream.connections', '2'],
      }),
    );
    // 20 senders at once, each giving up after 1 s (the upstream takes 3 s).
    const gaveUpAt = Date.now() + 1000;
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        try {
          const res = await fetch(proxy.writeUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
            body: BODY,
            signal: AbortSignal.timeout(1000),
          });
          await res.arrayBuffer();
          return { status: res.status, retryAfter: res.headers.get('retry-after') };
        } catch {
          return { status: 0, retryAfter: null };
        }
      }),
    );
    const overloaded = answers.filter((a) => a.status === 503);
    expect(overloaded).toHaveLength(14);
    for (const a of overloaded) expect(a.retryAfter).toBe('1');
    expect(answers.filter((a) => a.status === 0)).toHaveLength(6);
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'OVERLOADED' })).toBe(
      14,
    );

    // The proxy lets go of all six, and none reached the upstream after its sender had given up:
    // the ones waiting for a connection went with their senders, instead of being sent once the
    // first two were answered, 3 s in (half a second allows for the aborts to be handled).
    await eventually(async () => expect(await proxy.metric('cardinal_proxy_inflight_requests')).toBe(0));
    expect(upstream.arrivals.length).toBeGreaterThanOrEqual(2);
    expect(upstream.arrivals.filter((t) => t > gaveUpAt + 500)).toEqual([]);
    expect(await proxy.metric('cardinal_proxy_requests_total', { reason: 'SENDER_GONE' })).toBe(6);
    // The bound is free again.
    const again = await fetch(proxy.writeUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
      body: BODY,
    });
    expect(again.status).toBe(204);
  });

  it('a 2.0 request forwarded to Prometheus 2.42, which answers 204 and stores nothing, gets no invented written counts', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(await startProxy({ upstream: receiver.remoteWriteUrl }));
    const body = snappyEncode(
      encodeRequestV2({
        symbols: ['', '__name__', 'written_test'],
        timeseries: [
          {
            labelsRefs: [1, 2],
            samples: Array.from({ length: 10 }, (_, i) => ({ value: i, timestamp: Date.now() - 10_000 + i })),
            histograms: [],
            exemplars: [],
            metadata: { type: 0, helpRef: 0, unitRef: 0 },
            createdTimestamp: 0,
          },
        ],
      }),
    );
    const res = await fetch(proxy.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf;proto=io.prometheus.write.v2.Request',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '2.0.0',
      },
      body,
    });
    await res.arrayBuffer();
    expect(res.status).toBe(204);
    expect(res.headers.get('x-prometheus-remote-write-samples-written')).toBeNull();
    expect(await receiver.query('count(written_test)')).toEqual([]);
  });
});
