// What `kubectl` tells about a policy while a real proxy drops for it, with the real operator on a
// real API server: the drop rate in status against the proxy's own counter over a minute of steady
// drops, the printer columns, Warning Events for a rejection and for unreachable proxies (counted
// on one Event when they repeat, as client-go's recorder does), and the last known offenders kept,
// marked stale, while the proxy is down. The operator writes two shards, which a kubelet-like sync
// projects into the proxy's directory as one volume.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  metricSum,
  type ProxyProgram,
  projectedConfigDir,
  startOperator,
  startPolicyPlane,
  startProxy,
  startSink,
  useCleanup,
} from '../framework/index.js';

const STATUS_INTERVAL_S = 5;
/** Samples the sender writes per request, and requests per second: 400 dropped samples a second. */
const DROPPED_PER_REQUEST = 40;
const REQUESTS_PER_SECOND = 10;

interface PolicyObject {
  metadata: { generation: number };
  status?: {
    conditions?: { type: string; status: string; reason: string; message: string }[];
    droppedSamplesPerSecond?: number;
    limitsFillPercent?: number;
    reason?: string;
    offendersStale?: boolean;
    topOffender?: string;
    topOffenders?: { metric: string; droppedSamplesPerSecond?: number }[];
  };
}

interface EventObject {
  reason: string;
  type: string;
  message: string;
  count: number;
}

describe('policy status from a proxy that drops', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let proxy: ProxyProgram;
  let operatorMetrics: string;
  let kubectl: ReturnType<typeof kubectlOrThrow>;
  let sending = true;

  const get = async (name: string): Promise<PolicyObject> =>
    JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', name, '-o', 'json']));
  const condition = (p: PolicyObject, type: string) => p.status?.conditions?.find((c) => c.type === type);
  const events = async (name: string): Promise<EventObject[]> =>
    (
      JSON.parse(
        await kubectl([
          '-n',
          apps,
          'get',
          'events',
          '--field-selector',
          `involvedObject.name=${name}`,
          '-o',
          'json',
        ]),
      ) as { items: EventObject[] }
    ).items;
  /** Samples the proxy counted as dropped by the policy, over every rule and reason. */
  const dropped = () =>
    proxy.metric('cardinal_proxy_policy_samples_total', { policy: `${apps}/drop-debug`, action: 'dropped' });

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    const configDir = await projectedConfigDir(track, {
      plane,
      namespace: system,
      name: 'cardinal-proxy-default-policies',
      names: ['cardinal-proxy-default-policies-1'],
      prefix: 'cardinal-status-',
    });
    const sink = track(await startSink());
    proxy = track(await startProxy({ upstream: sink.url, args: () => ['--config', configDir] }));
    const operator = await startOperator({
      plane,
      namespace: system,
      args: [
        '--proxy-endpoints',
        proxy.url,
        '--proxy-config-path',
        configDir,
        '--status-interval',
        `${STATUS_INTERVAL_S}s`,
        '--config-shards',
        '2',
        '--leader-elect=false',
      ],
    });
    track(operator.program);
    operatorMetrics = operator.metricsUrl;

    // A steady sender: 40 series of a dropped metric and 5 of a limited one, ten times a second.
    const body = (t: number) =>
      snappyEncode(
        encodeWriteRequestV1({
          timeseries: [
            ...Array.from({ length: DROPPED_PER_REQUEST }, (_, i) => ({
              labels: [
                { name: '__name__', value: 'debug_queue_depth' },
                { name: 'shard', value: String(i) },
              ],
              samples: [{ value: i, timestamp: t }],
              exemplars: [],
              histograms: [],
            })),
            ...Array.from({ length: 5 }, (_, i) => ({
              labels: [
                { name: '__name__', value: 'http_requests_total' },
                { name: 'path', value: `/p${i}` },
              ],
              samples: [{ value: i, timestamp: t }],
              exemplars: [],
              histograms: [],
            })),
          ],
          metadata: [],
        }),
      );
    const send = async () => {
      const started = Date.now();
      for (let n = 0; sending; n++) {
        // Paced against the start, so a late request does not slow the rate down.
        const due = started + (n * 1000) / REQUESTS_PER_SECOND;
        if (due > Date.now()) await sleep(due - Date.now());
        await fetch(proxy.writeUrl, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-protobuf',
            'content-encoding': 'snappy',
            'x-prometheus-remote-write-version': '0.1.0',
          },
          body: body(Date.now()),
        }).then(
          (r) => r.body?.cancel(),
          () => undefined,
        );
      }
    };
    const sender = send();
    track({
      dirs: [],
      close: async () => {
        sending = false;
        await sender;
      },
    });

    await applyPolicy(plane, apps, 'drop-debug', {
      drop: ['debug_.*'],
      limits: { perMetric: [{ metric: 'http_.*', maxSeries: 10 }] },
    });
  });

  it('reports the rate the proxy counts, within 10 %, over a minute of steady drops', async () => {
    await eventually(
      async () => {
        const p = await get('drop-debug');
        expect(condition(p, 'Ready')?.status).toBe('True');
        expect(p.status?.droppedSamplesPerSecond).toBeGreaterThan(0);
      },
      { timeoutMs: 60_000 },
    );
    const writesBefore = await metricSum(operatorMetrics, 'cardinal_operator_status_writes_total');
    const t0 = Date.now();
    const c0 = await dropped();
    await sleep(60_000);
    const c1 = await dropped();
    const t1 = Date.now();
    const counted = (c1 - c0) / ((t1 - t0) / 1000);
    const status = (await get('drop-debug')).status;
    const writes = (await metricSum(operatorMetrics, 'cardinal_operator_status_writes_total')) - writesBefore;
    console.log(
      `operator-status: proxy counter ${counted.toFixed(1)} samples/s over ${((t1 - t0) / 1000).toFixed(1)} s; status ${status?.droppedSamplesPerSecond}/s; ${writes} status writes in that minute`,
    );
    expect(counted).toBeGreaterThan(0);
    expect(Math.abs((status?.droppedSamplesPerSecond ?? 0) - counted) / counted).toBeLessThan(0.1);
    expect(status?.topOffenders?.[0]?.metric).toBe('debug_queue_depth');
    // 5 of the 10 series the perMetric limit allows.
    expect(status?.limitsFillPercent).toBe(50);
  });

  it('prints Mode, Ready, Reason, Proxies, Dropped/s, Limits % and Limits, and the offender with -o wide', async () => {
    const [header, row] = (await kubectl(['-n', apps, 'get', 'mp'])).trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual([
      'NAME',
      'MODE',
      'READY',
      'REASON',
      'PROXIES',
      'DROPPED/S',
      'LIMITS %',
      'LIMITS',
      'AGE',
    ]);
    // No reason when all is well: kubectl leaves the cell empty.
    expect(row).toMatch(/^drop-debug\s+enforce\s+True\s+1\s+[\d.]+\s+50\s+http_requests_total 5\/10\s+\d+s$/);
    const [wideHeader, wideRow] = (await kubectl(['-n', apps, 'get', 'mp', '-o', 'wide'])).trim().split('\n');
    expect(wideHeader).toMatch(/\sLIMITS %\s+LIMITS\s+TOP OFFENDER\s+UNUSED SERIES\s+AGE$/);
    expect(wideRow).toMatch(
      /\s50\s+http_requests_total 5\/10\s+debug_queue_depth [\d.]+\/s metric_dropped\s+\d+s$/,
    );
  });

  it('says why a rejected policy is not ready, with one Warning Event', async () => {
    await applyPolicy(plane, apps, 'bad-regex', { drop: ['(?=lookahead)'] });
    await eventually(async () => {
      const row = (await kubectl(['-n', apps, 'get', 'mp', 'bad-regex', '--no-headers'])).trim();
      expect(row).toMatch(/^bad-regex\s+enforce\s+False\s+InvalidSpec\s/);
    });
    await eventually(async () => {
      const rejected = (await events('bad-regex')).filter((e) => e.reason === 'Rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]).toMatchObject({ type: 'Warning', count: 1 });
    });
    // The steady drops of the first test wrote no Event.
    expect(await events('drop-debug')).toEqual([]);
  });

  it('keeps the last offenders, marked stale, while the proxy is down, and counts a repeated Degraded on one Event', async () => {
    const degradedWhileDown = async () => {
      await proxy.stop();
      const p = await eventually(
        async () => {
          const p = await get('drop-debug');
          expect(condition(p, 'Degraded')).toMatchObject({ status: 'True', reason: 'ProxiesUnreachable' });
          return p;
        },
        { timeoutMs: 60_000 },
      );
      expect(p.status?.reason).toBe('ProxiesUnreachable');
      expect(p.status?.offendersStale).toBe(true);
      expect(p.status?.topOffenders?.[0]?.metric).toBe('debug_queue_depth');
      expect(p.status?.topOffender).toMatch(/^debug_queue_depth \S+\/s metric_dropped \(stale\)$/);
      expect(p.status?.droppedSamplesPerSecond).toBeGreaterThan(0);
      await proxy.start();
      await eventually(
        async () => {
          const p = await get('drop-debug');
          expect(condition(p, 'Degraded')?.status).toBe('False');
          expect(p.status?.offendersStale).toBeUndefined();
        },
        { timeoutMs: 60_000 },
      );
    };
    await degradedWhileDown();
    const first = await eventually(async () => {
      const degraded = (await events('drop-debug')).filter((e) => e.reason === 'Degraded');
      expect(degraded).toHaveLength(1);
      return degraded[0]!;
    });
    expect(first).toMatchObject({ type: 'Warning', count: 1 });
    console.log(`operator-status: the Degraded Event says ${JSON.stringify(first.message)}`);
    expect(first.message).toMatch(
      /^ProxiesUnreachable: 1 of 1 proxies could not be reached: 127\.0\.0\.1:\d+ \(.+\)\.$/,
    );

    await degradedWhileDown();
    await eventually(async () => {
      const degraded = (await events('drop-debug')).filter((e) => e.reason === 'Degraded');
      expect(degraded).toHaveLength(1);
      expect(degraded[0]).toMatchObject({ count: 2, message: first.message });
    });
  });
});
