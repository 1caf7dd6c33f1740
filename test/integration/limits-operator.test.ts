// The operator and two real proxies sharing their limits through Debian's redis-server, on a real
// API server: the operator tells the proxies how many they are (the proxy-replicas key of the
// ConfigMap, projected as the kubelet does), which replaces `--limits.replicas` in the fallback
// share; and the MetricPolicy status says how full each limit is over both proxies (the store's
// count, not the sum of what each proxy saw), for remote-write and Pushgateway traffic alike.

import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  type ProxyProgram,
  projectedConfigDir,
  type RedisProgram,
  startOperator,
  startPolicyPlane,
  startProxy,
  startRedis,
  startSink,
  useCleanup,
} from '../framework/index.js';
import { type PushgatewayProgram, startPushgateway } from '../framework/pushgateway.js';

interface LimitUse {
  limit: string;
  metric?: string;
  current: number;
  max: number;
  global?: boolean;
}
interface PolicyObject {
  status?: {
    conditions?: { type: string; status: string }[];
    limits?: LimitUse[];
    limitsFillPercent?: number;
    limitsSummary?: string;
  };
}
interface StoreStatus {
  limitsStore: { state: string; replicas: number; replicasFrom: string; limits: string };
}

/** One remote-write request of `http_requests_total{path="/pN"}` for N in `paths`. */
function requests(paths: number[]): Uint8Array {
  return snappyEncode(
    encodeWriteRequestV1({
      timeseries: paths.map((n) => ({
        labels: [
          { name: '__name__', value: 'http_requests_total' },
          { name: 'path', value: `/p${n}` },
        ],
        samples: [{ value: n, timestamp: Date.now() }],
        exemplars: [],
        histograms: [],
      })),
      metadata: [],
    }),
  );
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('the operator and two proxies sharing their limits', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let kubectl: ReturnType<typeof kubectlOrThrow>;
  let redis: RedisProgram;
  let pushgateway: PushgatewayProgram;
  const proxies: ProxyProgram[] = [];

  const get = async (): Promise<PolicyObject> =>
    JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', 'caps', '-o', 'json']));
  const storeStatus = async (p: ProxyProgram): Promise<StoreStatus['limitsStore']> =>
    ((await (await fetch(`${p.url}/api/v1/status/config`)).json()) as StoreStatus).limitsStore;
  const write = async (p: ProxyProgram, paths: number[]) => {
    const res = await fetch(p.writeUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: requests(paths),
    });
    expect(res.status).toBe(204);
  };
  const push = async (p: ProxyProgram, job: string, shards: number[]) => {
    let text = '# HELP batch_rows_total Rows written.\n# TYPE batch_rows_total counter\n';
    for (const n of shards) text += `batch_rows_total{shard="s${n}"} ${n}\n`;
    const res = await fetch(`${p.url}/metrics/job/${job}`, { method: 'PUT', body: text });
    expect(res.status, await res.text()).toBe(200);
  };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    const configDir = await projectedConfigDir(track, {
      plane,
      namespace: system,
      name: 'cardinal-proxy-default-policies',
      prefix: 'cardinal-limits-operator-',
    });
    redis = track(await startRedis());
    pushgateway = track(await startPushgateway());
    const sink = track(await startSink());
    for (let i = 0; i < 2; i++) {
      proxies.push(
        track(
          await startProxy({
            upstream: sink.url,
            args: () => [
              '--config',
              configDir,
              '--pushgateway',
              pushgateway.url,
              '--limits.store',
              redis.url,
              '--limits.store.prefix',
              'it',
              '--limits.store.timeout',
              '3s',
              '--limits.store.retry-interval',
              '500ms',
              // What the chart passes without the operator: here the operator's count replaces it.
              '--limits.replicas',
              '5',
              '--replica-name',
              `proxy-${i}`,
            ],
          }),
        ),
      );
    }
    const operator = await startOperator({
      plane,
      namespace: system,
      args: [
        '--proxy-endpoints',
        proxies.map((p) => p.url).join(','),
        '--proxy-config-path',
        configDir,
        '--status-interval',
        '3s',
        '--leader-elect=false',
      ],
    });
    track(operator.program);
    await applyPolicy(plane, apps, 'caps', {
      limits: {
        perMetric: [
          { metric: 'http_requests_total', maxSeries: 20 },
          { metric: 'batch_rows_total', maxSeries: 10 },
        ],
      },
    });
  }, 180_000);

  it("takes the operator's count of the proxies for the fallback share, instead of --limits.replicas", async () => {
    for (const p of proxies) expect((await storeStatus(p)).replicas).toBe(5);
    await eventually(
      async () => {
        for (const p of proxies)
          expect(await storeStatus(p)).toMatchObject({
            state: 'store',
            replicas: 2,
            replicasFrom: 'operator',
          });
      },
      { timeoutMs: 60_000 },
    );
    const cm = JSON.parse(
      await kubectl(['-n', system, 'get', 'configmap', 'cardinal-proxy-default-policies', '-o', 'json']),
    ) as { data: Record<string, string> };
    expect(cm.data['proxy-replicas']).toBe('2\n');
    // The count is no part of the configuration: the policy is Ready on both proxies all the same.
    await eventually(async () => {
      const ready = (await get()).status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready?.status).toBe('True');
    });
  });

  it('shows how full each limit is over both proxies: the store count, not the sum of what each saw', async () => {
    // Proxy 0 sees /p0../p7, proxy 1 sees /p4../p11: 12 series in all, 8 on each proxy, 16 summed.
    await write(proxies[0]!, range(0, 8));
    await write(proxies[1]!, range(4, 8));
    const http = await eventually(
      async () => {
        const s = (await get()).status;
        const use = s?.limits?.find((l) => l.metric === 'http_requests_total');
        expect(use).toEqual({
          limit: 'perMetric[0]',
          metric: 'http_requests_total',
          current: 12,
          max: 20,
          global: true,
        });
        expect(s?.limitsFillPercent).toBe(60);
        return s;
      },
      { timeoutMs: 60_000 },
    );
    expect(http?.limitsSummary).toBe('http_requests_total 12/20');

    // Pushes count against the same global limits: 8 shards through each proxy, 10 allowed in all.
    await push(proxies[0]!, 'nightly-a', range(0, 8));
    await push(proxies[1]!, 'nightly-b', range(0, 8));
    const pushed = (await pushgateway.pushed()).filter((s) => s.name === 'batch_rows_total');
    expect(pushed).toHaveLength(10);
    await eventually(
      async () => {
        const s = (await get()).status;
        expect(s?.limits?.[0]).toEqual({
          limit: 'perMetric[1]',
          metric: 'batch_rows_total',
          current: 10,
          max: 10,
          global: true,
        });
        expect(s?.limitsFillPercent).toBe(100);
        expect(s?.limitsSummary).toBe('batch_rows_total 10/10, http_requests_total 12/20');
      },
      { timeoutMs: 60_000 },
    );
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
    expect(row).toMatch(
      /^caps\s+enforce\s+True\s+2\s+[\d.]+\s+100\s+batch_rows_total 10\/10, http_requests_total 12\/20\s+\d+s$/,
    );
  });

  it('enforces limit / the operator\u2019s count while the store does not answer', async () => {
    await redis.stop();
    // A series new to each proxy makes it ask the store, find it gone and fall back.
    await write(proxies[0]!, [100]);
    await write(proxies[1]!, [101]);
    for (const p of proxies) {
      expect(await storeStatus(p)).toMatchObject({ state: 'fallback', limits: 'local share: limit / 2' });
      expect(await (await fetch(`${p.url}/-/ready`)).text()).toMatch(/enforcing each limit \/ 2 locally/);
    }
    // Proxy 0 knows 9 series of the metric (/p0../p7 and /p100): with the operator's 2 it admits new
    // ones up to 20 / 2 = 10 on its own (with --limits.replicas 5 it would admit none past 4).
    await write(proxies[0]!, range(200, 15));
    const local = (await (await fetch(`${proxies[0]!.url}/api/v1/stats/limits`)).json()) as {
      policies: { policy: string; global: boolean; limits: LimitUse[] }[];
    };
    const mine = local.policies.find((p) => p.policy === `${apps}/caps`);
    expect(mine?.global).toBe(false);
    expect(mine?.limits.find((l) => l.metric === 'http_requests_total')).toMatchObject({
      current: 10,
      max: 20,
    });
    await redis.start();
    await eventually(
      async () => {
        for (const p of proxies) expect((await storeStatus(p)).state).toBe('store');
      },
      { timeoutMs: 60_000 },
    );
  });
});
