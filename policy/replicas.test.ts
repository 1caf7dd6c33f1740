import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.js';
import { parseReplicas, REPLICAS_KEY, readReplicas, renderReplicas } from './replicas.js';

describe('the replica count in the config directory', () => {
  it.each([
    ['3\n', 3],
    [' 12 ', 12],
    ['1', 1],
  ])('reads %j as %d', (text, n) => expect(parseReplicas(text)).toBe(n));

  it.each(['0', '-1', '2.5', 'three', '', '1e3', '10000000'])('refuses %j', (text) =>
    expect(() => parseReplicas(text)).toThrow(/is not a positive integer/),
  );

  it('round-trips what the operator renders', () => expect(parseReplicas(renderReplicas(7))).toBe(7));

  it('is absent without the file, or for a single config file, and named when invalid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-replicas-'));
    expect(readReplicas(undefined)).toEqual({ kind: 'absent' });
    expect(readReplicas(dir)).toEqual({ kind: 'absent' });
    writeFileSync(join(dir, 'policies.yaml'), '');
    expect(readReplicas(join(dir, 'policies.yaml'))).toEqual({ kind: 'absent' });
    writeFileSync(join(dir, REPLICAS_KEY), '4\n');
    expect(readReplicas(dir)).toEqual({ kind: 'count', count: 4 });
    writeFileSync(join(dir, REPLICAS_KEY), 'many\n');
    expect(readReplicas(dir)).toMatchObject({ kind: 'invalid', file: join(dir, REPLICAS_KEY) });
  });

  it('is no part of the configuration or its hash', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'cardinal-replicas-')), 'policies');
    mkdirSync(dir);
    writeFileSync(join(dir, 'policies.yaml'), '');
    const before = loadConfig(dir);
    writeFileSync(join(dir, REPLICAS_KEY), '4\n');
    const after = loadConfig(dir);
    expect(after.hash).toBe(before.hash);
    expect(after.files).toEqual(before.files);
  });
});
