import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { projectConfigMap } from '../test/framework/kubelet.js';
import { type ConfigWatch, type WatchOptions, watchConfig } from './watch.js';

let root: string;
const watches: ConfigWatch[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'cardinal-watch-'));
});
afterEach(() => {
  for (const w of watches.splice(0)) w.close();
  rmSync(root, { recursive: true, force: true });
});

/** Watches `path` and counts the calls of onChange. */
function counting(path: string, opts: WatchOptions) {
  const state = { calls: 0 };
  watches.push(watchConfig(path, () => state.calls++, opts));
  return state;
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('projectConfigMap', () => {
  it('lays the files out as the kubelet does and swaps ..data on update', async () => {
    const dir = join(root, 'cm');
    expect(await projectConfigMap(dir, { 'a.yaml': 'a1', 'b.yaml': 'b1' })).toBe(true);
    const first = readlinkSync(join(dir, '..data'));
    expect(first).toMatch(/^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/);
    expect(readlinkSync(join(dir, 'a.yaml'))).toBe(join('..data', 'a.yaml'));
    expect(readFileSync(join(dir, 'a.yaml'), 'utf8')).toBe('a1');

    expect(await projectConfigMap(dir, { 'a.yaml': 'a1', 'b.yaml': 'b1' })).toBe(false);
    expect(await projectConfigMap(dir, { 'a.yaml': 'a2', 'c.yaml': 'c1' })).toBe(true);
    const second = readlinkSync(join(dir, '..data'));
    expect(second).not.toBe(first);
    expect(readdirSync(dir).sort()).toEqual(['..data', second, 'a.yaml', 'c.yaml'].sort());
    expect(readFileSync(join(dir, 'a.yaml'), 'utf8')).toBe('a2');
  });
});

describe('watchConfig', () => {
  it('sees a ConfigMap update through the directory watch alone', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const seen = counting(dir, { debounceMs: 50, pollMs: 60_000 });
    await projectConfigMap(dir, { 'p.yaml': 'v2' });
    await until(() => seen.calls === 1);
  });

  it('sees a ConfigMap update through a file path inside it', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1', 'other.yaml': 'x' });
    const seen = counting(join(dir, 'p.yaml'), { debounceMs: 50, pollMs: 60_000 });
    await projectConfigMap(dir, { 'p.yaml': 'v2', 'other.yaml': 'x' });
    await until(() => seen.calls === 1);
  });

  it('sees a plain file written in place', async () => {
    const file = join(root, 'p.yaml');
    writeFileSync(file, 'v1');
    const seen = counting(file, { debounceMs: 50, pollMs: 60_000 });
    writeFileSync(file, 'v2 longer');
    await until(() => seen.calls === 1);
  });

  it('calls once for a burst of updates', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const seen = counting(dir, { debounceMs: 200, pollMs: 60_000 });
    for (const v of ['v2', 'v3', 'v4']) await projectConfigMap(dir, { 'p.yaml': v });
    await until(() => seen.calls === 1);
    await sleep(400);
    expect(seen.calls).toBe(1);
  });

  it('does not call when the directory changes but the config files do not', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const seen = counting(dir, { debounceMs: 20, pollMs: 50 });
    writeFileSync(join(dir, '.hidden'), 'x');
    expect(await projectConfigMap(dir, { 'p.yaml': 'v1' })).toBe(false);
    await sleep(300);
    expect(seen.calls).toBe(0);
  });

  it('sees an update by polling when fs.watch reports nothing', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const seen = counting(dir, { fsWatch: false, pollMs: 50 });
    await sleep(150);
    expect(seen.calls).toBe(0);
    await projectConfigMap(dir, { 'p.yaml': 'v2' });
    await until(() => seen.calls === 1);
  });

  it('starts watching a directory that appears after it started', async () => {
    const dir = join(root, 'later');
    const seen = counting(dir, { debounceMs: 20, pollMs: 50 });
    await sleep(100);
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    await until(() => seen.calls >= 1);
    const before = seen.calls;
    await projectConfigMap(dir, { 'p.yaml': 'v2' });
    await until(() => seen.calls > before);
  });

  it('calls no more after close', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const seen = counting(dir, { debounceMs: 20, pollMs: 50 });
    watches.pop()?.close();
    await projectConfigMap(dir, { 'p.yaml': 'v2' });
    await sleep(200);
    expect(seen.calls).toBe(0);
  });

  it('reports an error thrown by onChange and goes on watching', async () => {
    const dir = join(root, 'cm');
    await projectConfigMap(dir, { 'p.yaml': 'v1' });
    const errors: unknown[] = [];
    let calls = 0;
    watches.push(
      watchConfig(
        dir,
        () => {
          calls++;
          throw new Error('boom');
        },
        { debounceMs: 20, pollMs: 60_000, onError: (e) => errors.push(e) },
      ),
    );
    await projectConfigMap(dir, { 'p.yaml': 'v2' });
    await until(() => calls === 1);
    await projectConfigMap(dir, { 'p.yaml': 'v3' });
    await until(() => calls === 2);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom', 'boom']);
  });
});
