// Projects a ConfigMap into a directory exactly as the kubelet does, so that tests see the file
// system changes a pod sees when its ConfigMap is updated.
//
// The kubelet's AtomicWriter (kubernetes pkg/volume/util/atomic_writer.go, Write) lays a volume
// out as:
//
//   dir/..2024_05_01_12_00_00.123456789/policies.yaml   the payload, one timestamped dir per version
//   dir/..data -> ..2024_05_01_12_00_00.123456789        the current version
//   dir/policies.yaml -> ..data/policies.yaml            one symlink per key, through ..data
//
// and updates it in these steps, of which only the rename is atomic:
//   1. read ..data to find the current timestamped dir; if the payload is unchanged, stop;
//   2. write the payload into a new dir named `..` + the UTC time as 2006_01_02_15_04_05 + `.` +
//      a random number (Go's os.MkdirTemp);
//   3. create the symlink ..data_tmp pointing at the new dir, and rename it over ..data;
//   4. create `key -> ..data/key` for each key that has no symlink yet;
//   5. remove the symlinks of keys no longer in the payload;
//   6. remove the old timestamped dir.
// A key's visible path never changes, and a watch on it alone sees nothing: only the directory
// sees the rename of ..data.

import { randomInt } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const DATA = '..data';
const DATA_TMP = '..data_tmp';

/**
 * Projects `files` (key -> content) into `dir`, creating `dir` if needed. Returns false when the
 * payload equals what is projected already, in which case, as the kubelet, it changes nothing.
 */
export async function projectConfigMap(
  dir: string,
  files: Readonly<Record<string, string>>,
): Promise<boolean> {
  for (const key of Object.keys(files)) {
    if (key === '' || key.startsWith('..') || key.includes('/'))
      throw new Error(`invalid ConfigMap key ${key}`);
  }
  await mkdir(dir, { recursive: true });

  const oldTsDir = await readlink(join(dir, DATA)).catch(() => undefined);
  const oldKeys = oldTsDir === undefined ? [] : await readdir(join(dir, oldTsDir));
  if (oldTsDir !== undefined && (await samePayload(join(dir, oldTsDir), oldKeys, files))) return false;

  const tsDir = `..${timestamp(new Date())}.${randomInt(1e9).toString().padStart(9, '0')}`;
  await mkdir(join(dir, tsDir), { mode: 0o755 });
  for (const [key, content] of Object.entries(files)) {
    await writeFile(join(dir, tsDir, key), content, { mode: 0o644 });
  }

  await rm(join(dir, DATA_TMP), { force: true });
  await symlink(tsDir, join(dir, DATA_TMP));
  await rename(join(dir, DATA_TMP), join(dir, DATA));

  const visible = new Set(await readdir(dir));
  for (const key of Object.keys(files)) {
    if (!visible.has(key)) await symlink(join(DATA, key), join(dir, key));
  }
  for (const key of oldKeys) {
    if (!Object.hasOwn(files, key)) await rm(join(dir, key), { force: true });
  }
  if (oldTsDir !== undefined) await rm(join(dir, oldTsDir), { recursive: true, force: true });
  return true;
}

async function samePayload(tsDir: string, keys: string[], files: Readonly<Record<string, string>>) {
  if (keys.length !== Object.keys(files).length) return false;
  for (const key of keys) {
    if (!Object.hasOwn(files, key)) return false;
    if ((await readFile(join(tsDir, key), 'utf8')) !== files[key]) return false;
  }
  return true;
}

/** Go's time.Format("2006_01_02_15_04_05") of the UTC time. */
function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}`;
}

/** What `syncConfigMap` reads the ConfigMap with: a kubectl runner (ControlPlane.kubectl). */
export type KubectlRunner = (args: string[]) => Promise<{ stdout: string; stderr: string; code: number }>;

/**
 * The kubelet's part for a pod that mounts a ConfigMap, or several in one projected volume
 * (`names`): polls them and projects every change of any into `dir` with `projectConfigMap`, all
 * keys in one payload, as the kubelet writes a projected volume (the kubelet syncs on its own
 * period too, by default about a minute; tests use a short interval). A missing ConfigMap projects
 * nothing, as an `optional: true` source would. Close it to stop.
 */
export function syncConfigMap(options: {
  kubectl: KubectlRunner;
  namespace: string;
  name: string;
  /** More ConfigMaps projected with `name`, such as the operator's other shards. */
  names?: readonly string[];
  dir: string;
  intervalMs?: number;
}): { close(): Promise<void>; readonly dirs: readonly string[] } {
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const names = [options.name, ...(options.names ?? [])];
  const tick = async (): Promise<void> => {
    const r = await options.kubectl([
      '-n',
      options.namespace,
      'get',
      'configmap',
      ...names,
      '--ignore-not-found',
      '-o',
      'json',
    ]);
    if (r.code !== 0 || r.stdout.trim() === '') return;
    const got = JSON.parse(r.stdout) as {
      items?: { data?: Record<string, string> }[];
      data?: Record<string, string>;
    };
    const items = got.items ?? [got];
    await projectConfigMap(options.dir, Object.assign({}, ...items.map((cm) => cm.data ?? {})));
  };
  // A sync still running when the next is due is not queued behind: the next one reads the latest.
  let busy = false;
  const timer = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    running = tick()
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, options.intervalMs ?? 250);
  return {
    dirs: [],
    async close() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
