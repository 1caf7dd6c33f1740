import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { MetricPolicySpec, type MetricPolicySpecT } from '../../crds/metric-policy.js';
import { loadConfig, parseConfigFile, parsePolicyFile } from '../../policy/load.js';
import { validatePolicies, validateUsage } from '../../policy/validate.js';
import type { ConfigMap, MetricPolicy } from '../api/types.js';
import { computeUsage, usageSpec } from '../usage/usage.js';
import {
  CONFIG_HASH_ANNOTATION,
  CONFIG_KEY,
  GENERATIONS_ANNOTATION,
  HEADER,
  proxyConfigHash,
  renderedGenerations,
  renderProxyConfigMap,
  renderUsageYaml,
  sortKeys,
  USAGE_KEY,
  USAGE_MAX_BYTES,
} from './configmap.js';
import { instanceProblem, selectInstance } from './instance.js';

const TESTDATA = new URL('./testdata/', import.meta.url);
const UPDATE = process.env.UPDATE_GOLDEN === '1';

function policy(namespace: string, name: string, spec: MetricPolicySpecT, generation = 1): MetricPolicy {
  return {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: {
      name,
      namespace,
      uid: `uid-${namespace}-${name}`,
      generation,
      resourceVersion: '12345',
      labels: { team: namespace },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
    },
    spec,
    status: { observedGeneration: generation - 1, topOffender: 'something' },
  };
}

const full = policy(
  'team-a',
  'api-limits',
  {
    priority: 10,
    mode: 'enforce',
    match: { selector: '{job=~"api-.*", env!="dev"}', tenants: ['team-a', 'no'] },
    relabel: [
      { source_labels: ['pod'], regex: '(.+)-[a-z0-9]{5}', target_label: 'workload', replacement: '$1' },
      { action: 'labeldrop', regex: 'pod_template_hash|controller_revision_hash' },
    ],
    drop: ['go_gc_.*', 'process_.*'],
    standards: {
      metricNamePattern: '[a-z_:][a-z0-9_:]*',
      requiredLabels: ['job'],
      forbiddenLabels: ['user_id'],
      maxLabels: 20,
      onViolation: 'report',
    },
    limits: {
      window: '1h30m',
      perMetric: [{ metric: 'http_.*', maxSeries: 5000, onExceed: 'overflow', overflowLabel: 'path' }],
      perLabel: [{ label: 'path', maxValues: 200 }],
      perTenantMaxSeries: 100000,
    },
  },
  7,
);
const minimal = policy('team-a', 'drop-debug', { drop: ['debug_.*'] }, 2);
const dryRun = policy('monitoring', 'standards', {
  mode: 'dryRun',
  standards: { labelNamePattern: '[a-z_][a-z0-9_]*', maxLabelValueLength: 256, onViolation: 'drop' },
});
const edge = policy(
  'edge',
  'ingress',
  {
    proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'edge', zone: 'eu-1' } },
    limits: { perMetric: [{ metric: 'nginx_.*', maxSeries: 1000 }] },
  },
  3,
);

const unusedPolicy = policy('team-b', 'unused-metrics', {
  unused: {
    action: 'drop',
    keep: ['up', 'kube_.*'],
    exemptions: [{ metric: 'legacy_.*', expiresAt: '2030-01-01T00:00:00Z', reason: 'migration' }],
    expressions: ['sum by (job) (rate(batch_jobs_total[5m]))'],
  },
});
const usage = computeUsage([
  {
    id: 'PrometheusRule monitoring/shop-rules',
    exprs: {
      exprs: [
        { where: 'g/r', expr: 'sum by (job) (rate(shop_requests_total[5m]))', record: 'job:shop:rate5m' },
        { where: 'g/a', expr: 'job:shop:rate5m > 1' },
      ],
      problems: [],
    },
  },
  {
    id: 'Dashboard monitoring/dashboards/shop.json',
    exprs: {
      exprs: [{ where: 'panel "x"', expr: 'sum without (pod) ({__name__=~"node_.*"})' }],
      problems: [],
    },
  },
]);

const cases: { name: string; instance: string; policies: MetricPolicy[] }[] = [
  { name: 'empty', instance: 'default', policies: [] },
  { name: 'default', instance: 'default', policies: [minimal, dryRun, full] },
  { name: 'edge', instance: 'edge', policies: [edge] },
  { name: 'usage', instance: 'default', policies: [minimal, unusedPolicy] },
];

function render(instance: string, policies: readonly MetricPolicy[]): ConfigMap {
  return renderProxyConfigMap({
    instance,
    namespace: 'cardinal-system',
    policies,
    operatorVersion: '0.1.0',
    usage: usageSpec(usage),
  });
}

function text(cm: ConfigMap): string {
  const t = cm.data[CONFIG_KEY];
  if (t === undefined) throw new Error(`no ${CONFIG_KEY}`);
  return t;
}

describe('renderProxyConfigMap', () => {
  it.each(cases)('renders $name as its golden file', ({ name, instance, policies }) => {
    const file = new URL(`${name}.golden.yaml`, TESTDATA);
    const got = `# Golden file of operator/render/configmap.test.ts; UPDATE_GOLDEN=1 npx vitest run operator/render rewrites it.\n${stringify(
      sortKeys(render(instance, policies)),
      { lineWidth: 0 },
    )}`;
    if (UPDATE) writeFileSync(file, got);
    expect(got).toBe(readFileSync(file, 'utf8'));
  });

  it.each(cases)(
    'renders $name into documents the proxy loads and validates unchanged',
    ({ instance, policies }) => {
      const t = text(render(instance, policies));
      expect(t.split('\n')[0]).toBe(HEADER);
      const loaded = validatePolicies(parsePolicyFile('policies.yaml', t));
      const sorted = [...policies].sort((a, b) =>
        `${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1,
      );
      expect(loaded.map((p) => ({ namespace: p.namespace, name: p.name, spec: p.spec }))).toEqual(
        sorted.map((p) => ({
          namespace: p.metadata.namespace,
          name: p.metadata.name,
          spec: Value.Default(MetricPolicySpec, structuredClone(p.spec)),
        })),
      );
    },
  );

  it('writes no status and no server-set metadata', () => {
    const t = text(render('default', [full]));
    for (const field of ['status', 'uid', 'resourceVersion', 'generation', 'labels', 'annotations']) {
      expect(t).not.toMatch(new RegExp(`^\\s*${field}:`, 'm'));
    }
  });

  it('labels, names and annotates the ConfigMap', () => {
    const cm = render('edge', [edge]);
    expect(cm.metadata.name).toBe('cardinal-proxy-edge-policies');
    expect(cm.metadata.namespace).toBe('cardinal-system');
    expect(cm.metadata.labels).toEqual({
      'app.kubernetes.io/managed-by': 'cardinal-operator',
      'app.kubernetes.io/name': 'cardinal-proxy',
      'cardinal.dev/proxy-instance': 'edge',
    });
    expect(Object.keys(cm.data)).toEqual([CONFIG_KEY]);
    expect(cm.metadata.annotations[GENERATIONS_ANNOTATION]).toBe('{"edge/ingress":3}');
    expect(renderedGenerations(render('default', [full, minimal]))).toEqual({
      'team-a/api-limits': 7,
      'team-a/drop-debug': 2,
    });
  });

  it('changes the config hash with the spec and with nothing else', () => {
    const hash = (p: MetricPolicy) => render('default', [p]).metadata.annotations[CONFIG_HASH_ANNOTATION];
    const base = hash(minimal);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    const noise = structuredClone(minimal);
    noise.metadata.resourceVersion = '99999';
    noise.metadata.labels = { other: 'x' };
    noise.status = { observedGeneration: 2 };
    expect(hash(noise)).toBe(base);
    expect(hash(policy('team-a', 'drop-debug', { drop: ['debug_.*', 'trace_.*'] }))).not.toBe(base);
    expect(hash(policy('team-b', 'drop-debug', { drop: ['debug_.*'] }))).not.toBe(base);
  });

  it('gives the hash the proxy reports once it loaded the mounted ConfigMap', () => {
    const cm = render('default', [full, minimal, dryRun]);
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-render-'));
    try {
      for (const [key, value] of Object.entries(cm.data)) writeFileSync(join(dir, key), value);
      expect(proxyConfigHash(cm, dir)).toBe(loadConfig(dir).hash);
      expect(proxyConfigHash(cm, `${dir}/`)).toBe(loadConfig(dir).hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses policies of another instance, duplicates and invalid instance names', () => {
    expect(() => render('default', [edge])).toThrow(/selects instance edge, not default/);
    expect(() => render('default', [minimal, structuredClone(minimal)])).toThrow(/given twice/);
    expect(() => render('Edge_1', [])).toThrow(RangeError);
  });

  it('is deterministic under any permutation of its input', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
    const spec: fc.Arbitrary<MetricPolicySpecT> = fc.record(
      {
        priority: fc.integer({ min: -100, max: 100 }),
        mode: fc.constantFrom('enforce' as const, 'dryRun' as const),
        drop: fc.array(fc.stringMatching(/^[a-z_]{1,10}\.\*$/), { maxLength: 3 }),
        match: fc.record({ tenants: fc.array(fc.string({ minLength: 1, maxLength: 5 }), { maxLength: 2 }) }),
        proxySelector: fc.record({ matchLabels: fc.dictionary(fc.constantFrom('zone', 'tier'), name) }),
      },
      { requiredKeys: [] },
    );
    const policies = fc.uniqueArray(
      fc.record({ ns: name, name, spec, generation: fc.integer({ min: 1, max: 1000 }) }),
      { selector: (p) => `${p.ns}/${p.name}`, maxLength: 8 },
    );
    fc.assert(
      fc.property(
        policies.chain((ps) =>
          fc.tuple(fc.constant(ps), fc.shuffledSubarray(ps, { minLength: ps.length, maxLength: ps.length })),
        ),
        ([ordered, shuffled]) => {
          const make = (ps: typeof ordered) =>
            render(
              'default',
              ps.map((p) => policy(p.ns, p.name, p.spec, p.generation)),
            );
          const a = make(ordered);
          const b = make(shuffled);
          expect(b).toEqual(a);
          expect(JSON.stringify(b)).toBe(JSON.stringify(a));
          expect(validatePolicies(parsePolicyFile('p.yaml', text(a)))).toHaveLength(ordered.length);
        },
      ),
    );
  });
});

describe('renderProxyConfigMap: usage', () => {
  it('renders usage.yaml only for an instance with a spec.unused policy', () => {
    expect(Object.keys(render('default', [minimal, dryRun]).data)).toEqual([CONFIG_KEY]);
    expect(Object.keys(render('default', [minimal, unusedPolicy]).data).sort()).toEqual([
      CONFIG_KEY,
      USAGE_KEY,
    ]);
  });

  it('renders a MetricUsage document the proxy loads, validates and hashes as the operator does', () => {
    const cm = render('default', [minimal, unusedPolicy]);
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-usage-'));
    try {
      for (const [k, v] of Object.entries(cm.data)) writeFileSync(join(dir, k), v);
      const loaded = loadConfig(dir);
      const validated = validateUsage(loaded.usage);
      expect(validated.documents).toBe(1);
      expect(validated.metrics.map((m) => m.name ?? `~${m.pattern}`)).toEqual([
        'job:shop:rate5m',
        'shop_requests_total',
        '~node_.*',
      ]);
      expect(validated.metrics[2]).toMatchObject({ allLabelsExcept: ['pod'] });
      expect(proxyConfigHash(cm, dir)).toBe(loaded.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves the sources out when they would not fit in a ConfigMap', () => {
    const sources = Array.from({ length: 5 }, (_, i) => `Dashboard monitoring/dashboards/board-${i}.json`);
    const big = {
      metrics: Array.from({ length: 5000 }, (_, i) => ({
        name: `app_metric_${i}_total`,
        sources,
        labels: ['job'],
      })),
    };
    const text = renderUsageYaml(big);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(USAGE_MAX_BYTES);
    const [doc] = parseConfigFile(USAGE_KEY, text).usage;
    const metrics = validateUsage([doc!]).metrics;
    expect(metrics).toHaveLength(5000);
    expect(metrics[0]).toEqual({ name: 'app_metric_0_total', sources: [], sourceCount: 5, labels: ['job'] });
    // A small usage keeps them.
    expect(renderUsageYaml({ metrics: big.metrics.slice(0, 10) })).toContain('board-4.json');
  });

  it('renders the reads one per line, and the proxy reads them back', () => {
    const text = renderUsageYaml({
      metrics: [{ name: 'up', sources: ['PrometheusRule ns/r'], allLabelsExcept: [] }],
      reads: {
        since: '2026-11-29T10:00:00.000Z',
        metrics: [
          { name: 'app_read', lastRead: '2026-11-30T11:00:00.000Z' },
          { name: 'on', lastRead: '2026-11-30T12:00:00.000Z' },
        ],
      },
    });
    expect(text).toContain('      - {"lastRead":"2026-11-30T11:00:00.000Z","name":"app_read"}\n');
    const [doc] = parseConfigFile(USAGE_KEY, text).usage;
    const usage = validateUsage([doc!]);
    expect(usage.reads?.sinceMs).toBe(Date.parse('2026-11-29T10:00:00.000Z'));
    expect([...(usage.reads?.lastRead ?? [])]).toEqual([
      ['app_read', Date.parse('2026-11-30T11:00:00.000Z')],
      ['on', Date.parse('2026-11-30T12:00:00.000Z')],
    ]);
    expect(
      validateUsage([
        parseConfigFile(
          USAGE_KEY,
          renderUsageYaml({ metrics: [], reads: { since: '2026-11-29T10:00:00Z', metrics: [] } }),
        ).usage[0]!,
      ]).reads?.lastRead.size,
    ).toBe(0);
  });

  it('keeps a given usage.yaml text as it is', () => {
    const cm = renderProxyConfigMap({
      instance: 'default',
      namespace: 'cardinal-system',
      policies: [unusedPolicy],
      operatorVersion: '0.1.0',
      usage: '# kept\n',
    });
    expect(cm.data[USAGE_KEY]).toBe('# kept\n');
  });
});

describe('selectInstance', () => {
  it.each([
    [{}, 'default'],
    [{ proxySelector: {} }, 'default'],
    [{ proxySelector: { matchLabels: { zone: 'eu-1' } } }, 'default'],
    [{ proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'edge' } } }, 'edge'],
  ] as [MetricPolicySpecT, string][])('%j selects %s', (spec, instance) => {
    expect(selectInstance({ spec })).toBe(instance);
  });

  it.each([
    ['default', true],
    ['edge-eu-1', true],
    ['Edge', false],
    ['edge_1', false],
    ['-edge', false],
    ['', false],
    ['a'.repeat(63), true],
    ['a'.repeat(64), false],
  ])('instance name %j valid: %s', (instance, valid) => {
    expect(instanceProblem(instance) === undefined).toBe(valid);
  });
});
