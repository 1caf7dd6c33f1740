// The three ways synthesized series made a receiver refuse a whole request, against Prometheus 2
// and 3 (remote-write 1.0 and 2.0), through real proxy binaries:
// 1. two replicas each sending their own overflow series, the second at an older timestamp;
// 2. one replica asked to send an older sample of its own overflow series;
// 3. a labeldrop collapsing two series of one request at one timestamp.
// Requests are written by the test (exact timestamps); every answer must be 204 and the receiver
// must hold every other series.

import { describe, expect, it } from 'vitest';
import { encodeRequestV2, encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  metricSum,
  type PrometheusReceiver,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const OVERFLOW = '__cardinality_overflow__';
const policyDoc = (name: string, spec: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: ${name}\n  namespace: platform\nspec:\n${spec}`;
const POLICIES = [
  policyDoc(
    'cap',
    '  limits:\n    perMetric:\n      - metric: exp_requests_total\n        maxSeries: 5\n        onExceed: overflow\n        overflowLabel: id\n',
  ),
  policyDoc(
    'collapse',
    '  match:\n    selector: \'{__name__="exp_coll"}\'\n  relabel:\n    - action: labeldrop\n      regex: pod\n',
  ),
  policyDoc(
    'collapse-max',
    '  match:\n    selector: \'{__name__="exp_coll_max"}\'\n  onCollision: max\n  relabel:\n    - action: labeldrop\n      regex: pod\n',
  ),
].join('---\n');

type Series = { labels: Record<string, string>; samples: [number, number][] };

function body(version: '1.0' | '2.0', series: Series[]): { body: Buffer; headers: Record<string, string> } {
  const sorted = series.map((s) => ({
    labels: Object.entries(s.labels)
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    samples: s.samples.map(([value, timestamp]) => ({ value, timestamp })),
  }));
  if (version === '1.0') {
    return {
      body: snappyEncode(
        encodeWriteRequestV1({
          timeseries: sorted.map((s) => ({ ...s, exemplars: [], histograms: [] })),
          metadata: [],
        }),
      ),
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
    };
  }
  const symbols = [''];
  const ref = (s: string) => {
    let i = symbols.indexOf(s);
    if (i < 0) i = symbols.push(s) - 1;
    return i;
  };
  const timeseries = sorted.map((s) => ({
    labelsRefs: s.labels.flatMap((l) => [ref(l.name), ref(l.value)]),
    samples: s.samples,
    histograms: [],
    exemplars: [],
    metadata: { type: 1, helpRef: 0, unitRef: 0 },
    createdTimestamp: 0,
  }));
  return {
    body: snappyEncode(encodeRequestV2({ symbols, timeseries } as Parameters<typeof encodeRequestV2>[0])),
    headers: {
      'content-type': 'application/x-protobuf;proto=io.prometheus.write.v2.Request',
      'content-encoding': 'snappy',
      'x-prometheus-remote-write-version': '2.0.0',
    },
  };
}

async function send(url: string, version: '1.0' | '2.0', series: Series[]): Promise<number> {
  const { body: b, headers } = body(version, series);
  const res = await fetch(url, { method: 'POST', body: b, headers });
  await res.arrayBuffer();
  return res.status;
}

const requests = (t: number, ids: number[]): Series[] =>
  ids.map((id) => ({ labels: { __name__: 'exp_requests_total', id: String(id) }, samples: [[id, t]] }));

describe.each([
  [2, '1.0'],
  [3, '1.0'],
  [3, '2.0'],
] as const)('synthesized series against Prometheus %s, remote-write %s', (promVersion, rw) => {
  const track = useCleanup();

  it('never make the receiver refuse a request, and every other series arrives', async () => {
    const receiver: PrometheusReceiver = track(await startPrometheusReceiver({ version: promVersion }));
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-collisions-'));
    writeFileSync(join(dir, 'policies.yaml'), POLICIES);
    const replica = async (name: string) =>
      track(
        await startProxy({
          upstream: receiver.remoteWriteUrl,
          args: () => ['--config', join(dir, 'policies.yaml'), '--replica-name', name],
        }),
      );
    const a = await replica('proxy-a');
    const b = await replica('proxy-b');
    const now = Math.floor(Date.now() / 1000) * 1000 - 60_000;

    // 1. Two requests of one sender, spread over two replicas (local limits, as without a store),
    //    the older one arriving last: each replica overflows, B's overflow sample older than A's.
    //    With the replica label they are two series, and both requests are written.
    expect(await send(a.writeUrl, rw, requests(now + 2000, [1, 2, 3, 4, 5, 6, 7, 8]))).toBe(204);
    expect(await send(b.writeUrl, rw, requests(now + 1000, [11, 12, 13, 14, 15, 16, 17]))).toBe(204);
    // 2. A gets a late request whose series overflow at an older time than it already sent: the
    //    overflow sample is left out and counted, the request answered 204.
    expect(await send(a.writeUrl, rw, requests(now + 1500, [6, 7]))).toBe(204);
    expect(await a.metric('cardinal_proxy_policy_samples_total', { reason: 'out_of_order' })).toBe(1);
    // 3. A labeldrop collapses two series of one request at one timestamp: merged, summed.
    const coll: Series[] = [
      { labels: { __name__: 'exp_coll', pod: 'a' }, samples: [[1, now + 3000]] },
      { labels: { __name__: 'exp_coll', pod: 'b' }, samples: [[2, now + 3000]] },
      { labels: { __name__: 'exp_coll_max', pod: 'a' }, samples: [[1, now + 3000]] },
      { labels: { __name__: 'exp_coll_max', pod: 'b' }, samples: [[7, now + 3000]] },
      { labels: { __name__: 'exp_other', pod: 'a' }, samples: [[5, now + 3000]] },
    ];
    expect(await send(a.writeUrl, rw, coll)).toBe(204);
    expect(await a.metric('cardinal_proxy_policy_samples_total', { reason: 'collision' })).toBe(4);

    const at = now + 10_000;
    const byLabels = async (selector: string) =>
      (await receiver.rawSamples(selector, 120, at)).map((s) => ({ labels: s.labels, samples: s.samples }));
    expect(await byLabels('exp_coll')).toEqual([
      { labels: { __name__: 'exp_coll', cardinal_replica: 'proxy-a' }, samples: [[now + 3000, 3]] },
    ]);
    expect((await byLabels('exp_coll_max'))[0]?.samples).toEqual([[now + 3000, 7]]);
    expect((await byLabels('exp_other'))[0]?.samples).toEqual([[now + 3000, 5]]);
    const overflow = await byLabels(`exp_requests_total{id="${OVERFLOW}"}`);
    expect(overflow.map((s) => s.labels.cardinal_replica).sort()).toEqual(['proxy-a', 'proxy-b']);
    // A overflowed 6, 7, 8 at +2000 (sum 21); B 16, 17 at +1000 (sum 33).
    expect(overflow.find((s) => s.labels.cardinal_replica === 'proxy-a')?.samples).toEqual([
      [now + 2000, 21],
    ]);
    expect(overflow.find((s) => s.labels.cardinal_replica === 'proxy-b')?.samples).toEqual([
      [now + 1000, 33],
    ]);
    // The admitted series all arrived, from both replicas.
    const admitted = await byLabels(`exp_requests_total{id!="${OVERFLOW}"}`);
    expect(admitted.map((s) => Number(s.labels.id)).sort((x, y) => x - y)).toEqual([
      1, 2, 3, 4, 5, 11, 12, 13, 14, 15,
    ]);
    expect(admitted.find((s) => s.labels.id === '1')?.samples).toEqual([[now + 2000, 1]]);
    for (const p of [a, b])
      expect(await metricSum(p.metricsUrl, 'cardinal_proxy_requests_total', { code: '204' })).toBeGreaterThan(
        0,
      );
    expect(
      await metricSum(`${receiver.url}/metrics`, 'prometheus_http_requests_total', { code: '400' }),
    ).toBe(0);
  }, 120_000);
});
