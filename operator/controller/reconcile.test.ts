import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import type { ConfigMap, MetricPolicy, MetricPolicyStatus } from '../api/types.js';
import { type ProxySource, unobserved } from '../proxies/source.js';
import { CONFIG_KEY, GENERATIONS_ANNOTATION, proxyConfigHash, REPLICAS_KEY } from '../render/configmap.js';
import type { PolicyEvent } from '../status/events.js';
import type { ProxyObservation } from '../status/observation.js';
import {
  type Cluster,
  desiredStatus,
  type EventTarget,
  type LiveConfigMap,
  needsApply,
  reconcileInstance,
  reconcileStatus,
  renderInstance,
} from './reconcile.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const NO_DISCOVERY = unobserved({ kind: 'none' } satisfies ProxySource, 'default')!;
const MOUNT = '/etc/cardinal/policies';

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
  readonly events: { policy: string; reason: string; message: string }[] = [];

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
  recordEvent(p: EventTarget, event: PolicyEvent): void {
    this.events.push({ policy: p.metadata.name, reason: event.reason, message: event.message });
  }
  get(name: string): MetricPolicy {
    return this.items.get(`apps/${name}`)!;
  }
  rendered(instance = 'default'): string {
    return this.configMaps.get(`cardinal-proxy-${instance}-policies`)?.data?.[CONFIG_KEY] ?? '';
  }
}

/**
 * `observe` stands in for the proxies; by default there is no discovery. `writes` counts the
 * tokens taken from the write limit.
 */
function setup(
  observe: (instance: string) => ProxyObservation = () => ({ observed: false, ...NO_DISCOVERY }),
) {
  const cluster = new FakeCluster();
  let clock = Date.parse('2030-01-01T00:00:00Z');
  const limit = { taken: 0 };
  const ctx = {
    cluster,
    namespace: 'cardinal-system',
    operatorVersion: '0.1.0',
    now: () => {
      clock += 1000;
      return new Date(clock);
    },
    observe: async (instance: string) => observe(instance),
    proxyConfigPath: MOUNT,
    writeLimit: async () => {
      limit.taken++;
    },
  };
  return { cluster, ctx, limit, reconcile: (instance = 'default') => reconcileInstance(ctx, instance) };
}

/** The hash a proxy mounting the instance's live ConfigMap at MOUNT reports. */
const liveHash = (cluster: FakeCluster, instance = 'default') => {
  const cm = cluster.configMaps.get(`cardinal-proxy-${instance}-policies`);
  return proxyConfigHash({ data: cm?.data ?? {} }, MOUNT);
};

const conditions = (p: MetricPolicy) =>
  Object.fromEntries((p.status?.conditions ?? []).map((c) => [c.type, [c.status, c.reason]]));

describe('reconcileInstance', () => {
  it('renders accepted policies, writes their status, and writes nothing on a second run', async () => {
    const { cluster, reconcile } = setup();
    cluster.set(policy('a', { drop: ['go_.*'] }, 3));
    expect(await reconcile()).toEqual({
      configMap: 'written',
      accepted: 1,
      rejected: 0,
      statusWrites: 1,
      events: 0,
    });
    expect(cluster.rendered()).toContain('go_.*');
    const a = cluster.get('a');
    expect(a.status?.observedGeneration).toBe(3);
    expect(conditions(a)).toEqual({
      Accepted: ['True', 'Accepted'],
      Ready: ['Unknown', 'ProxiesNotObserved'],
      Degraded: ['Unknown', 'ProxiesNotObserved'],
    });
    expect(a.status?.conditions?.[1]?.message).toBe(NO_DISCOVERY.message);
    expect(a.status).not.toHaveProperty('proxies');

    expect(await reconcile()).toEqual({
      configMap: 'skipped',
      accepted: 1,
      rejected: 0,
      statusWrites: 0,
      events: 0,
    });
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
      events: 1,
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

describe('reconcileInstance with observed proxies', () => {
  const offenders = new Map([
    [
      'apps/a',
      {
        topOffenders: [
          {
            metric: 'debug_depth',
            series: 3,
            droppedSamplesPerSecond: 2,
            droppedSamples: 40,
            reason: 'metric_dropped',
          },
        ],
        droppedSamples: 40,
        droppedSamplesPerSecond: 2,
      },
    ],
  ]);

  it('is Ready when every proxy reports the hash of the rendered ConfigMap at the mount path', async () => {
    let hash = 'stale';
    const { cluster, reconcile } = setup(() => ({
      observed: true,
      proxies: [{ endpoint: '10.0.0.1:8080', reachable: true, configHash: hash }],
      offenders,
      complete: true,
    }));
    cluster.set(policy('a', { drop: ['debug_.*'] }));
    cluster.set(policy('b', { drop: ['up'] }));
    await reconcile();
    expect(conditions(cluster.get('a'))).toMatchObject({
      Ready: ['False', 'Pending'],
      Degraded: ['False', 'AsExpected'],
    });
    expect(cluster.get('a').status?.proxies).toEqual({ ready: 0, total: 1, configHash: liveHash(cluster) });

    hash = liveHash(cluster);
    expect(await reconcile()).toMatchObject({ configMap: 'skipped', statusWrites: 2, events: 0 });
    const a = cluster.get('a');
    expect(conditions(a)).toMatchObject({ Ready: ['True', 'ConfigLoaded'] });
    expect(a.status?.proxies).toEqual({ ready: 1, total: 1, configHash: hash });
    expect(a.status?.topOffenders).toEqual(offenders.get('apps/a')?.topOffenders);
    expect(a.status?.topOffender).toBe('debug_depth 2/s metric_dropped');
    expect(a.status?.droppedSamplesPerSecond).toBe(2);
    // b drops nothing, and every proxy said so completely: 0/s, not unknown.
    expect(cluster.get('b').status).toMatchObject({ topOffenders: [], droppedSamplesPerSecond: 0 });

    expect(await reconcile()).toMatchObject({ statusWrites: 0, events: 0 });
  });

  it('says Unknown, with the reason given, when the proxies could not be listed', async () => {
    const { cluster, reconcile } = setup(() => ({
      observed: false,
      reason: 'DiscoveryFailed',
      message: 'Listing the EndpointSlices of Service ns/cardinal-proxy failed: forbidden',
    }));
    cluster.set(policy('a', { drop: ['up'] }));
    await reconcile();
    const ready = cluster.get('a').status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'Unknown', reason: 'DiscoveryFailed' });
    expect(ready?.message).toContain('forbidden');
  });

  it('does not poll for an instance without policies', async () => {
    let polls = 0;
    const { reconcile } = setup(() => {
      polls++;
      return { observed: true, proxies: [], offenders: new Map(), complete: true };
    });
    await reconcile();
    expect(polls).toBe(0);
  });
});

describe('reconcileInstance events', () => {
  it('records Accepted for an edit, Rejected once per rejection, none for a new policy or in a steady state', async () => {
    const { cluster, limit, reconcile } = setup();
    cluster.set(policy('a', { drop: ['up'] }, 1));
    cluster.set(policy('bad', { drop: ['(?=x)'] }, 1));
    await reconcile();
    expect(cluster.events.map((e) => [e.policy, e.reason])).toEqual([['bad', 'Rejected']]);
    expect(cluster.events[0]?.message).toMatch(/^Generation 1 rejected \(InvalidSpec\): spec\.drop\[0\]: /);
    // Every status write took a token; Events have a budget of their own (the recorder's).
    expect(limit.taken).toBe(cluster.statusWrites);

    await reconcile();
    expect(cluster.events).toHaveLength(1);

    cluster.set({
      ...cluster.get('a'),
      spec: { drop: ['down'] },
      metadata: { ...cluster.get('a').metadata, generation: 2 },
    });
    await reconcile();
    expect(cluster.events.slice(1)).toEqual([
      { policy: 'a', reason: 'Accepted', message: 'Generation 2 accepted for proxy instance default.' },
    ]);
    await reconcile();
    expect(cluster.events).toHaveLength(2);
  });

  it('records Degraded when a proxy fails to reload, once', async () => {
    let lastError: string | undefined;
    const { cluster, reconcile } = setup(() => ({
      observed: true,
      proxies: [
        {
          endpoint: '10.0.0.1:8080',
          reachable: true,
          configHash: 'x',
          ...(lastError === undefined ? {} : { lastError }),
        },
      ],
      offenders: new Map(),
      complete: true,
    }));
    cluster.set(policy('a', { drop: ['up'] }));
    await reconcile();
    expect(cluster.events).toEqual([]);
    lastError = 'policies.yaml:3: invalid YAML';
    await reconcile();
    await reconcile();
    expect(cluster.events).toEqual([
      {
        policy: 'a',
        reason: 'Degraded',
        message:
          'ReloadFailed: 1 of 1 proxies failed to reload (10.0.0.1:8080); 10.0.0.1:8080: policies.yaml:3: invalid YAML',
      },
    ]);
    expect(cluster.get('a').status?.reason).toBe('Pending');
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

describe('reconcileInstance: usage', () => {
  const view = {
    spec: { metrics: [{ name: 'up', sources: ['PrometheusRule monitoring/r'], allLabelsExcept: [] }] },
    problems: ['Dashboard monitoring/d/x.json: panel "p" target A: unexpected end of expression at column 5'],
  };
  const usageOf = (cluster: FakeCluster) =>
    cluster.configMaps.get('cardinal-proxy-default-policies')?.data?.['usage.yaml'];

  it('renders usage.yaml for a spec.unused policy and lists what is read in its status', async () => {
    const { cluster, ctx } = setup();
    let current: typeof view | undefined = view;
    const withUsage = { ...ctx, usage: () => current };
    cluster.set(policy('plain', { drop: ['x'] }));
    await reconcileInstance(withUsage, 'default');
    expect(usageOf(cluster)).toBeUndefined();

    cluster.set(policy('u', { unused: { action: 'drop' } }));
    await reconcileInstance(withUsage, 'default');
    expect(usageOf(cluster)).toContain('"name":"up"');
    expect(cluster.get('u').status?.unused).toEqual({
      action: 'drop',
      usedMetrics: 1,
      usageKnown: true,
      usedBy: [{ metric: 'up', sources: ['PrometheusRule monitoring/r'] }],
      sourceProblems: view.problems,
    });
    expect(cluster.get('plain').status?.unused).toBeUndefined();

    // Not synced (a new leader): the usage rendered before stays, it is not emptied.
    current = undefined;
    expect((await reconcileInstance(withUsage, 'default')).configMap).toBe('skipped');
    expect(usageOf(cluster)).toContain('"name":"up"');

    // No policy uses it any more: the key goes.
    cluster.items.delete('apps/u');
    current = view;
    expect((await reconcileInstance(withUsage, 'default')).configMap).toBe('written');
  });

  it('sums the proxies\u2019 unused reports into the status', async () => {
    const report = (series: number, rate: number) => ({
      labels: [{ metric: 'req_total', label: 'pod', distinctValues: series }],
      usageKnown: true,
      unusedMetrics: 2,
      activeSeries: series,
      samplesPerSecond: rate,
      metrics: [
        { metric: 'a_total', activeSeries: series - 1, samplesPerSecond: rate / 2 },
        { metric: 'b_total', activeSeries: 1, samplesPerSecond: rate / 2 },
      ],
    });
    const { cluster, ctx } = setup(() => ({
      observed: true,
      proxies: [],
      offenders: new Map(),
      complete: true,
      unused: new Map([['apps/u', [report(10, 4), report(5, 2)]]]),
    }));
    cluster.set(policy('u', { unused: {} }));
    await reconcileInstance({ ...ctx, usage: () => view }, 'default');
    expect(cluster.get('u').status?.unused).toMatchObject({
      action: 'report',
      unusedMetrics: 2,
      series: 15,
      samplesPerSecond: 6,
      top: [
        { metric: 'a_total', series: 13, samplesPerSecond: 3 },
        { metric: 'b_total', series: 2, samplesPerSecond: 3 },
      ],
      labels: [{ metric: 'req_total', label: 'pod', distinctValues: 15 }],
    });
  });
});

describe('needsApply: rendered keys', () => {
  it('a usage.yaml that is no longer rendered is stale', () => {
    const desired = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c', namespace: 'n', labels: {}, annotations: {} },
      data: { [CONFIG_KEY]: 'x' },
    } satisfies ConfigMap;
    expect(needsApply(desired, { metadata: {}, data: { [CONFIG_KEY]: 'x' } })).toBe(false);
    expect(needsApply(desired, { metadata: {}, data: { [CONFIG_KEY]: 'x', 'usage.yaml': 'y' } })).toBe(true);
    expect(needsApply(desired, { metadata: {}, data: { [CONFIG_KEY]: 'x', 'other.yaml': 'y' } })).toBe(false);
  });
});

describe('renderInstance: shards', () => {
  const many = (n: number, drop = 'x') =>
    Array.from({ length: n }, (_, i) =>
      policy(`p${String(i).padStart(4, '0')}`, { drop: [`${drop}_${i}_.*`] }),
    );

  it('splits the policies over the shards by their id, and an edit rewrites one shard', async () => {
    const { cluster, ctx } = setup();
    const shards = { ...ctx, shards: 4 };
    for (const p of many(40)) cluster.set(p);
    const first = await renderInstance(shards, 'default');
    expect(first.applies).toBe(4);
    const names = ['', '-1', '-2', '-3'].map((s) => `cardinal-proxy-default-policies${s}`);
    const keys = ['policies.yaml', 'policies-1.yaml', 'policies-2.yaml', 'policies-3.yaml'];
    const counts = names.map(
      (n, i) => (cluster.configMaps.get(n)?.data?.[keys[i]!]?.match(/^kind: MetricPolicy$/gm) ?? []).length,
    );
    expect(counts.reduce((a, b) => a + b)).toBe(40);
    expect(counts.every((c) => c > 0)).toBe(true);
    // What the proxies hash: every shard's key in the one mounted directory.
    expect(first.renderedHash).toBe(
      proxyConfigHash(
        names.map((n) => ({ data: cluster.configMaps.get(n)!.data! })),
        MOUNT,
      ),
    );
    expect(Object.keys(first.generations)).toHaveLength(40);

    cluster.set(policy('p0007', { drop: ['edited'] }, 2));
    const second = await renderInstance(shards, 'default');
    expect(second.applies).toBe(1);
    expect(second.generations['apps/p0007']).toBe(2);
    expect((await renderInstance(shards, 'default')).applies).toBe(0);
  });

  it("makes a policy Ready on a proxy that runs its own shard, whatever the others' shards hold", async () => {
    const { cluster, ctx } = setup();
    const shards = { ...ctx, shards: 4 };
    for (const p of many(40)) cluster.set(p);
    const first = await renderInstance(shards, 'default');
    const names = ['', '-1', '-2', '-3'].map((s) => `cardinal-proxy-default-policies${s}`);
    const keys = ['policies.yaml', 'policies-1.yaml', 'policies-2.yaml', 'policies-3.yaml'];
    const files = (): Record<string, string> =>
      Object.fromEntries(
        keys.map((k, i) => [`${MOUNT}/${k}`, sha256(cluster.configMaps.get(names[i]!)!.data![k]!)]),
      );
    const before = files();
    // An edit of p0007 and, in another shard, a new policy; the proxy has loaded only p0007's shard.
    cluster.set(policy('p0007', { drop: ['edited'] }, 2));
    const file7 = first.shardFile!('apps/p0007');
    const other = many(80).find(
      (p) =>
        first.shardFile!(`apps/${p.metadata.name}`) !== file7 &&
        !cluster.items.has(`apps/${p.metadata.name}`),
    )!;
    cluster.set(other);
    const second = await renderInstance(shards, 'default');
    expect(second.applies).toBe(2);
    const mixed = { ...before, [file7]: files()[file7]! };
    const observation: ProxyObservation = {
      observed: true,
      proxies: [{ endpoint: 'a:1', reachable: true, configHash: 'a set never rendered', fileHashes: mixed }],
      offenders: new Map(),
      complete: true,
      unused: new Map(),
      limits: new Map(),
      reported: true,
    };
    const now = new Date('2030-01-01T00:00:00Z');
    const ready = (name: string) =>
      desiredStatus(cluster.get(name), second, observation, now)?.conditions?.find((c) => c.type === 'Ready');
    expect(ready('p0007')).toMatchObject({ status: 'True', reason: 'ConfigLoaded' });
    expect(ready(other.metadata.name)).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('keeps a shard too large for the API server as it is, and says why for its policies', async () => {
    const { cluster, ctx } = setup();
    const shards = { ...ctx, shards: 2 };
    for (const p of many(10)) cluster.set(p);
    await renderInstance(shards, 'default');
    // One policy grows past what a ConfigMap may hold: its shard cannot be written any more.
    const huge = Array.from({ length: 20_000 }, (_, i) => `metric_with_a_rather_long_name_${i}_.*`);
    cluster.set(policy('p0003', { drop: huge }, 2));
    const render = await renderInstance(shards, 'default');
    expect(render.problems).toHaveLength(1);
    expect(render.problems[0]?.message).toMatch(/over the 768 KiB a shard may hold .*--config-shards/);
    expect(render.generations['apps/p0003']).toBe(1);
    expect(render.undeliverable.has('apps/p0003')).toBe(true);

    await reconcileInstance(shards, 'default');
    const status = cluster.get('p0003').status;
    expect(conditions(cluster.get('p0003'))).toMatchObject({
      Ready: ['False', 'ConfigTooLarge'],
      Degraded: ['True', 'ConfigTooLarge'],
    });
    expect(status?.reason).toBe('ConfigTooLarge');
    expect(cluster.events.filter((e) => e.reason === 'Degraded').map((e) => e.policy)).toContain('p0003');
  });

  it('empties shards beyond a lowered count, so no policy is loaded twice', async () => {
    const { cluster, ctx } = setup();
    for (const p of many(12)) cluster.set(p);
    await renderInstance({ ...ctx, shards: 3 }, 'default');
    const render = await renderInstance({ ...ctx, shards: 1 }, 'default');
    expect(cluster.rendered().match(/^kind: MetricPolicy$/gm)).toHaveLength(12);
    for (const [i, n] of ['-1', '-2'].entries()) {
      const text = cluster.configMaps.get(`cardinal-proxy-default-policies${n}`)?.data?.[
        `policies-${i + 1}.yaml`
      ];
      expect(text).not.toMatch(/^kind: MetricPolicy$/m);
    }
    expect(Object.keys(render.generations)).toHaveLength(12);
  });
});

describe('desiredStatus: proxies that cannot be reached', () => {
  it('keeps the last known offenders, marked stale, and drops the mark once they answer again', async () => {
    let reachable = true;
    const offenders = new Map([
      [
        'apps/a',
        {
          topOffenders: [
            {
              metric: 'debug_depth',
              series: 3,
              droppedSamplesPerSecond: 2,
              droppedSamples: 40,
              reason: 'metric_dropped',
            },
          ],
          droppedSamples: 40,
          droppedSamplesPerSecond: 2,
        },
      ],
    ]);
    const { cluster, reconcile } = setup(() => ({
      observed: true,
      proxies: [{ endpoint: '10.0.0.1:8080', reachable, ...(reachable ? { configHash: 'h' } : {}) }],
      offenders: reachable ? offenders : new Map(),
      complete: reachable,
    }));
    cluster.set(policy('a', { drop: ['debug_.*'] }));
    await reconcile();
    expect(cluster.get('a').status).toMatchObject({
      droppedSamplesPerSecond: 2,
      topOffender: 'debug_depth 2/s metric_dropped',
    });
    expect(cluster.get('a').status).not.toHaveProperty('offendersStale');

    reachable = false;
    await reconcile();
    expect(cluster.get('a').status).toMatchObject({
      offendersStale: true,
      droppedSamplesPerSecond: 2,
      topOffenders: offenders.get('apps/a')?.topOffenders,
      topOffender: 'debug_depth 2/s metric_dropped (stale)',
      reason: 'ProxiesUnreachable',
    });

    reachable = true;
    await reconcile();
    expect(cluster.get('a').status).not.toHaveProperty('offendersStale');
    expect(cluster.get('a').status?.topOffender).toBe('debug_depth 2/s metric_dropped');
  });

  it('keeps them too when the proxy counts as running but its report did not come this round', async () => {
    let reported = true;
    const { cluster, reconcile } = setup(() => ({
      observed: true,
      proxies: [{ endpoint: '10.0.0.1:8080', reachable: true, configHash: 'h' }],
      offenders: reported
        ? new Map([
            [
              'apps/a',
              {
                topOffenders: [
                  {
                    metric: 'm',
                    series: 1,
                    droppedSamplesPerSecond: 5,
                    droppedSamples: 9,
                    reason: 'metric_dropped',
                  },
                ],
                droppedSamples: 9,
                droppedSamplesPerSecond: 5,
              },
            ],
          ])
        : new Map(),
      complete: reported,
      reported,
    }));
    cluster.set(policy('a', { drop: ['m'] }));
    await reconcile();
    reported = false;
    await reconcile();
    expect(cluster.get('a').status).toMatchObject({ offendersStale: true, droppedSamplesPerSecond: 5 });
  });
});

describe('reconcileStatus with earlier renders', () => {
  it('leaves a Ready policy unwritten when an edit of another one changes the instance hash', async () => {
    let hash = '';
    const { cluster, ctx } = setup();
    const observation = (): ProxyObservation => ({
      observed: true,
      proxies: [{ endpoint: '10.0.0.1:8080', reachable: true, configHash: hash }],
      offenders: new Map(),
      complete: true,
    });
    cluster.set(policy('a', { drop: ['up'] }));
    cluster.set(policy('b', { drop: ['down'] }));
    const first = await renderInstance(ctx, 'default');
    hash = first.renderedHash;
    for (const name of ['a', 'b']) await reconcileStatus(ctx, cluster.get(name), first, observation());
    expect(conditions(cluster.get('a'))).toMatchObject({ Ready: ['True', 'ConfigLoaded'] });
    const writes = cluster.statusWrites;

    cluster.set({
      ...cluster.get('b'),
      spec: { drop: ['sideways'] },
      metadata: { ...cluster.get('b').metadata, generation: 2 },
    });
    const second = {
      ...(await renderInstance(ctx, 'default')),
      earlier: new Map([[first.renderedHash, first.generations]]),
    };
    // The proxy still runs the first render: a's generation is in it, b's new one is not.
    expect((await reconcileStatus(ctx, cluster.get('a'), second, observation())).written).toBe(false);
    await reconcileStatus(ctx, cluster.get('b'), second, observation());
    expect(conditions(cluster.get('b'))).toMatchObject({ Ready: ['False', 'Pending'] });
    // Now it runs the second: a still has nothing new to say, b is Ready.
    hash = second.renderedHash;
    expect((await reconcileStatus(ctx, cluster.get('a'), second, observation())).written).toBe(false);
    await reconcileStatus(ctx, cluster.get('b'), second, observation());
    expect(conditions(cluster.get('b'))).toMatchObject({ Ready: ['True', 'ConfigLoaded'] });
    expect(cluster.statusWrites - writes).toBe(2);
    expect(cluster.get('a').status?.proxies?.configHash).toBe(first.renderedHash);
  });
});

describe('renderInstance: the replica count', () => {
  it('renders the proxies discovered beside the policies, outside the hash, and keeps it while none are', async () => {
    const { cluster, ctx } = setup();
    cluster.set(policy('a', { limits: { perMetric: [{ metric: 'x', maxSeries: 10 }] } }));
    let discovered: number | undefined;
    const withCount = { ...ctx, replicas: () => discovered };
    const first = await renderInstance(withCount, 'default');
    const live = () => cluster.configMaps.get('cardinal-proxy-default-policies')?.data ?? {};
    expect(live()[REPLICAS_KEY]).toBeUndefined();
    expect(first.replicas).toBeUndefined();

    discovered = 3;
    const second = await renderInstance(withCount, 'default');
    expect(live()[REPLICAS_KEY]).toBe('3\n');
    expect(second).toMatchObject({ replicas: 3, configMap: 'written', applies: 1 });
    // The proxies report the same hash whatever the count: no policy waits for the kubelet.
    expect(second.renderedHash).toBe(first.renderedHash);
    expect(second.renderedHash).toBe(liveHash(cluster));

    // Not known (discovery failed, or no proxy ready): the count rendered stays, nothing is written.
    discovered = undefined;
    const third = await renderInstance(withCount, 'default');
    expect(third).toMatchObject({ replicas: 3, configMap: 'skipped' });
    expect(live()[REPLICAS_KEY]).toBe('3\n');
  });
});
