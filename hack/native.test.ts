// hack/native.mjs, run as npm ci's prepare script runs it, on a stand-in addon package: node-gyp
// is a script that records how it was called and "builds" by copying a real N-API addon (snappy's,
// which loads in any Node) into build/Release, so each case shows when a build happens, against
// which headers, and what the cache holds.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NATIVE = join(ROOT, 'hack', 'native.mjs');
const REAL_ADDON = createRequire(join(ROOT, 'package.json')).resolve(
  '@napi-rs/snappy-linux-x64-gnu/snappy.linux-x64-gnu.node',
);
const OWN_NODEDIR = dirname(dirname(realpathSync(process.execPath)));

const tmp = mkdtempSync(join(tmpdir(), 'cardinal-native-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const fakeGyp = join(tmp, 'fake-node-gyp.mjs');
writeFileSync(
  fakeGyp,
  `import { appendFileSync, copyFileSync, mkdirSync } from 'node:fs';
appendFileSync(process.env.FAKE_GYP_LOG, JSON.stringify({ args: process.argv.slice(2), nodedir: process.env.npm_config_nodedir, cwd: process.cwd() }) + '\\n');
mkdirSync('build/Release', { recursive: true });
copyFileSync(process.env.FAKE_GYP_ADDON, 'build/Release/fake.node');
`,
);

let n = 0;
/** A fresh stand-in package (nothing built) and its own cache and node-gyp log. */
function setup(version = '1.2.3') {
  const dir = join(tmp, `case-${n++}`);
  const pkg = join(dir, 'pkg');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@scope/fake-addon', version }));
  return { dir, pkg, cache: join(dir, 'cache'), log: join(dir, 'gyp.log') };
}

function run(
  c: ReturnType<typeof setup>,
  opts: { pkg?: string; addon?: string; cache?: string; env?: Record<string, string> } = {},
) {
  const r = spawnSync(process.execPath, [NATIVE, opts.pkg ?? c.pkg], {
    encoding: 'utf8',
    env: {
      ...process.env,
      CARDINAL_CACHE_DIR: opts.cache ?? c.cache,
      CARDINAL_NODE_GYP: fakeGyp,
      FAKE_GYP_LOG: c.log,
      FAKE_GYP_ADDON: opts.addon ?? REAL_ADDON,
      npm_config_nodedir: '',
      ...opts.env,
    },
  });
  const calls = existsSync(c.log)
    ? readFileSync(c.log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { args: string[]; nodedir?: string; cwd: string })
    : [];
  return { status: r.status, stderr: r.stderr, calls };
}

const entryName = (version = '1.2.3') =>
  `scope+fake-addon-${version}-node${process.versions.modules}-${process.platform}-${process.arch}`;

// Each case starts Node several times; on a loaded 2-core machine that can take a minute.
describe('hack/native.mjs', { timeout: 240_000 }, () => {
  it('builds on a cold cache against the running Node own headers, then stores the addon by version, ABI, platform and arch', () => {
    const c = setup();
    const r = run(c);
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]!.args).toEqual(['rebuild', '-j', 'max']);
    expect(r.calls[0]!.cwd).toBe(c.pkg);
    expect(r.calls[0]!.nodedir).toBe(OWN_NODEDIR);
    expect(readFileSync(join(c.cache, 'addons', entryName(), 'fake.node'))).toEqual(readFileSync(REAL_ADDON));
  });

  it('on a warm cache copies the addon into a fresh package without building', () => {
    const c = setup();
    expect(run(c).calls).toHaveLength(1);
    const fresh = join(c.dir, 'fresh');
    mkdirSync(fresh);
    writeFileSync(join(fresh, 'package.json'), readFileSync(join(c.pkg, 'package.json')));
    const r = run(c, { pkg: fresh });
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls).toHaveLength(1);
    expect(readFileSync(join(fresh, 'build', 'Release', 'fake.node'))).toEqual(readFileSync(REAL_ADDON));
    expect(r.stderr).toContain('from the cache');
  });

  it('builds again for another version of the package', () => {
    const c = setup();
    run(c);
    const other = join(c.dir, 'other');
    mkdirSync(other);
    writeFileSync(
      join(other, 'package.json'),
      JSON.stringify({ name: '@scope/fake-addon', version: '1.2.4' }),
    );
    const r = run(c, { pkg: other });
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls).toHaveLength(2);
    expect(existsSync(join(c.cache, 'addons', entryName('1.2.4'), 'fake.node'))).toBe(true);
  });

  it('drops a cache entry that does not load, and builds', () => {
    const c = setup();
    mkdirSync(join(c.cache, 'addons', entryName()), { recursive: true });
    writeFileSync(join(c.cache, 'addons', entryName(), 'fake.node'), 'not an addon');
    const r = run(c);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('does not load');
    expect(r.calls).toHaveLength(1);
    expect(readFileSync(join(c.cache, 'addons', entryName(), 'fake.node'))).toEqual(readFileSync(REAL_ADDON));
  });

  it('fails, naming the package, when the build does not load in this Node; nothing is cached', () => {
    const c = setup();
    const bad = join(c.dir, 'bad.node');
    writeFileSync(bad, 'not an addon');
    const r = run(c, { addon: bad });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${c.pkg}: the build does not load in Node ${process.version}`);
    expect(existsSync(join(c.cache, 'addons', entryName()))).toBe(false);
  });

  it('does not build against a nodedir whose headers are another Node version', () => {
    const c = setup();
    const other = join(c.dir, 'node20');
    mkdirSync(join(other, 'include', 'node'), { recursive: true });
    writeFileSync(
      join(other, 'include', 'node', 'node_version.h'),
      '#define NODE_MAJOR_VERSION 20\n#define NODE_MINOR_VERSION 20\n#define NODE_PATCH_VERSION 2\n',
    );
    const r = run(c, { env: { npm_config_nodedir: other } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls[0]!.nodedir).toBe(OWN_NODEDIR);
  });

  it('keeps an addon that already loads and fills the cache from it', () => {
    const c = setup();
    mkdirSync(join(c.pkg, 'build', 'Release'), { recursive: true });
    writeFileSync(join(c.pkg, 'build', 'Release', 'fake.node'), readFileSync(REAL_ADDON));
    const r = run(c);
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls).toHaveLength(0);
    expect(existsSync(join(c.cache, 'addons', entryName(), 'fake.node'))).toBe(true);
  });
});
