// A MetricPolicy that names an out-of-tree stage, through the operator on a real API server into a
// proxy that loads the example hash-bucket plugin (--stage.plugin). The operator cannot load
// plugins, so it accepts `spec.stages[].config` as the CRD keeps it (open) and renders it; the
// proxy validates the config with the plugin's schema and refuses a bad one, keeping what it ran.
// The operator reports that verdict in the policy's status: Degraded=True (ReloadFailed) with the
// plugin's own message, a Warning Event, and back to AsExpected once the config is mended.

import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  type ProxyProgram,
  projectedConfigDir,
  startOperator,
  startPolicyPlane,
  startProxy,
  startSink,
  useCleanup,
} from '../framework/index.js';

const HASH_BUCKET = fileURLToPath(new URL('../../dist/examples/stages/hash-bucket.js', import.meta.url));
const CONFIG_MAP = 'cardinal-proxy-default-policies';

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
}

interface PolicyObject {
  metadata: { generation: number };
  status?: { conditions?: Condition[] };
}

describe('a policy naming a stage plugin, through the operator', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let proxy: ProxyProgram;
  let kubectl: ReturnType<typeof kubectlOrThrow>;

  const apply = (buckets: unknown) =>
    applyPolicy(plane, apps, 'bucketed', {
      match: { selector: '{__name__="cardinal_test_requests_total"}' },
      stages: [
        {
          name: 'hash-bucket',
          config: { label: 'user', buckets, metrics: ['cardinal_test_requests_total'] },
        },
      ],
    });
  const conditions = async (): Promise<{ generation: number; byType: Map<string, Condition> }> => {
    const p = JSON.parse(
      await kubectl(['-n', apps, 'get', 'metricpolicy', 'bucketed', '-o', 'json']),
    ) as PolicyObject;
    return {
      generation: p.metadata.generation,
      byType: new Map((p.status?.conditions ?? []).map((c) => [c.type, c])),
    };
  };
  const proxyStatus = async () =>
    (await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as {
      hash: string;
      lastError: { message: string } | null;
    };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    const configDir = await projectedConfigDir(track, {
      plane,
      namespace: system,
      name: CONFIG_MAP,
      prefix: 'cardinal-operator-plugins-',
    });
    const sink = track(await startSink());
    proxy = track(
      await startProxy({
        upstream: sink.url,
        args: () => ['--config', configDir, '--stage.plugin', HASH_BUCKET],
      }),
    );
    const operator = await startOperator({
      plane,
      namespace: system,
      args: [
        '--proxy-endpoints',
        proxy.url,
        '--proxy-config-path',
        configDir,
        '--status-interval',
        '5s',
        '--config-shards',
        '1',
        '--leader-elect=false',
      ],
    });
    track(operator.program);
  });

  it('is Ready with a good config, Degraded with the plugin message for a bad one, and recovers', async () => {
    await apply(4);
    await eventually(
      async () => {
        const { generation, byType } = await conditions();
        expect(byType.get('Accepted')).toMatchObject({ status: 'True', observedGeneration: generation });
        expect(byType.get('Ready')).toMatchObject({ status: 'True', observedGeneration: generation });
        expect(byType.get('Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
      },
      { timeoutMs: 90_000 },
    );
    const good = await proxyStatus();
    expect(good.lastError).toBeNull();

    // A config the plugin's schema refuses: accepted by the API server and the operator (the CRD
    // keeps stages[].config open), refused by the proxy, which keeps running the good one.
    await apply('two');
    await eventually(
      async () => {
        const { byType } = await conditions();
        const degraded = byType.get('Degraded');
        expect(degraded).toMatchObject({ status: 'True', reason: 'ReloadFailed' });
        expect(degraded?.message).toContain('stages[0].config.buckets');
        expect(degraded?.message).toContain('(plugin hash-bucket)');
        expect(byType.get('Accepted')?.status).toBe('True');
      },
      { timeoutMs: 90_000 },
    );
    const refused = await proxyStatus();
    expect(refused.hash).toBe(good.hash);
    expect(refused.lastError?.message).toContain(
      'stages[0].config.buckets: Expected integer (plugin hash-bucket)',
    );
    await eventually(
      async () => {
        const events = JSON.parse(
          await kubectl([
            '-n',
            apps,
            'get',
            'events',
            '--field-selector',
            'involvedObject.name=bucketed',
            '-o',
            'json',
          ]),
        ) as { items: { type: string; reason: string; message: string }[] };
        expect(
          events.items.some((e) => e.type === 'Warning' && e.message.includes('(plugin hash-bucket)')),
        ).toBe(true);
      },
      { timeoutMs: 60_000 },
    );

    // Mended: the proxy loads it, and the policy is well again for its new generation.
    await apply(8);
    await eventually(
      async () => {
        const { generation, byType } = await conditions();
        expect(byType.get('Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
        expect(byType.get('Ready')).toMatchObject({ status: 'True', observedGeneration: generation });
      },
      { timeoutMs: 90_000 },
    );
    const mended = await proxyStatus();
    expect(mended.lastError).toBeNull();
    expect(mended.hash).not.toBe(good.hash);
  });
});
