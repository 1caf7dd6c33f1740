// The container images, built without a container engine. SLOW and NETWORKED: this test runs
// `npm ci` against the npm registry (through the local npm cache) and builds RE2's native addon with
// hack/native.mjs (a copy from ~/.cache/cardinal/addons once this machine has compiled it).
//
// It reads Dockerfile.proxy and Dockerfile.operator and carries out their instructions in a
// temporary directory: the build stage's COPY and RUN lines in a stand-in for /src (except the
// apt-get line, whose toolchain this machine already has), then the final stage's COPY --from
// lines into a stand-in for /app. Then it starts each ENTRYPOINT as the image would, from the
// pruned tree, with the final stage's environment. Both Dockerfiles have the same build stage, so
// it is carried out once.

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort, keepTmpRequested, startProgram, useCleanup } from '../framework/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Instruction {
  op: string;
  args: string;
}

interface Stage {
  name: string | undefined;
  instructions: Instruction[];
}

/** Stages of a Dockerfile: continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const line of lines) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (op.toUpperCase() === 'FROM') {
      stages.push({ name: /\sAS\s+(\S+)$/i.exec(args)?.[1], instructions: [] });
    }
    stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

const last = (stage: Stage, op: string): string | undefined =>
  stage.instructions.filter((i) => i.op === op).at(-1)?.args;

/** Maps an absolute path in the image to the stand-in directory of its WORKDIR. */
function mapPath(path: string, workdir: string, standIn: string): string {
  if (path === workdir || path.startsWith(`${workdir}/`)) return join(standIn, path.slice(workdir.length));
  if (path.startsWith('/')) throw new Error(`${path} lies outside WORKDIR ${workdir}`);
  return join(standIn, path);
}

/** The environment npm gets in the image: none of the npm_* variables of the `npx vitest` around us. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v;
  return { ...env, ...extra };
}

interface BuiltStage {
  workdir: string;
  dir: string;
  log: string[];
}

/** Carries out a build stage: WORKDIR, ENV, COPY from the context, RUN (apt-get skipped). */
function build(stage: Stage, dir: string): BuiltStage {
  let workdir = '/';
  const env: Record<string, string> = {};
  const log: string[] = [];
  mkdirSync(dir, { recursive: true });
  for (const { op, args } of stage.instructions) {
    if (op === 'WORKDIR') workdir = args;
    else if (op === 'ENV') Object.assign(env, Object.fromEntries([args.split('=', 2) as [string, string]]));
    else if (op === 'COPY') {
      const parts = args.split(/\s+/);
      if (parts.some((p) => p.startsWith('--')))
        throw new Error(`unexpected COPY flags in a build stage: ${args}`);
      const dest = mapPath(parts.at(-1)!, workdir, dir);
      for (const src of parts.slice(0, -1)) {
        cpSync(join(ROOT, src), parts.at(-1)!.endsWith('/') ? join(dest, src) : dest, { recursive: true });
      }
    } else if (op === 'RUN') {
      if (args.startsWith('apt-get')) continue;
      const started = Date.now();
      const r = spawnSync('sh', ['-c', args], { cwd: dir, env: cleanEnv(env), encoding: 'utf8' });
      log.push(`RUN ${args}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (r.status !== 0) throw new Error(`RUN ${args} failed (${r.status}):\n${r.stdout}${r.stderr}`);
    }
  }
  return { workdir, dir, log };
}

/** Carries out a final stage's COPY --from lines; returns its WORKDIR's stand-in. */
function assemble(
  stage: Stage,
  from: BuiltStage,
  dir: string,
): { workdir: string; env: Record<string, string> } {
  let workdir = '/';
  const env: Record<string, string> = {};
  mkdirSync(dir, { recursive: true });
  for (const { op, args } of stage.instructions) {
    if (op === 'WORKDIR') workdir = args;
    else if (op === 'ENV') Object.assign(env, Object.fromEntries([args.split('=', 2) as [string, string]]));
    else if (op === 'COPY') {
      const [flag = '', src = '', destPath = ''] = args.split(/\s+/);
      if (!flag.startsWith('--from=')) throw new Error(`final stage copies from the context: ${args}`);
      const source = mapPath(src, from.workdir, from.dir);
      const dest = mapPath(destPath, workdir, dir);
      const target = destPath.endsWith('/') && !src.endsWith('/') ? join(dest, src.split('/').at(-1)!) : dest;
      cpSync(source, target, { recursive: true });
    } else if (op === 'RUN') throw new Error(`final stage runs ${args}; not carried out here`);
  }
  return { workdir, env };
}

interface Image {
  stages: Stage[];
  final: Stage;
  app: string;
  workdir: string;
  env: Record<string, string>;
  /** The ENTRYPOINT with node and the image's paths replaced by this machine's. */
  entrypoint: string[];
}

describe('container images (slow: npm ci from the registry and a native build)', () => {
  const track = useCleanup();
  const tmp = mkdtempSync(join(tmpdir(), 'cardinal-images-'));
  // Tracked first, so removed last, after the programs that run from it stopped.
  track({
    dirs: [tmp],
    close: async (o) => {
      if (!o?.keepDir && !keepTmpRequested()) rmSync(tmp, { recursive: true, force: true });
    },
  });
  const images = new Map<string, Image>();
  let built: BuiltStage;

  beforeAll(() => {
    const started = Date.now();
    const buildStages = new Map<string, BuiltStage>();
    for (const kind of ['proxy', 'operator']) {
      const stages = parseDockerfile(readFileSync(join(ROOT, `Dockerfile.${kind}`), 'utf8'));
      const buildStage = stages.find((s) => s.name === 'build')!;
      const final = stages.at(-1)!;
      const key = JSON.stringify(buildStage.instructions);
      let stage = buildStages.get(key);
      if (stage === undefined) {
        stage = build(buildStage, join(tmp, `build-${buildStages.size}`));
        buildStages.set(key, stage);
      }
      built = stage;
      const app = join(tmp, kind);
      const { workdir, env } = assemble(final, stage, app);
      const entry = JSON.parse(last(final, 'ENTRYPOINT') ?? '[]') as string[];
      const entrypoint = entry.map((a, i) =>
        i === 0 && a === 'node' ? process.execPath : a.startsWith('/') ? mapPath(a, workdir, app) : a,
      );
      images.set(kind, { stages, final, app, workdir, env, entrypoint });
    }
    console.log(
      `images built in ${((Date.now() - started) / 1000).toFixed(1)} s:\n  ${[...buildStages.values()].flatMap((s) => s.log).join('\n  ')}`,
    );
  }, 300_000);

  it.each(['proxy', 'operator'])(
    '%s: the final stage runs as a numeric non-root USER with the built bin as ENTRYPOINT',
    (kind) => {
      const image = images.get(kind)!;
      expect(image.stages.length).toBeGreaterThanOrEqual(2);
      const user = last(image.final, 'USER');
      expect(user).toMatch(/^\d+(:\d+)?$/);
      for (const id of user!.split(':')) expect(Number(id)).toBeGreaterThan(0);
      expect(JSON.parse(last(image.final, 'ENTRYPOINT')!)).toEqual(['node', `/app/dist/${kind}/main.js`]);
      expect(existsSync(image.entrypoint[1]!)).toBe(true);
    },
  );

  it('prunes every devDependency from the shipped node_modules', () => {
    const modules = join(images.get('proxy')!.app, 'node_modules');
    for (const name of ['vitest', 'typescript', '@biomejs/biome']) {
      expect(existsSync(join(modules, name, 'package.json')), name).toBe(false);
    }
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev === true && path.startsWith('node_modules/'))
      .map(([path]) => path);
    expect(devOnly.length).toBeGreaterThan(10);
    const shipped = devOnly.filter((path) =>
      existsSync(join(images.get('proxy')!.app, path, 'package.json')),
    );
    expect(shipped).toEqual([]);
    // What the programs need is there, RE2's native addon included.
    expect(existsSync(join(modules, 're2', 'build', 'Release', 're2.node'))).toBe(true);
    expect(existsSync(join(built.dir, 'node_modules', 'typescript'))).toBe(false);
  });

  it('proxy: the entrypoint serves /-/healthy and /-/ready', async () => {
    const image = images.get('proxy')!;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const [command, ...args] = image.entrypoint;
    track(
      await startProgram({
        name: 'proxy-image',
        command: command!,
        args: () => [...args, '--listen', `127.0.0.1:${port}`],
        dir: image.app,
        env: image.env,
        readyUrl: `${url}/-/ready`,
      }),
    );
    for (const path of ['/-/healthy', '/-/ready']) {
      const res = await fetch(`${url}${path}`);
      expect(res.status, path).toBe(200);
    }
  });

  it('operator: --help prints usage and exits 0; a missing kubeconfig exits non-zero naming it', () => {
    const image = images.get('operator')!;
    const [command, ...args] = image.entrypoint;
    const run = (...extra: string[]) =>
      spawnSync(command!, [...args, ...extra], {
        cwd: image.app,
        env: { ...process.env, ...image.env },
        encoding: 'utf8',
        timeout: 30_000,
      });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: cardinal-operator/);
    expect(help.stdout).toContain('--kubeconfig');

    const missing = join(tmp, 'no-such-kubeconfig');
    const broken = run('--kubeconfig', missing);
    expect(broken.status).not.toBe(0);
    expect(broken.status).not.toBeNull();
    expect(broken.stderr).toContain(missing);
  });
});
