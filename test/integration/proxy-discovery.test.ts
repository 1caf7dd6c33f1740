// The operator finds the proxies of an instance through the EndpointSlices of their Service on a
// real API server, and polls the real proxies behind them: their configuration hashes and their top
// offenders, and a stopped proxy reported as unreachable rather than thrown.
//
// There is no pod network here, and the API server refuses loopback addresses in an EndpointSlice
// (validation of discovery.k8s.io/v1 endpoints: "may not be in the loopback range"). So the slices
// name the proxies by TEST-NET-1 addresses (RFC 5737), one per proxy, and the test routes each
// endpoint's URL to 127.0.0.1 on the same port, as a pod network would route the pod IP. The
// endpoint keeps its discovered name, which is what the polls report.

import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { listProxyEndpoints } from '../../operator/proxies/discovery.js';
import type { ProxyEndpoint } from '../../operator/proxies/endpoints.js';
import { type PollOptions, ProxyPoller, pollAll, toEndpointPoll } from '../../operator/proxies/poll.js';
import { aggregateOffenders } from '../../operator/status/offenders.js';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  type ControlPlane,
  type ProxyProgram,
  projectConfigMap,
  startControlPlane,
  startProxy,
  startSink,
  useCleanup,
} from '../framework/index.js';

const SERVICE = 'cardinal-proxy';
const POLICY = 'platform/drop-debug';
const DROPPED = 'cardinal_discovery_debug_depth';
const POLICIES = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: drop-debug
  namespace: platform
spec:
  drop:
    - cardinal_discovery_debug_.*
`;
const OPTIONS: PollOptions = { timeoutMs: 2_000, topLimit: 100 };
const ADDRESS_DROPPING = '192.0.2.10';
const ADDRESS_PLAIN = '192.0.2.11';

/** Where a pod network would deliver the endpoint: this host, on the endpoint's port. */
const viaLoopback = (endpoints: readonly ProxyEndpoint[]): ProxyEndpoint[] =>
  endpoints.map((e) => ({ ...e, url: `http://127.0.0.1:${e.port}` }));

/** One EndpointSlice of the Service per proxy: two proxies on one host differ only by port. */
function endpointSlice(
  namespace: string,
  name: string,
  port: number,
  endpoints: { address: string; ready: boolean }[],
) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace,
      labels: {
        'kubernetes.io/service-name': SERVICE,
        'endpointslice.kubernetes.io/managed-by': 'cardinal-test',
      },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({ addresses: [e.address], conditions: { ready: e.ready } })),
  };
}

const configHashOf = async (proxy: ProxyProgram): Promise<string> =>
  ((await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as { hash: string }).hash;

describe('proxy discovery and polling', () => {
  const track = useCleanup();
  const namespace = `cardinal-system-${randomBytes(4).toString('hex')}`;
  let plane: ControlPlane;
  let dropping: ProxyProgram;
  let plain: ProxyProgram;
  let api: DiscoveryV1Api;

  beforeAll(async () => {
    const sink = track(await startSink());
    const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-discovery-')), 'config');
    await projectConfigMap(configDir, { 'policies.yaml': POLICIES });
    // The control plane takes the longest to start; the proxies start meanwhile.
    const [cp, a, b] = await Promise.all([
      startControlPlane(),
      startProxy({ upstream: sink.url, args: () => ['--config', configDir] }),
      startProxy({ upstream: sink.url }),
    ]);
    plane = track(cp);
    dropping = track(a);
    plain = track(b);

    const now = Date.now();
    const series = (name: string, pod: string) => ({
      labels: [
        { name: '__name__', value: name },
        { name: 'pod', value: pod },
      ],
      samples: [{ value: 1, timestamp: now }],
      exemplars: [],
      histograms: [],
    });
    const res = await fetch(dropping.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: snappyEncode(
        encodeWriteRequestV1({
          timeseries: [series(DROPPED, 'a'), series(DROPPED, 'b'), series('cardinal_discovery_kept', 'a')],
          metadata: [],
        }),
      ),
    });
    expect(res.status).toBeLessThan(300);

    const port = (p: ProxyProgram) => Number(new URL(p.url).port);
    await plane.kubectl(['create', 'namespace', namespace]);
    await plane.apply(
      [
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: SERVICE, namespace },
          spec: { ports: [{ name: 'http', port: port(dropping), protocol: 'TCP' }] },
        },
        endpointSlice(namespace, `${SERVICE}-a`, port(dropping), [
          { address: ADDRESS_DROPPING, ready: true },
          // Not ready: a proxy still starting, or on its way out. It must not be polled.
          { address: '192.0.2.12', ready: false },
        ]),
        endpointSlice(namespace, `${SERVICE}-b`, port(plain), [{ address: ADDRESS_PLAIN, ready: true }]),
        // Another Service's slice in the same namespace must not be picked up.
        {
          ...endpointSlice(namespace, 'other', 9, [{ address: '192.0.2.13', ready: true }]),
          metadata: {
            name: 'other',
            namespace,
            labels: { 'kubernetes.io/service-name': 'other' },
          },
        },
      ]
        .map((o) => JSON.stringify(o))
        .join('\n---\n'),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(plane.kubeconfig);
    api = kc.makeApiClient(DiscoveryV1Api);
  });

  it('finds the ready proxies of the Service and reads their hashes and top offenders', async () => {
    const endpoints = await listProxyEndpoints(api, namespace, SERVICE);
    const a = `${ADDRESS_DROPPING}:${new URL(dropping.url).port}`;
    const b = `${ADDRESS_PLAIN}:${new URL(plain.url).port}`;
    expect(endpoints.map((e) => e.endpoint)).toEqual([a, b]);

    const polls = await pollAll(viaLoopback(endpoints), OPTIONS);
    expect(polls.map((p) => p.endpoint)).toEqual([a, b]);
    const [pa, pb] = polls;
    expect(pa).toMatchObject({ reachable: true, configHash: await configHashOf(dropping) });
    expect(pb).toMatchObject({ reachable: true, configHash: await configHashOf(plain) });
    // Different configurations, so a hash that was not really read from each proxy would show.
    expect(pa?.configHash).not.toBe(pb?.configHash);
    expect(polls.map((p) => [p.reason, p.lastError])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
    ]);

    const offenders = aggregateOffenders({
      current: polls.flatMap((p) => toEndpointPoll(p) ?? []),
      previous: [],
    });
    expect([...offenders.keys()]).toEqual([POLICY]);
    expect(offenders.get(POLICY)?.topOffenders).toEqual([
      { metric: DROPPED, series: 0, droppedSamples: 2, reason: 'metric_dropped' },
    ]);
  });

  it('reports a stopped proxy as unreachable after two missed rounds, and keeps the rates of the other', async () => {
    const poller = new ProxyPoller(OPTIONS);
    const endpoints = viaLoopback(await listProxyEndpoints(api, namespace, SERVICE));
    const first = await poller.poll(endpoints);
    expect(first.proxies.map((p) => p.reachable)).toEqual([true, true]);

    await plain.stop();
    // One missed round: it still runs what it ran when last reached.
    const missed = await poller.poll(endpoints);
    expect(missed.proxies.map((p) => p.reachable)).toEqual([true, true]);
    expect(missed.polls[1]?.reason).toMatch(/ECONNREFUSED/);
    const second = await poller.poll(endpoints);
    expect(second.proxies).toEqual([
      {
        endpoint: endpoints[0]?.endpoint,
        reachable: true,
        configHash: await configHashOf(dropping),
        fileHashes: expect.any(Object),
      },
      { endpoint: endpoints[1]?.endpoint, reachable: false, reason: expect.stringMatching(/ECONNREFUSED/) },
    ]);
    // The sha256 of each file the reachable proxy runs: its one policies file.
    expect(Object.values(second.proxies[0]?.fileHashes ?? {})).toEqual([
      expect.stringMatching(/^[0-9a-f]{64}$/),
    ]);
    expect(second.polls[1]?.reason).toMatch(/ECONNREFUSED/);
    // Nothing was dropped between the rounds: the rate is known, and zero.
    expect(second.offenders.get(POLICY)).toMatchObject({
      droppedSamples: 2,
      droppedSamplesPerSecond: 0,
      topOffenders: [{ metric: DROPPED, droppedSamples: 2, droppedSamplesPerSecond: 0 }],
    });
  });
});
