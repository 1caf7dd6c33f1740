// hack/control-plane.sh, the documented way to get a local control plane, started the way a
// developer starts it while the machine is busy: CPU hogs compete with the script for every core,
// so the script's forked children are slow to exec. Its liveness check must not take a child that
// has not exec'd yet for a dead etcd.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepTmpRequested, kubeAssets } from '../framework/index.js';

const execFileAsync = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../hack/control-plane.sh', import.meta.url));

/**
 * One busy loop per core, at the script's own priority: the script's children then compete for
 * every core with them (and with whatever else the machine runs).
 */
function cpuLoad(): ChildProcess[] {
  return Array.from({ length: availableParallelism() }, () =>
    spawn('bash', ['-c', 'while :; do :; done'], { stdio: 'ignore' }),
  );
}

async function script(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('bash', [SCRIPT, ...args], {
      env: {
        ...process.env,
        KUBEBUILDER_ASSETS: join(kubeAssets().kubectl, '..'),
        CONTROL_PLANE_TIMEOUT: '240',
      },
      timeout: 300_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('hack/control-plane.sh on a loaded machine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cardinal-control-plane-script-'));
  let hogs: ChildProcess[] = [];

  beforeAll(() => {
    hogs = cpuLoad();
  });
  afterAll(async () => {
    for (const hog of hogs) hog.kill('SIGKILL');
    await script(['stop', dir]);
    if (!keepTmpRequested()) rmSync(dir, { recursive: true, force: true });
  });

  // The script may take its whole CONTROL_PLANE_TIMEOUT on a machine this busy.
  it('starts etcd and kube-apiserver, answers kubectl, starts again idempotently and stops', {
    timeout: 420_000,
  }, async () => {
    const started = await script(['start', dir]);
    expect(started.stderr).not.toMatch(/exited/);
    expect(started.code).toBe(0);
    expect(started.stdout.trim()).toBe(`KUBECONFIG=${join(dir, 'kubeconfig')}`);

    const kubectl = kubeAssets().kubectl;
    const { stdout } = await execFileAsync(kubectl, [
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      'get',
      '--raw',
      '/readyz',
    ]);
    expect(stdout.trim()).toBe('ok');
    // The pid files name the programs themselves, not the shell that forked them.
    for (const name of ['etcd', 'kube-apiserver']) {
      const pid = readFileSync(join(dir, `${name}.pid`), 'utf8').trim();
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toMatch(new RegExp(`/${name}$`));
    }

    const again = await script(['start', dir]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already running/);

    const stopped = await script(['stop', dir]);
    expect(stopped.code).toBe(0);
    for (const name of ['etcd', 'kube-apiserver'])
      expect(() => readFileSync(join(dir, `${name}.pid`))).toThrow();
  });

  it('waits for a child that is slow to exec instead of taking it for a dead etcd', {
    timeout: 420_000,
  }, async () => {
    // The slowest a child can be: its log is a FIFO that nobody reads yet, so the forked shell
    // blocks opening it, before exec, for as long as the test likes. Load makes the same window
    // likely, this makes it certain.
    const slow = mkdtempSync(join(tmpdir(), 'cardinal-control-plane-slow-'));
    execFileSync('mkfifo', [join(slow, 'etcd.log')]);
    let reader: ChildProcess | undefined;
    const timer = setTimeout(() => {
      reader = spawn('sh', ['-c', `cat "${join(slow, 'etcd.log')}" > "${join(slow, 'etcd.out')}"`], {
        stdio: 'ignore',
      });
    }, 3_000);
    try {
      const started = await script(['start', slow]);
      expect(started.stderr).not.toMatch(/etcd exited/);
      expect(started.code).toBe(0);
    } finally {
      clearTimeout(timer);
      await script(['stop', slow]);
      reader?.kill();
      if (!keepTmpRequested()) rmSync(slow, { recursive: true, force: true });
    }
  });
});
