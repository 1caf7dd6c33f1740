// The door check against a real Prometheus 2.42 behind the durable queue: what Prometheus would
// refuse after the proxy acknowledged it is refused before, with a 400 naming the series, and
// nothing of it ever reaches Prometheus. Without the check (--ingest.invalid off) the same input is
// acknowledged and then lost, which is what each contrast below shows.

import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { Label, TimeSeriesV1 } from '../../proxy/codec/types.js';
import {
  eventually,
  type ProxyProgram,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const FAST_RETRY = ['--forward.min-backoff', '50ms', '--forward.max-backoff', '500ms'];

function body(series: { labels: Label[]; t: number; v?: number }[]): Uint8Array {
  const timeseries: TimeSeriesV1[] = series.map((s) => ({
    labels: s.labels,
    samples: [{ value: s.v ?? 1, timestamp: s.t }],
    exemplars: [],
    histograms: [],
  }));
  return snappyEncode(encodeWriteRequestV1({ timeseries, metadata: [] }));
}

async function post(proxy: ProxyProgram, b: Uint8Array): Promise<{ status: number; text: string }> {
  const res = await fetch(proxy.writeUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'snappy',
      'x-prometheus-remote-write-version': '0.1.0',
    },
    body: b,
  });
  return { status: res.status, text: await res.text() };
}

const good = (i: number, t: number) => ({
  labels: [
    { name: '__name__', value: 'door_good' },
    { name: 'i', value: String(i) },
  ],
  t,
  v: i,
});

/** What Prometheus 2.42 refuses after the fact, each with a good series beside it. */
const BAD: [string, Label[], RegExp][] = [
  ['no __name__', [{ name: 'job', value: 'x' }], /no __name__ label/],
  ['an empty label set', [], /the label set is empty/],
  [
    'a repeated label name',
    [
      { name: '__name__', value: 'door_dup' },
      { name: 'a', value: '1' },
      { name: 'a', value: '2' },
    ],
    /label name "a" is repeated/,
  ],
];

describe('door check with Prometheus 2.42 behind the durable queue', () => {
  const track = useCleanup('each');

  it('refuses with 400 what Prometheus would refuse after acknowledgement; the good series arrive', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--queue.batch-max-wait', '20ms', ...FAST_RETRY],
      }),
    );
    const t = Date.now() - 30_000;
    let i = 0;
    for (const [what, labels, detail] of BAD) {
      const answer = await post(proxy, body([good(i++, t), { labels, t }]));
      expect(answer.status, what).toBe(400);
      expect(answer.text, what).toMatch(/^series a receiver would refuse: timeseries\[1\] /);
      expect(answer.text, what).toMatch(detail);
    }
    // 2^62 ms: Prometheus would take it and then refuse every later write as out of bounds.
    const future = await post(proxy, body([good(i++, t), { labels: good(99, 0).labels, t: 2 ** 62 }]));
    expect(future.status).toBe(400);
    expect(future.text).toMatch(/samples\[0\]\.timestamp: 4611686018427388000 is more than 600000 ms ahead/);

    // Later writes are taken and reach Prometheus: nothing of the refused requests is in it.
    for (let k = 0; k < 5; k++) expect((await post(proxy, body([good(100 + k, t + k)]))).status).toBe(204);
    await eventually(async () => {
      const got = await receiver.rawSamples('door_good', 3600, t + 60_000);
      expect(got.map((s) => Number(s.labels.i)).sort((a, b) => a - b)).toEqual([100, 101, 102, 103, 104]);
    });
    expect(await receiver.query('count({__name__=~"door_.+"})', t + 10)).toEqual([
      expect.objectContaining({ value: 5 }),
    ]);
    expect(await proxy.metric('cardinal_proxy_invalid_series_total', { action: 'rejected' })).toBe(4);
    expect(await proxy.metric('cardinal_proxy_invalid_series_total', { reason: 'too_new' })).toBe(1);
    expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total')).toBe(0);
  });

  it('--ingest.invalid drop: the bad series are left out and counted, the rest of the request is acknowledged and delivered', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--ingest.invalid', 'drop', ...FAST_RETRY],
      }),
    );
    const t = Date.now() - 30_000;
    const series = [good(0, t), ...BAD.map(([, labels]) => ({ labels, t })), good(1, t)];
    expect((await post(proxy, body(series))).status).toBe(204);
    // Unsorted labels are sorted, not refused: vmagent sends scrape order.
    const unsorted = [
      { name: 'i', value: '2' },
      { name: '__name__', value: 'door_good' },
    ];
    expect((await post(proxy, body([{ labels: unsorted, t, v: 2 }]))).status).toBe(204);
    await eventually(async () => {
      const got = await receiver.rawSamples('door_good', 3600, t + 60_000);
      expect(got.map((s) => Number(s.labels.i)).sort()).toEqual([0, 1, 2]);
    });
    expect(await proxy.metric('cardinal_proxy_invalid_series_total', { action: 'dropped' })).toBe(3);
    expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total')).toBe(0);
  });

  it('contrast, --ingest.invalid off: a 2^62 ms sample is acknowledged, and Prometheus then refuses every later write', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--ingest.invalid', 'off', ...FAST_RETRY],
      }),
    );
    const t = Date.now() - 30_000;
    expect((await post(proxy, body([{ labels: good(99, 0).labels, t: 2 ** 62 }]))).status).toBe(204);
    await eventually(async () =>
      expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(1),
    );
    expect((await post(proxy, body([good(1, t)]))).status).toBe(204);
    await eventually(async () =>
      // Prometheus answers "out of bounds": counted with the out-of-order refusals.
      expect(
        await proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'out_of_order' }),
      ).toBe(1),
    );
  });
});

describe('out-of-order refusals after acknowledgement are kept', () => {
  const track = useCleanup('each');

  it('counted as out_of_order in /metrics and /api/v1/status/queue, and still there after a SIGKILL', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--queue.batch-max-wait', '10ms', ...FAST_RETRY],
      }),
    );
    const t = Date.now() - 30_000;
    // The same series, the second request older than the first: valid at the door, refused later.
    expect((await post(proxy, body([good(1, t + 1000)]))).status).toBe(204);
    await eventually(async () =>
      expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(1),
    );
    expect((await post(proxy, body([good(1, t)]))).status).toBe(204);
    const outOfOrder = () =>
      proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'out_of_order' });
    await eventually(async () => expect(await outOfOrder()).toBe(1));
    const status = async () =>
      (
        (await (await fetch(`${proxy.url}/api/v1/status/queue`)).json()) as {
          queues: { remote_write: { outOfOrder: { samples: number; records: number } } };
        }
      ).queues.remote_write.outOfOrder;
    expect(await status()).toEqual({ samples: 1, records: 1 });

    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await proxy.start();
    expect(await outOfOrder()).toBe(1);
    expect(await status()).toEqual({ samples: 1, records: 1 });
  });
});

describe('native histograms at the door, against Prometheus 3.5', () => {
  const track = useCleanup('each');

  it('what the door check refuses is what Prometheus refuses after acknowledgement; a consistent histogram passes both', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 3 }));
    const checked = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, ...FAST_RETRY],
      }),
    );
    const unchecked = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--ingest.invalid', 'off', ...FAST_RETRY],
      }),
    );
    const t = Date.now() - 30_000;
    // count 5 = zero bucket 1 + positive buckets 3 and 1; the bad one claims 7.
    const histogram = (name: string, count: number): Uint8Array =>
      snappyEncode(
        encodeWriteRequestV1({
          timeseries: [
            {
              labels: [{ name: '__name__', value: name }],
              samples: [],
              exemplars: [],
              histograms: [
                {
                  countInt: count,
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
                  timestamp: t,
                  customValues: [],
                },
              ],
            },
          ],
          metadata: [],
        }),
      );
    expect((await post(checked, histogram('door_hist_ok', 5))).status).toBe(204);
    const refused = await post(checked, histogram('door_hist_bad', 7));
    expect(refused.status).toBe(400);
    expect(refused.text).toMatch(/histograms\[0\]: 5 observations in buckets, but the count is 7/);
    // Without the check, the same histogram is acknowledged, and Prometheus refuses it with a 500
    // (so it would be retried forever): the queue isolates it in the retry lane.
    expect((await post(unchecked, histogram('door_hist_bad', 7))).status).toBe(204);
    await eventually(async () => {
      const res = await fetch(`${unchecked.url}/api/v1/queue/dead-letter`);
      const { deadLetters } = (await res.json()) as { deadLetters: { lastError: string }[] };
      expect(deadLetters).toHaveLength(1);
      expect(deadLetters[0]?.lastError).toMatch(
        /^500 5 observations found in buckets, but the Count field is 7/,
      );
    });
    await eventually(async () => expect(await receiver.query('count(door_hist_ok)', t + 10)).toHaveLength(1));
    expect(await receiver.query('count(door_hist_bad)', t + 10)).toEqual([]);
  });
});
