import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import { CONFIG_KEY, GENERATIONS_ANNOTATION } from '../render/configmap.js';
import {
  type Cluster,
  type LiveConfigMap,
  needsApply,
  PROXIES_NOT_OBSERVED,
  reconcileInstance,
} from './reconcile.js';

function policy(name: string, spec: MetricPolicySpecT, generation = 1, namespace = 'apps'): MetricPolicy {
  return {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { name, namespace, generation, resourceVersion: '1' },
    spec,
  };
}

/** An API server in memory: writes land in the state the next reconcile reads. */
class FakeCluster implements Cluster {
  readonly items = new Map<string, MetricPolicy>();
  readonly configMaps = new Map<string, LiveConfigMap>();
  applies = 0;
  statusWrites = 0;

  set(p: MetricPolicy): void {
    this.items.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
  }
  policies(): readonly MetricPolicy[] {
    return [...this.items.values()];
  }
  configMap(name: string): LiveConfigMap | undefined {
    return this.configMaps.get(name);
  }
  async applyConfigMap(cm: ConfigMap): Promise<void> {
    this.applies++;
    this.configMaps.set(cm.metadata.name, structuredClone(cm));
  }
  async writePolicyStatus(p: MetricPolicy, status: MetricPolicyStatus): Promise<void> {
    this.statusWrites++;
    this.set({ ...p, status: structuredClone(status) });
  }
  get(name: string): MetricPolicy {
    return this.items.get(`apps/${name}`)!;
  }
  rendered(instance = 'default'): string {
    return this.configMaps.get(`cardinal-proxy-${instance}-policies`)?.data?.[CONFIG_KEY] ?? '';
  }
}

function setup() {
  const cluster = new FakeCluster();
  let clock = Date.parse('2030-01-01T00:00:00Z');
  const ctx = {
    cluster,
    namespace: 'cardinal-system',
    operatorVersion: '0.1.0',
    now: () => {
      clock += 1000;
      return new Date(clock);
    },
  };
  return { cluster, ctx, reconcile: (instance = 'default') => reconcileInstance(ctx, instance) };
}

const conditions = (p: MetricPolicy) =>
  Object.fromEntries((p.status?.conditions ?? []).map((c) => [c.type, [c.status, c.reason]]));

describe('reconcileInstance', () => {
  it('renders accepted policies, writes their status, and writes nothing on a second run', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['go_.*'] }, 3));
    expect(await reconcile()).toEqual({ configMap: 'written', accepted: 1, rejected: 0, statusWrites: 1 });
    expect(cluster.rendered()).toContain('go_.*');
    const a = cluster.get('a');
    expect(a.status?.observedGeneration).toBe(3);
    expect(conditions(a)).toEqual({
      Accepted: ['True', 'Accepted'],
      Ready: ['Unknown', 'ProxiesNotObserved'],
      Degraded: ['Unknown', 'ProxiesNotObserved'],
    });
    expect(a.status?.conditions?.[1]?.message).toBe(PROXIES_NOT_OBSERVED);
    expect(a.status).not.toHaveProperty('proxies');

    expect(await reconcile()).toEqual({ configMap: 'skipped', accepted: 1, rejected: 0, statusWrites: 0 });
    expect(cluster.applies).toBe(1);
    expect(cluster.statusWrites).toBe(1);
  });

  it('rejects a spec the proxy would reject, with the validator message, and renders the rest', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('good', { drop: ['up'] }));
    cluster.set(policy('bad', { drop: ['(?=x)'] }));
    expect(await reconcile()).toMatchObject({ accepted: 1, rejected: 1 });
    const bad = cluster.get('bad');
    expect(conditions(bad)).toEqual({
      Accepted: ['False', 'InvalidSpec'],
      Ready: ['False', 'NotAccepted'],
      Degraded: ['False', 'NotAccepted'],
    });
    expect(bad.status?.conditions?.[0]?.message).toMatch(/^spec\.drop\[0\]: /);
    expect(cluster.rendered()).toContain('name: good');
    expect(cluster.rendered()).not.toContain('name: bad');
  });

  it('keeps the last accepted generation in force when an edit is rejected', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }, 1));
    await reconcile();
    cluster.set({
      ...cluster.get('a'),
      spec: { drop: ['(?=x)'] },
      metadata: { ...cluster.get('a').metadata, generation: 2 },
    });
    expect(await reconcile()).toMatchObject({ configMap: 'skipped', rejected: 1 });
    expect(cluster.rendered()).toContain('- up');
    const ready = cluster.get('a').status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.message).toBe('Generation 2 is not accepted; generation 1 stays in force.');
  });

  it('renders nothing from a ConfigMap edited by hand, and puts it back', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }));
    await reconcile();
    const cm = cluster.configMaps.get('cardinal-proxy-default-policies')!;
    const good = cm.data![CONFIG_KEY];
    cm.data![CONFIG_KEY] = '# hand edit\n';
    expect(await reconcile()).toMatchObject({ configMap: 'written' });
    expect(cluster.rendered()).toBe(good);
  });

  it('drops deleted and deleting policies from the configuration', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }));
    cluster.set(policy('b', { drop: ['down'] }));
    await reconcile();
    cluster.items.delete('apps/a');
    cluster.set({
      ...cluster.get('b'),
      metadata: { ...cluster.get('b').metadata, deletionTimestamp: '2030-01-01T00:00:00Z' },
    });
    expect(await reconcile()).toMatchObject({ configMap: 'written', accepted: 0 });
    expect(cluster.rendered()).not.toContain('name:');
  });

  it('rejects every policy of an instance name that cannot name a ConfigMap, and renders none', async () => {
    const { cluster, reconcile } = setup();
    const spec = { proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'Not_Valid' } } };
    cluster.set(policy('a', spec));
    expect(await reconcile('Not_Valid')).toEqual({
      configMap: 'none',
      accepted: 0,
      rejected: 1,
      statusWrites: 1,
    });
    expect(cluster.configMaps.size).toBe(0);
    expect(cluster.get('a').status?.conditions?.[0]?.message).toContain('cardinal.dev/proxy-instance');
  });

  it('renders only the policies of the instance it reconciles', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }));
    cluster.set(policy('b', { proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'edge' } } }));
    await reconcile('edge');
    expect(cluster.rendered('edge')).toContain('name: b');
    expect(cluster.rendered('edge')).not.toContain('name: a');
    expect(cluster.get('a').status).toBeUndefined();
  });

  it('keeps lastTransitionTime while a condition keeps its status', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }, 1));
    await reconcile();
    const first = cluster.get('a').status?.conditions?.map((c) => c.lastTransitionTime);
    cluster.set({
      ...cluster.get('a'),
      spec: { drop: ['down'] },
      metadata: { ...cluster.get('a').metadata, generation: 2 },
    });
    expect(await reconcile()).toMatchObject({ configMap: 'written', statusWrites: 1 });
    const a = cluster.get('a');
    expect(a.status?.observedGeneration).toBe(2);
    expect(a.status?.conditions?.map((c) => c.lastTransitionTime)).toEqual(first);
    expect(a.status?.conditions?.every((c) => c.observedGeneration === 2)).toBe(true);
  });
});

describe('needsApply', () => {
  const desired: ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'x',
      namespace: 'ns',
      labels: { l: '1' },
      annotations: { [GENERATIONS_ANNOTATION]: '{}' },
    },
    data: { [CONFIG_KEY]: 'text' },
  };
  it.each([
    ['missing', undefined, true],
    ['identical', { metadata: desired.metadata, data: desired.data }, false],
    [
      'with labels, annotations and keys of others',
      {
        metadata: {
          labels: { l: '1', other: 'x' },
          annotations: { [GENERATIONS_ANNOTATION]: '{}', more: 'y' },
        },
        data: { [CONFIG_KEY]: 'text', 'note.txt': 'z' },
      },
      false,
    ],
    ['data edited', { metadata: desired.metadata, data: { [CONFIG_KEY]: 'edited' } }, true],
    ['label removed', { metadata: { annotations: desired.metadata.annotations }, data: desired.data }, true],
    [
      'annotation changed',
      {
        metadata: { labels: desired.metadata.labels, annotations: { [GENERATIONS_ANNOTATION]: '{"a/b":1}' } },
        data: desired.data,
      },
      true,
    ],
  ] as const)('%s: %s', (_name, live, want) => {
    expect(needsApply(desired, live)).toBe(want);
  });
});
