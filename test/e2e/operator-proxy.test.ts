// The whole loop, as in a cluster: MetricPolicies applied with kubectl to a real API server, the
// operator (node dist/operator/main.js) rendering them into the proxy's ConfigMap, a kubelet-like
// sync projecting that ConfigMap into the proxy's --config directory, and a real sender (vmagent)
// writing through the proxy into a real Prometheus. PromQL shows each policy change take effect,
// and the policies' status shows what the operator learns by polling the proxy: Ready once the
// proxy runs the policy's generation, and the metrics it drops as top offenders.
//
// The operator finds the proxy with --proxy-endpoints: the API server refuses loopback addresses
// in EndpointSlices, so --proxy-service cannot name a proxy on 127.0.0.1 (EndpointSlice discovery
// is covered by test/integration/proxy-discovery.test.ts).

import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  type PrometheusReceiver,
  type ProxyProgram,
  startPolicyPlane,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';
import { DEFAULT_CONFIG_MAP, startGovernedStack } from '../framework/stack.js';

const CONFIG_MAP = DEFAULT_CONFIG_MAP;

describe('operator -> ConfigMap -> proxy -> Prometheus', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let receiver: PrometheusReceiver;
  let proxy: ProxyProgram;

  let kubectl: ReturnType<typeof kubectlOrThrow>;
  const policy = (name: string, spec: Record<string, unknown>) => applyPolicy(plane, apps, name, spec);
  const accepted = async (name: string) => {
    const p = JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', name, '-o', 'json'])) as {
      metadata: { generation: number };
      status?: {
        observedGeneration?: number;
        conditions?: {
          type: string;
          status: string;
          reason: string;
          message: string;
          observedGeneration: number;
        }[];
        proxies?: { ready: number; total: number; configHash: string };
        topOffenders?: { metric: string; reason: string; droppedSamples: number }[];
        topOffender?: string;
      };
    };
    return {
      generation: p.metadata.generation,
      status: p.status,
      condition: p.status?.conditions?.find((c) => c.type === 'Accepted'),
      ready: p.status?.conditions?.find((c) => c.type === 'Ready'),
    };
  };
  /** The reasons of the Events recorded on a policy. */
  const events = async (name: string) => {
    const list = JSON.parse(
      await kubectl([
        'get',
        'events',
        '-n',
        apps,
        '--field-selector',
        `involvedObject.name=${name}`,
        '-o',
        'json',
      ]),
    ) as { items: { reason: string; message: string; type: string; source?: { component?: string } }[] };
    return list.items;
  };
  /** Samples of `metric` the receiver got in the last `seconds`. */
  const recent = async (metric: string, seconds = 3) => {
    const [r] = await receiver.query(`sum(count_over_time(${metric}[${seconds}s]))`);
    return r?.value ?? 0;
  };
  /** The proxy runs the configuration the operator rendered last. */
  const proxyInSync = async () => {
    const cm = JSON.parse(await kubectl(['-n', system, 'get', 'configmap', CONFIG_MAP, '-o', 'json'])) as {
      data: Record<string, string>;
    };
    const status = (await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as {
      hash: string;
      policies: number;
      lastError: unknown;
    };
    expect(status.lastError).toBeNull();
    return { cm, status };
  };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    ({ receiver, proxy } = await startGovernedStack({ plane, namespace: system, track }));
    const target = track(await startTarget());
    target.setSeries([
      { name: 'cardinal_test_debug_queue_depth', labels: { queue: 'a' }, value: 1 },
      { name: 'cardinal_test_temperature_celsius', labels: { room: 'lab' }, value: 21 },
      { name: 'cardinal_test_up', value: 1 },
    ]);
    track(await startVmagent({ remoteWriteUrl: proxy.writeUrl, scrapeTargets: [target.address] }));
    await eventually(async () => expect(await recent('cardinal_test_up')).toBeGreaterThan(0), {
      timeoutMs: 20_000,
    });
  });

  it('a policy applied with kubectl takes effect in Prometheus; edits and deletion too', async () => {
    // Everything flows before any policy.
    expect(await recent('cardinal_test_debug_queue_depth')).toBeGreaterThan(0);

    await policy('drop-debug', { drop: ['cardinal_test_debug_.*'] });
    await eventually(async () => expect((await accepted('drop-debug')).condition?.status).toBe('True'), {
      timeoutMs: 15_000,
    });
    await eventually(async () => expect((await proxyInSync()).status.policies).toBe(1), {
      timeoutMs: 15_000,
    });
    await eventually(async () => expect(await recent('cardinal_test_debug_queue_depth')).toBe(0), {
      timeoutMs: 15_000,
    });
    expect(await recent('cardinal_test_up')).toBeGreaterThan(0);
    expect(
      await proxy.metric('cardinal_proxy_policy_samples_total', {
        policy: `${apps}/drop-debug`,
        reason: 'metric_dropped',
      }),
    ).toBeGreaterThan(0);

    // The operator polled the proxy: it runs this generation, and what the policy drops is named.
    await eventually(
      async () => {
        const a = await accepted('drop-debug');
        expect(a.ready).toMatchObject({ status: 'True', reason: 'ConfigLoaded', observedGeneration: 1 });
        expect(a.status?.proxies).toMatchObject({ ready: 1, total: 1 });
        expect(a.status?.topOffenders?.[0]).toMatchObject({
          metric: 'cardinal_test_debug_queue_depth',
          reason: 'metric_dropped',
        });
        expect(a.status?.topOffenders?.[0]?.droppedSamples).toBeGreaterThan(0);
      },
      { timeoutMs: 15_000 },
    );
    expect((await accepted('drop-debug')).status?.proxies?.configHash).toBe(
      (await proxyInSync()).status.hash,
    );
    // `kubectl get mp` shows it in the printer columns; the offender line (with -o wide) carries a
    // rate from the second poll that saw the drops on.
    await eventually(async () => {
      const [header, row] = (await kubectl(['-n', apps, 'get', 'mp', '-o', 'wide'])).trim().split('\n');
      expect(header).toMatch(
        /^NAME\s+MODE\s+READY\s+REASON\s+PROXIES\s+DROPPED\/S\s+LIMITS %\s+LIMITS\s+TOP OFFENDER\s+UNUSED SERIES\s+AGE$/,
      );
      expect(row).toMatch(
        /^drop-debug\s+enforce\s+True\s+1\s+\S+\s+cardinal_test_debug_queue_depth \S+\/s metric_dropped\s/,
      );
    });
    // A new policy's acceptance is in its status, not in an Event.
    expect((await events('drop-debug')).map((e) => e.reason)).toEqual([]);

    // An edit: the policy now drops the temperature too; observedGeneration follows.
    await policy('drop-debug', { drop: ['cardinal_test_debug_.*', 'cardinal_test_temperature_.*'] });
    await eventually(
      async () => {
        const a = await accepted('drop-debug');
        expect(a.generation).toBe(2);
        expect(a.status?.observedGeneration).toBe(2);
      },
      { timeoutMs: 15_000 },
    );
    await eventually(async () => expect(await recent('cardinal_test_temperature_celsius')).toBe(0), {
      timeoutMs: 15_000,
    });
    await eventually(
      async () => {
        const a = await accepted('drop-debug');
        expect(a.ready).toMatchObject({ status: 'True', reason: 'ConfigLoaded', observedGeneration: 2 });
        expect(a.status?.proxies?.ready).toBe(1);
      },
      { timeoutMs: 15_000 },
    );

    // A policy the API server accepts but the proxy could not run is rejected by the operator, and
    // the others stay in force.
    await policy('bad-regex', { drop: ['(?=lookahead)'] });
    await eventually(
      async () => {
        const a = await accepted('bad-regex');
        expect(a.condition?.status).toBe('False');
        expect(a.condition?.message).toContain('(?=lookahead)');
      },
      { timeoutMs: 15_000 },
    );
    await eventually(
      async () => {
        const rejected = (await events('bad-regex')).filter((e) => e.reason === 'Rejected');
        expect(rejected).toHaveLength(1);
        expect(rejected[0]).toMatchObject({ type: 'Warning' });
        expect(rejected[0]?.message).toMatch(/^Generation 1 rejected \(InvalidSpec\): .*\(\?=lookahead\)/s);
      },
      { timeoutMs: 15_000 },
    );
    // The edit was accepted, once: a steady state records no more Events.
    const acceptedEvents = (await events('drop-debug')).filter((e) => e.reason === 'Accepted');
    expect(acceptedEvents).toHaveLength(1);
    expect(acceptedEvents[0]).toMatchObject({
      type: 'Normal',
      message: 'Generation 2 accepted for proxy instance default.',
      source: { component: 'cardinal-operator' },
    });
    const { cm } = await proxyInSync();
    expect(cm.data['policies.yaml']).toContain('drop-debug');
    expect(cm.data['policies.yaml']).not.toContain('bad-regex');
    expect(await recent('cardinal_test_debug_queue_depth')).toBe(0);

    // Deleting the policy removes its rules: the dropped metrics arrive again.
    await kubectl(['-n', apps, 'delete', 'metricpolicy', 'drop-debug']);
    await eventually(async () => expect((await proxyInSync()).status.policies).toBe(0), {
      timeoutMs: 15_000,
    });
    await eventually(async () => expect(await recent('cardinal_test_debug_queue_depth')).toBeGreaterThan(0), {
      timeoutMs: 15_000,
    });
  });
});
