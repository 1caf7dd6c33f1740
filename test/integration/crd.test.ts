// Proves the generated MetricPolicy CRD (crds/metricpolicies.yaml) against a real API server:
// what users see from kubectl (defaults, the short name, printer columns, `kubectl explain`) and
// the exact messages with which the API server rejects a bad policy. The unit test in crds/ checks
// the CRD's shape; only a real API server shows that the CEL rules compile and hold.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type ControlPlane, eventually, startControlPlane, useCleanup } from '../framework/index.js';

const CRD_PATH = fileURLToPath(new URL('../../crds/metricpolicies.yaml', import.meta.url));
const CRD_NAME = 'metricpolicies.cardinal.dev';

type Spec = Record<string, unknown>;

function policy(name: string, spec: Spec): string {
  return JSON.stringify({
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { name },
    spec,
  });
}

/** The schema node of a field under spec, from the CRD file itself. */
function specField(...path: string[]): {
  description: string;
  properties: Record<string, { description: string }>;
} {
  const crd = parse(readFileSync(CRD_PATH, 'utf8'));
  let node = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
  for (const key of path) node = node.properties[key];
  return node;
}

/** Collapses whitespace, so that text kubectl wraps compares equal to the schema's. */
const flat = (text: string) => text.replace(/\s+/g, ' ').trim();

describe('MetricPolicy CRD on a real API server', () => {
  const track = useCleanup();
  // A namespace of our own, so that a run against an existing cluster touches nothing else.
  const ns = `cardinal-crd-${randomBytes(4).toString('hex')}`;
  let plane: ControlPlane;

  const kubectl = (args: string[], input?: string) =>
    plane.kubectl(['--namespace', ns, ...args], input === undefined ? {} : { input });

  beforeAll(async () => {
    plane = track(await startControlPlane());
    const applied = await plane.kubectl(['apply', '-f', CRD_PATH]);
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toMatch(
      new RegExp(`customresourcedefinition.apiextensions.k8s.io/${CRD_NAME} (created|configured|unchanged)`),
    );
    const established = await plane.kubectl([
      'wait',
      '--for=condition=Established',
      `crd/${CRD_NAME}`,
      '--timeout=30s',
    ]);
    expect(established.stderr).toBe('');
    expect((await plane.kubectl(['create', 'namespace', ns])).code).toBe(0);
    track({
      dirs: [],
      // Without a controller-manager the namespace stays Terminating; that is fine, and waiting for it is not.
      close: async () => {
        await plane.kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
      },
    });
  });

  it('accepts a valid policy and stores it with the schema defaults filled in', async () => {
    const spec = {
      match: { selector: '{job=~"api-.*"}', tenants: ['team-a'] },
      relabel: [
        { source_labels: ['pod'], regex: '(.*)-[a-z0-9]+', target_label: 'workload' },
        { source_labels: ['instance'], action: 'hashmod', modulus: 4, target_label: 'shard' },
        { action: 'labeldrop', regex: 'pod_template_hash' },
      ],
      drop: ['go_gc_.*'],
      standards: { requiredLabels: ['team'], maxLabels: 30 },
      limits: {
        perMetric: [
          { metric: 'http_requests_total', maxSeries: 1000, onExceed: 'overflow', overflowLabel: 'path' },
          { metric: '.*', maxSeries: 5000 },
        ],
        perLabel: [{ label: 'user_id', maxValues: 100 }],
      },
    };
    const created = await kubectl(['apply', '-f', '-'], policy('valid', spec));
    expect(created).toEqual({ stdout: 'metricpolicy.cardinal.dev/valid created\n', stderr: '', code: 0 });

    const read = await kubectl(['get', 'metricpolicy', 'valid', '-o', 'json']);
    expect(read.code).toBe(0);
    expect(JSON.parse(read.stdout).spec).toEqual({
      ...spec,
      mode: 'enforce',
      priority: 0,
      relabel: [{ ...spec.relabel[0], action: 'replace' }, spec.relabel[1], spec.relabel[2]],
      standards: { ...spec.standards, onViolation: 'report' },
      limits: {
        window: '1h',
        perMetric: [spec.limits.perMetric[0], { ...spec.limits.perMetric[1], onExceed: 'dropNewSeries' }],
        perLabel: [{ ...spec.limits.perLabel[0], onExceed: 'dropNewSeries' }],
      },
    });
  });

  it('lists policies by short name and category with the printer columns', async () => {
    expect((await kubectl(['apply', '-f', '-'], policy('trial', { mode: 'dryRun' }))).code).toBe(0);
    expect((await kubectl(['apply', '-f', '-'], policy('plain', {}))).code).toBe(0);

    // -o wide adds the priority-1 columns.
    const wide = (await kubectl(['get', 'mp', '-o', 'wide'])).stdout.trim().split('\n')[0]!;
    expect(wide.split(/\s{2,}/)).toEqual([
      'NAME',
      'MODE',
      'READY',
      'REASON',
      'PROXIES',
      'DROPPED/S',
      'LIMITS %',
      'LIMITS',
      'TOP OFFENDER',
      'UNUSED SERIES',
      'AGE',
    ]);
    for (const resource of ['mp', 'cardinal']) {
      const listed = await kubectl(['get', resource]);
      expect(listed.stderr).toBe('');
      const rows = listed.stdout
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/));
      expect(rows[0]).toEqual([
        'NAME',
        'MODE',
        'READY',
        'REASON',
        'PROXIES',
        'DROPPED/S',
        'LIMITS',
        '%',
        'LIMITS',
        'AGE',
      ]);
      // No operator runs here, so the status columns are empty: name, mode and age remain.
      const byName = new Map(rows.slice(1).map((cells) => [cells[0], { mode: cells[1], age: cells.at(-1) }]));
      expect(byName.get('trial')).toEqual({ mode: 'dryRun', age: expect.stringMatching(/^\d+s$/) });
      expect(byName.get('plain')).toEqual({ mode: 'enforce', age: expect.stringMatching(/^\d+s$/) });
    }
  });

  it('`kubectl explain metricpolicy.spec.limits` prints the schema descriptions', async () => {
    const limits = specField('limits');
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    const explained = await eventually(async () => {
      const r = await plane.kubectl(['explain', 'metricpolicy.spec.limits']);
      expect(r.stderr).toBe('');
      return r.stdout;
    });
    const text = flat(explained);
    expect(text).toContain('GROUP: cardinal.dev KIND: MetricPolicy VERSION: v1alpha1');
    expect(text).toContain(`FIELD: limits <Object> DESCRIPTION: ${flat(limits.description)}`);
    expect(Object.keys(limits.properties).sort()).toEqual([
      'perLabel',
      'perMetric',
      'perTenantMaxSeries',
      'window',
    ]);
    for (const [field, schema] of Object.entries(limits.properties)) {
      expect(text).toMatch(new RegExp(`${field} <[^>]+> ${escapeRegExp(flat(schema.description))}`));
    }
  });

  const invalid = (detail: string) => `The MetricPolicy "bad" is invalid: ${detail}`;
  // Schema errors (enum, maxItems) stop validation before the CEL rules run, and the API server says so.
  const beforeCel = (detail: string) =>
    `The MetricPolicy "bad" is invalid: \n* ${detail}\n* <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation`;
  const rule = (action: string, extra: Spec = {}) => ({
    relabel: [{ source_labels: ['a'], action, ...extra }],
  });

  it.each<[string, Spec, string]>([
    [
      'replace without target_label',
      { relabel: [{ source_labels: ['a'] }] },
      invalid('spec.relabel[0].target_label: Invalid value: "object": action replace requires target_label'),
    ],
    ...['hashmod', 'lowercase', 'uppercase', 'keepequal', 'dropequal'].map(
      (action): [string, Spec, string] => [
        `${action} without target_label`,
        rule(action, action === 'hashmod' ? { modulus: 2 } : {}),
        invalid(
          `spec.relabel[0].target_label: Invalid value: "object": action ${action} requires target_label`,
        ),
      ],
    ),
    [
      'hashmod without modulus',
      rule('hashmod', { target_label: 'shard' }),
      invalid('spec.relabel[0].modulus: Invalid value: "object": action hashmod requires modulus'),
    ],
    [
      'overflowLabel without onExceed overflow',
      { limits: { perMetric: [{ metric: 'a', maxSeries: 5, overflowLabel: 'path' }] } },
      invalid(
        'spec.limits.perMetric[0].overflowLabel: Invalid value: "object": overflowLabel is only used with onExceed overflow',
      ),
    ],
    [
      'maxSeries 0',
      { limits: { perMetric: [{ metric: 'a', maxSeries: 0 }] } },
      invalid(
        'spec.limits.perMetric[0].maxSeries: Invalid value: 0: spec.limits.perMetric[0].maxSeries in body should be greater than or equal to 1',
      ),
    ],
    [
      'an unknown mode',
      { mode: 'audit' },
      beforeCel('spec.mode: Unsupported value: "audit": supported values: "enforce", "dryRun"'),
    ],
    [
      'more than 256 relabel rules',
      { relabel: Array.from({ length: 257 }, () => ({ action: 'drop' })) },
      beforeCel('spec.relabel: Too many: 257: must have at most 256 items'),
    ],
  ])('rejects %s with the API server message', async (_case, spec, message) => {
    const r = await kubectl(['apply', '-f', '-'], policy('bad', spec));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(message);
    const read = await kubectl(['get', 'metricpolicy', 'bad']);
    expect(read.stderr.trim()).toBe(
      'Error from server (NotFound): metricpolicies.cardinal.dev "bad" not found',
    );
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
