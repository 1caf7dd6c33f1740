import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parsePolicyFile } from './load.js';

const policy = (name: string) => `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: ${name}
spec:
  mode: dryRun
`;

describe('loadConfig', () => {
  it('reads MetricUsage documents beside the policies', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-cfg-'));
    writeFileSync(join(dir, 'policies.yaml'), policy('a'));
    writeFileSync(
      join(dir, 'usage.yaml'),
      'apiVersion: cardinal.dev/v1alpha1\nkind: MetricUsage\nmetadata:\n  name: cluster\nspec:\n  metrics:\n    - name: up\n      sources: []\n',
    );
    const cfg = loadConfig(dir);
    expect(cfg.policies.map((p) => p.name)).toEqual(['a']);
    expect(cfg.usage).toMatchObject([
      {
        name: 'cluster',
        source: `${join(dir, 'usage.yaml')}:1`,
        spec: { metrics: [{ name: 'up', sources: [] }] },
      },
    ]);
    // A policy file is still only policies.
    expect(() => parsePolicyFile('f.yaml', 'apiVersion: cardinal.dev/v1alpha1\nkind: MetricUsage\n')).toThrow(
      'expected apiVersion cardinal.dev/v1alpha1 and kind MetricPolicy, got',
    );
  });

  it('reads every shard of a projected volume from the one version ..data names', () => {
    // The kubelet's layout (test/framework/kubelet.ts): key -> ..data/key, ..data -> ..<version>.
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-cfg-'));
    for (const version of ['..v1', '..v2']) {
      mkdirSync(join(dir, version));
      writeFileSync(join(dir, version, 'policies.yaml'), policy(`a-${version.slice(2)}`));
      writeFileSync(join(dir, version, 'policies-1.yaml'), policy(`b-${version.slice(2)}`));
    }
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'policies.yaml'), join(dir, 'policies.yaml'));
    // What a read through ..data would find halfway through a swap: the next version's file.
    symlinkSync(join('..v2', 'policies-1.yaml'), join(dir, 'policies-1.yaml'));
    const cfg = loadConfig(dir);
    expect(cfg.policies.map((p) => p.name)).toEqual(['b-v1', 'a-v1']);
    expect(cfg.files).toEqual([join(dir, 'policies-1.yaml'), join(dir, 'policies.yaml')]);
  });

  it('no path means no policies', () => {
    const cfg = loadConfig(undefined);
    expect(cfg.policies).toEqual([]);
    expect(cfg.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('an empty file and an empty directory load cleanly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-cfg-'));
    writeFileSync(join(dir, 'empty.yaml'), '');
    expect(loadConfig(join(dir, 'empty.yaml')).policies).toEqual([]);
    const empty = join(dir, 'sub');
    mkdirSync(empty);
    expect(loadConfig(empty).policies).toEqual([]);
  });

  it('reads a kubelet-projected ConfigMap directory through ..data and skips dot entries', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-cfg-'));
    const version = join(dir, '..2026_11_22_00_00_00.000000001');
    mkdirSync(version);
    writeFileSync(join(version, 'b.yaml'), `${policy('b')}---\n${policy('c')}`);
    writeFileSync(join(version, 'a.yaml'), policy('a'));
    writeFileSync(join(version, 'notes.txt'), 'ignored');
    symlinkSync('..2026_11_22_00_00_00.000000001', join(dir, '..data'));
    symlinkSync('..data/a.yaml', join(dir, 'a.yaml'));
    symlinkSync('..data/b.yaml', join(dir, 'b.yaml'));
    const cfg = loadConfig(dir);
    expect(cfg.policies.map((p) => p.name)).toEqual(['a', 'b', 'c']);
    expect(cfg.policies[2]?.source).toBe(`${join(dir, 'b.yaml')}:7`);
  });

  it('the hash changes with the content and only with it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-cfg-'));
    const file = join(dir, 'p.yaml');
    writeFileSync(file, policy('a'));
    const first = loadConfig(file).hash;
    expect(loadConfig(file).hash).toBe(first);
    writeFileSync(file, policy('b'));
    expect(loadConfig(file).hash).not.toBe(first);
  });

  it('a missing path is an error naming it', () => {
    expect(() => loadConfig('/nonexistent/cardinal')).toThrow(/cannot read config \/nonexistent\/cardinal/);
  });
});

describe('parsePolicyFile', () => {
  it.each([
    [
      'kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n',
      'f.yaml:2:13: expected apiVersion cardinal.dev/v1alpha1 and kind MetricPolicy, got v1 ConfigMap',
    ],
    ['- a\n- b\n', 'f.yaml:1:1: expected a MetricPolicy object, got a list'],
    ['apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\n', 'f.yaml:1:1: metadata.name is required'],
    [`${policy('ok')}---\nkind: Secret\n`, 'f.yaml:8:1: expected apiVersion'],
    [
      'a: [1, 2\n',
      'f.yaml:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
  ])('%j is rejected with %j', (text, message) => {
    expect(() => parsePolicyFile('f.yaml', text)).toThrow(message);
  });
});
