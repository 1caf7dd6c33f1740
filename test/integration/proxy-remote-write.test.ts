// The proxy's data path against real programs: real senders write through cardinal-proxy (the
// built binary) into real Prometheus receivers, and the receivers must hold exactly what the
// senders scraped. test/integration/programs.test.ts proves the same setups without the proxy.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { encodeRequestV2 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { RequestV2 } from '../../proxy/codec/types.js';
import {
  eventually,
  expectReceivedExactly,
  metricSum,
  type PrometheusReceiver,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';

/** Series with awkward label values, served beside the sequence. */
const STATIC_SERIES = [
  { name: 'cardinal_test_requests_total', labels: { path: '/a "b"\\c', code: '200' }, value: 42 },
  { name: 'cardinal_test_requests_total', labels: { path: '/ünïcødé', code: '500' }, value: 0.125 },
  { name: 'cardinal_test_temperature_celsius', labels: { room: 'a,b=c' }, value: -273.15 },
];

async function expectStaticSeries(receiver: PrometheusReceiver) {
  await eventually(
    async () => {
      const got = await receiver.query('{__name__=~"cardinal_test_(requests_total|temperature_celsius)"}');
      const simplified = got
        .map((s) => ({ name: s.labels.__name__, path: s.labels.path, room: s.labels.room, value: s.value }))
        .sort((a, b) => String(a.path ?? a.room).localeCompare(String(b.path ?? b.room)));
      expect(simplified).toEqual([
        { name: 'cardinal_test_requests_total', path: '/a "b"\\c', room: undefined, value: 42 },
        { name: 'cardinal_test_requests_total', path: '/ünïcødé', room: undefined, value: 0.125 },
        { name: 'cardinal_test_temperature_celsius', path: undefined, room: 'a,b=c', value: -273.15 },
      ]);
    },
    { timeoutMs: 15_000 },
  );
}

describe('remote-write 1.0 through the proxy', () => {
  const track = useCleanup('each');

  it('Prometheus 2 agent -> proxy -> Prometheus 2: every sample arrives exactly', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(await startProxy({ upstream: receiver.remoteWriteUrl }));
    const target = track(await startTarget({ sequence: { labels: { suite: 'proxy-rw1' } } }));
    target.setSeries(STATIC_SERIES);
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(6);
    const served = target.pauseSequence();
    const series = await expectReceivedExactly(receiver, target, served);
    expect(series.labels).toEqual({
      __name__: 'cardinal_test_seq_total',
      suite: 'proxy-rw1',
      job: 'cardinal-target',
      instance: target.address,
    });
    await expectStaticSeries(receiver);

    // The proxy saw 1.0 requests and forwarded everything it received.
    const received = await proxy.metric('cardinal_proxy_received_total', {
      protocol: '1.0',
      kind: 'samples',
    });
    const forwarded = await proxy.metric('cardinal_proxy_forwarded_total', {
      protocol: '1.0',
      kind: 'samples',
    });
    expect(received).toBeGreaterThanOrEqual(served.length);
    expect(forwarded).toBe(received);
    expect(await proxy.metric('cardinal_proxy_received_total', { protocol: '2.0', kind: 'samples' })).toBe(0);
  });

  it('vmagent -> proxy -> Prometheus 2: every sample arrives exactly', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(await startProxy({ upstream: receiver.remoteWriteUrl }));
    const target = track(await startTarget({ sequence: { labels: { suite: 'proxy-vmagent' } } }));
    target.setSeries(STATIC_SERIES);
    track(await startVmagent({ remoteWriteUrl: proxy.writeUrl, scrapeTargets: [target.address] }));

    await target.waitForServed(6);
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served);
    await expectStaticSeries(receiver);
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { protocol: '1.0', code: '204' }),
    ).toBeGreaterThan(0);
  });
});

describe('remote-write 2.0 through the proxy', () => {
  const track = useCleanup('each');

  it('Prometheus 3 agent (2.0) -> proxy -> Prometheus 3 (2.0 only): every sample arrives exactly, as 2.0', async () => {
    const receiver = track(
      await startPrometheusReceiver({
        version: 3,
        acceptedProtobufMessages: ['io.prometheus.write.v2.Request'],
      }),
    );
    const proxy = track(await startProxy({ upstream: receiver.remoteWriteUrl }));
    const target = track(await startTarget({ sequence: { labels: { suite: 'proxy-rw2' } } }));
    target.setSeries(STATIC_SERIES);
    const agent = track(
      await startPrometheusAgent({
        version: 3,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
        remoteWrite: { protobufMessage: 'io.prometheus.write.v2.Request' },
      }),
    );

    await target.waitForServed(6);
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served);
    await expectStaticSeries(receiver);

    // Everything went through as 2.0: the proxy counted 2.0 samples only, and the agent, which
    // reads the X-Prometheus-Remote-Write-*-Written headers, counted no failure.
    expect(
      await proxy.metric('cardinal_proxy_received_total', { protocol: '2.0', kind: 'samples' }),
    ).toBeGreaterThanOrEqual(served.length);
    expect(await proxy.metric('cardinal_proxy_received_total', { protocol: '1.0', kind: 'samples' })).toBe(0);
    expect(await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(0);
  });

  it('native histograms and exemplars survive the proxy into Prometheus 3', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 3 }));
    const proxy = track(await startProxy({ upstream: receiver.remoteWriteUrl }));
    const now = Date.now() - 5_000;
    const req: RequestV2 = {
      symbols: [
        '',
        '__name__',
        'cardinal_test_latency_seconds',
        'job',
        'bench',
        'trace_id',
        'abc123',
        'cardinal_test_up',
      ],
      timeseries: [
        {
          labelsRefs: [1, 2, 3, 4],
          samples: [],
          histograms: [
            {
              countInt: 5,
              sum: 1.5,
              schema: 3,
              zeroThreshold: 0.001,
              zeroCountInt: 1,
              negativeSpans: [],
              negativeDeltas: [],
              negativeCounts: [],
              positiveSpans: [{ offset: -2, length: 2 }],
              positiveDeltas: [3, -2],
              positiveCounts: [],
              resetHint: 0,
              timestamp: now,
              customValues: [],
            },
          ],
          exemplars: [],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 0,
        },
        {
          labelsRefs: [1, 7, 3, 4],
          samples: [{ value: 1, timestamp: now }],
          histograms: [],
          exemplars: [{ labelsRefs: [5, 6], value: 1, timestamp: now }],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 0,
        },
      ],
    };
    const res = await fetch(proxy.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf;proto=io.prometheus.write.v2.Request',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '2.0.0',
      },
      body: snappyEncode(encodeRequestV2(req)),
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('x-prometheus-remote-write-samples-written')).toBe('1');
    expect(res.headers.get('x-prometheus-remote-write-histograms-written')).toBe('1');
    expect(res.headers.get('x-prometheus-remote-write-exemplars-written')).toBe('1');

    const [hist] = await receiver.rawSamples('cardinal_test_latency_seconds', 60, now + 1000);
    expect(hist?.labels).toEqual({ __name__: 'cardinal_test_latency_seconds', job: 'bench' });
    expect(hist?.histograms).toHaveLength(1);
    const [ts, h] = hist!.histograms[0]!;
    expect(ts).toBe(now);
    expect(h.count).toBe(5);
    expect(h.sum).toBe(1.5);
    // Zero bucket (1) and the two positive buckets at indices -2 and -1 of schema 3 (3 and 1).
    expect(h.buckets.map((b) => b[3])).toEqual([1, 3, 1]);
    expect(h.buckets[1]?.[2]).toBeCloseTo(2 ** (-2 / 8), 12);
    expect(h.buckets[2]?.[2]).toBeCloseTo(2 ** (-1 / 8), 12);

    const exemplars = (await receiver.api('/api/v1/query_exemplars', {
      query: 'cardinal_test_up',
      start: String((now - 60_000) / 1000),
      end: String((now + 60_000) / 1000),
    })) as Array<{
      seriesLabels: Record<string, string>;
      exemplars: Array<{ labels: Record<string, string>; value: string; timestamp: number }>;
    }>;
    expect(exemplars).toHaveLength(1);
    expect(exemplars[0]?.exemplars).toEqual([
      { labels: { trace_id: 'abc123' }, value: '1', timestamp: now / 1000 },
    ]);
  });

  it('down-converts 2.0 to 1.0 for a receiver that only speaks 1.0 (--upstream.protocol 1.0)', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({ upstream: receiver.remoteWriteUrl, args: () => ['--upstream.protocol', '1.0'] }),
    );
    const target = track(await startTarget({ sequence: { labels: { suite: 'proxy-downconvert' } } }));
    target.setSeries(STATIC_SERIES);
    const agent = track(
      await startPrometheusAgent({
        version: 3,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
        remoteWrite: { protobufMessage: 'io.prometheus.write.v2.Request' },
      }),
    );
    await target.waitForServed(6);
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served);
    await expectStaticSeries(receiver);
    expect(
      await proxy.metric('cardinal_proxy_received_total', { protocol: '2.0', kind: 'samples' }),
    ).toBeGreaterThan(0);
    expect(await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(0);
  });
});

describe('faults', () => {
  const track = useCleanup('each');

  it('an upstream outage loses nothing: the proxy answers 503, the sender retries, every sample arrives', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: () => ['--forward.retry-budget', '2s', '--forward.max-backoff', '500ms'],
      }),
    );
    const target = track(await startTarget({ sequence: { labels: { suite: 'proxy-outage' } } }));
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(4);
    await receiver.stop();
    const servedBeforeRestart = target.served().length;
    await target.waitForServed(servedBeforeRestart + 8, 30_000);
    await receiver.start();
    await target.waitForServed(target.served().length + 3, 30_000);
    const served = target.pauseSequence();

    await expectReceivedExactly(receiver, target, served, 60_000);
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'UPSTREAM_UNAVAILABLE' }),
    ).toBeGreaterThan(0);
  });

  it('SIGTERM lets an in-flight request finish before the proxy exits', async () => {
    let upstreamRequests = 0;
    const slow = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        upstreamRequests++;
        setTimeout(() => {
          res.writeHead(204);
          res.end();
        }, 1500);
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const port = (slow.address() as AddressInfo).port;
      const proxy = track(await startProxy({ upstream: `http://127.0.0.1:${port}/api/v1/write` }));
      const inFlight = fetch(proxy.writeUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
        body: snappyEncode(new Uint8Array(0)),
      });
      await eventually(async () => expect(upstreamRequests).toBe(1), { timeoutMs: 5000 });
      const stopped = proxy.stop({ graceMs: 10_000 });
      await sleep(200);
      expect((await fetch(`${proxy.url}/-/healthy`).catch(() => undefined))?.status ?? 'closed').not.toBe(
        200,
      );
      expect((await inFlight).status).toBe(204);
      await stopped;
      expect(proxy.program.running).toBe(false);
    } finally {
      slow.closeAllConnections();
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });
});
