import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, readConfig } from '../../policy/load.js';
import { checkConfiguration } from './configuration.js';
import { ConfigLoader } from './loader.js';

const doc = (name: string, drop: string) =>
  `---\napiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata: { name: ${name}, namespace: apps }\nspec:\n  drop: ["${drop}"]\n`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'cardinal-loader-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

describe('ConfigLoader', () => {
  it('parses again only the files whose text changed, and gives what a whole reading gives', () => {
    const d = dir({ 'a.yaml': doc('a', 'a_.*'), 'b.yaml': doc('b', 'b_.*') + doc('c', 'c_.*') });
    const loader = new ConfigLoader(d);
    const first = loader.loadNow();
    expect(loader.stats).toEqual({ files: 2, parsed: 2 });
    expect(first.policies.map((p) => p.name)).toEqual(['a', 'b', 'c']);

    writeFileSync(join(d, 'b.yaml'), doc('b', 'b_edited_.*') + doc('c', 'c_.*'));
    const second = loader.loadNow();
    expect(loader.stats).toEqual({ files: 2, parsed: 1 });
    expect(second.policies.find((p) => p.name === 'b')?.spec.drop).toEqual(['b_edited_.*']);
    // The same configuration, hash and all, as reading every file afresh.
    const whole = checkConfiguration(d);
    expect(second.config.hash).toBe(readConfig(d).hash);
    expect(second.config.hash).toBe(whole.config.hash);
    expect(second.policies).toEqual(whole.policies);
    expect(second.config.files).toEqual(whole.config.files);

    const third = loader.loadNow();
    expect(loader.stats).toEqual({ files: 2, parsed: 0 });
    // Each file's sha256, by path: what the operator tells its shards apart by.
    expect(third.fileHashes).toEqual({
      [join(d, 'a.yaml')]: sha256(doc('a', 'a_.*')),
      [join(d, 'b.yaml')]: sha256(doc('b', 'b_edited_.*') + doc('c', 'c_.*')),
    });
    rmSync(d, { recursive: true });
  });

  it('refuses a policy defined in two files, naming both places, and takes the fix', () => {
    const d = dir({ 'a.yaml': doc('a', 'a_.*'), 'b.yaml': doc('b', 'b_.*') });
    const loader = new ConfigLoader(d);
    loader.loadNow();
    writeFileSync(join(d, 'b.yaml'), doc('b', 'b_.*') + doc('a', 'again_.*'));
    let err: unknown;
    try {
      loader.loadNow();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      `${join(d, 'b.yaml')}:10:19: MetricPolicy apps/a is also defined at ${join(d, 'a.yaml')}:4:19`,
    );
    writeFileSync(join(d, 'b.yaml'), doc('b', 'b_.*'));
    expect(loader.loadNow().policies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(loader.stats.parsed).toBe(1);
    rmSync(d, { recursive: true });
  });

  it('keeps every problem of an unchanged broken file while another file changes', () => {
    const d = dir({ 'a.yaml': doc('a', '(['), 'b.yaml': doc('b', 'b_.*') });
    const loader = new ConfigLoader(d);
    expect(() => loader.loadNow()).toThrow(/a\.yaml:6:.*spec\.drop\[0\]/);
    writeFileSync(join(d, 'b.yaml'), doc('b', 'b2_.*'));
    expect(() => loader.loadNow()).toThrow(/a\.yaml:6:.*spec\.drop\[0\]/);
    expect(loader.stats).toEqual({ files: 2, parsed: 1 });
    rmSync(d, { recursive: true });
  });

  it('forgets a file that is gone', () => {
    const d = dir({ 'a.yaml': doc('a', 'a_.*'), 'b.yaml': doc('b', 'b_.*') });
    const loader = new ConfigLoader(d);
    loader.loadNow();
    rmSync(join(d, 'b.yaml'));
    expect(loader.loadNow().policies.map((p) => p.name)).toEqual(['a']);
    expect(loader.stats).toEqual({ files: 1, parsed: 0 });
    rmSync(d, { recursive: true });
  });
});
