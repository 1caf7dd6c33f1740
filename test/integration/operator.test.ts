// The operator as users run it (node dist/operator/main.js) against a real API server: policies in,
// the proxy's ConfigMap and the policies' statuses out, with no write when nothing changed.

import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../../policy/load.js';
import { validatePolicies } from '../../policy/validate.js';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  metricSum,
  type Program,
  startOperator,
  startPolicyPlane,
  useCleanup,
} from '../framework/index.js';

const CONFIG_MAP = 'cardinal-proxy-default-policies';

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

interface PolicyObject {
  metadata: { name: string; namespace: string; generation: number; resourceVersion: string };
  spec: Record<string, unknown>;
  status?: { observedGeneration?: number; conditions?: Condition[] };
}

interface ConfigMapObject {
  metadata: { resourceVersion: string; annotations: Record<string, string> };
  data: Record<string, string>;
}

describe('cardinal-operator on a real API server', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  // The proxies' namespace and the one the policies live in, both our own.
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let operator: Program;
  let metricsUrl: string;

  let kubectl: ReturnType<typeof kubectlOrThrow>;
  const apply = (name: string, spec: Record<string, unknown>) => applyPolicy(plane, apps, name, spec);
  const getPolicy = async (name: string): Promise<PolicyObject> =>
    JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', name, '-o', 'json']));
  const getConfigMap = async (): Promise<ConfigMapObject> =>
    JSON.parse(await kubectl(['-n', system, 'get', 'configmap', CONFIG_MAP, '-o', 'json']));
  /** The rendered policies by name, as the proxy will read them. */
  const rendered = async (): Promise<Map<string, Record<string, unknown>>> => {
    const docs = parseAllDocuments((await getConfigMap()).data['policies.yaml'] ?? '').map(
      (d) => d.toJS() as { metadata: { name: string; namespace: string }; spec: Record<string, unknown> },
    );
    for (const d of docs) expect(d.metadata.namespace).toBe(apps);
    return new Map(docs.map((d) => [d.metadata.name, d.spec]));
  };
  const condition = (p: PolicyObject, type: string) => p.status?.conditions?.find((c) => c.type === type);

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    const started = await startOperator({ plane, namespace: system, args: ['--log-level', 'debug'] });
    operator = track(started.program);
    metricsUrl = started.metricsUrl;
  });

  it('renders a valid policy into the ConfigMap and marks it Accepted for its generation', async () => {
    await apply('drop-gc', { drop: ['go_gc_.*'] });
    await eventually(async () => {
      expect((await rendered()).get('drop-gc')).toMatchObject({ drop: ['go_gc_.*'], mode: 'enforce' });
    });
    const policy = await eventually(async () => {
      const p = await getPolicy('drop-gc');
      expect(condition(p, 'Accepted')).toMatchObject({
        status: 'True',
        reason: 'Accepted',
        observedGeneration: p.metadata.generation,
      });
      return p;
    });
    expect(policy.status?.observedGeneration).toBe(policy.metadata.generation);
    // This operator runs without --proxy-service or --proxy-endpoints: it does not look at the
    // proxies, and the status says so rather than claiming there are none.
    expect(condition(policy, 'Ready')).toMatchObject({ status: 'Unknown', reason: 'ProxiesNotObserved' });
    expect(condition(policy, 'Ready')?.message).toContain('--proxy-service or --proxy-endpoints');
    expect(condition(policy, 'Degraded')).toMatchObject({ status: 'Unknown', reason: 'ProxiesNotObserved' });
  });

  it('re-renders an edited policy, and observedGeneration follows', async () => {
    await apply('drop-gc', { drop: ['go_gc_.*', 'go_memstats_.*'] });
    await eventually(async () => {
      expect((await rendered()).get('drop-gc')?.drop).toEqual(['go_gc_.*', 'go_memstats_.*']);
    });
    await eventually(async () => {
      const p = await getPolicy('drop-gc');
      expect(p.metadata.generation).toBe(2);
      expect(p.status?.observedGeneration).toBe(2);
      expect(condition(p, 'Accepted')).toMatchObject({ status: 'True', observedGeneration: 2 });
    });
  });

  it('rejects what the proxy would reject, with its message, and keeps the valid policies rendered', async () => {
    // RE2 has no lookahead; the API server's schema cannot know that.
    const spec = { drop: ['(?=x)'], match: { selector: '{job=' } };
    let expected = '';
    try {
      validatePolicies([{ name: 'bad', namespace: apps, source: 'bad', spec }]);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      expected = err.message.replaceAll('bad: ', '');
    }
    expect(expected).toContain('spec.drop[0]');
    await apply('bad', spec);
    await eventually(async () => {
      const p = await getPolicy('bad');
      expect(condition(p, 'Accepted')).toMatchObject({
        status: 'False',
        reason: 'InvalidSpec',
        message: expected,
        observedGeneration: 1,
      });
      expect(condition(p, 'Ready')).toMatchObject({ status: 'False', reason: 'NotAccepted' });
    });
    const policies = await rendered();
    expect([...policies.keys()]).toEqual(['drop-gc']);

    // A rejected edit of an accepted policy leaves its last accepted generation in force.
    await apply('drop-gc', { drop: ['(?!go_)'] });
    await eventually(async () => {
      const p = await getPolicy('drop-gc');
      expect(p.metadata.generation).toBe(3);
      expect(condition(p, 'Accepted')).toMatchObject({ status: 'False', observedGeneration: 3 });
      expect(condition(p, 'Ready')?.message).toContain('generation 2 stays in force');
    });
    expect((await rendered()).get('drop-gc')?.drop).toEqual(['go_gc_.*', 'go_memstats_.*']);
    await apply('drop-gc', { drop: ['go_gc_.*', 'go_memstats_.*'] });
    await eventually(async () => {
      const p = await getPolicy('drop-gc');
      expect(condition(p, 'Accepted')).toMatchObject({ status: 'True', observedGeneration: 4 });
    });
  });

  it('removes a deleted policy from the ConfigMap', async () => {
    await apply('drop-up', { drop: ['up'] });
    await eventually(async () => expect([...(await rendered()).keys()]).toEqual(['drop-gc', 'drop-up']));
    await kubectl(['-n', apps, 'delete', 'metricpolicy', 'drop-up']);
    await eventually(async () => expect([...(await rendered()).keys()]).toEqual(['drop-gc']));
  });

  it('puts back a ConfigMap edited by hand', async () => {
    const before = await getConfigMap();
    await kubectl([
      '-n',
      system,
      'patch',
      'configmap',
      CONFIG_MAP,
      '--type=merge',
      '-p',
      JSON.stringify({ data: { 'policies.yaml': '# emptied by hand\n' } }),
    ]);
    await eventually(async () => {
      const after = await getConfigMap();
      expect(after.metadata.resourceVersion).not.toBe(before.metadata.resourceVersion);
      expect(after.data).toEqual(before.data);
    });
  });

  it('writes nothing after a restart when nothing changed', async () => {
    // Let the operator settle: the last edit's echo may still be in flight.
    await eventually(async () =>
      expect(await metricSum(metricsUrl, 'cardinal_operator_queue_depth')).toBe(0),
    );
    const configMap = await getConfigMap();
    const policies = await Promise.all(['drop-gc', 'bad'].map(getPolicy));
    await operator.restart();
    await eventually(async () => {
      expect(
        await metricSum(metricsUrl, 'cardinal_operator_configmap_applies_total', { outcome: 'skipped' }),
      ).toBeGreaterThanOrEqual(1);
    });
    expect(
      await metricSum(metricsUrl, 'cardinal_operator_configmap_applies_total', { outcome: 'written' }),
    ).toBe(0);
    expect(await metricSum(metricsUrl, 'cardinal_operator_status_writes_total')).toBe(0);
    expect(await metricSum(metricsUrl, 'cardinal_operator_events_total')).toBe(0);
    expect((await getConfigMap()).metadata.resourceVersion).toBe(configMap.metadata.resourceVersion);
    for (const p of policies) {
      expect((await getPolicy(p.metadata.name)).metadata.resourceVersion).toBe(p.metadata.resourceVersion);
    }
  });
});
