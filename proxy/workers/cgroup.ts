// How many workers `--workers` defaults to: the CPU quota of the container's cgroup, rounded up,
// at least 1 and at most the CPUs the machine has; the CPU count without a quota. The same reading
// as Go's automaxprocs: find the process's cgroup in /proc/self/cgroup, find where that hierarchy
// is mounted in /proc/self/mountinfo, then read
// - cgroup v2: `cpu.max`, "<quota> <period>" in microseconds, or "max <period>" for none;
// - cgroup v1: `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`.
// Pure over a file reader, so tests give it the files of any machine.

/** Reads a file's text, or undefined when it is not there. */
export type ReadText = (path: string) => string | undefined;

/** A cgroup hierarchy the process is in: its controllers ('' for v2) and the process's path in it. */
interface ProcCgroup {
  readonly controllers: readonly string[];
  readonly path: string;
}

/** One cgroup mount: the hierarchy's root seen there, the mount point, v2 or the v1 controllers. */
interface CgroupMount {
  readonly root: string;
  readonly mountPoint: string;
  readonly v2: boolean;
  readonly controllers: readonly string[];
}

/** `/proc/self/cgroup`: "hierarchy-ID:controller-list:cgroup-path" per line. */
export function parseProcCgroup(text: string): ProcCgroup[] {
  const out: ProcCgroup[] = [];
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const list = line.slice(first + 1, second);
    out.push({ controllers: list === '' ? [] : list.split(','), path: line.slice(second + 1) });
  }
  return out;
}

/** `/proc/self/mountinfo` (proc(5)): the cgroup and cgroup2 mounts. */
export function parseMountinfo(text: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6 || fields.length < dash + 4) continue;
    const fsType = fields[dash + 1];
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const octal = (s: string) =>
      s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({
      root: octal(fields[3]!),
      mountPoint: octal(fields[4]!),
      v2: fsType === 'cgroup2',
      controllers: fsType === 'cgroup' ? fields[dash + 3]!.split(',') : [],
    });
  }
  return out;
}

/** The cgroup's directory: the mount point joined with the process's path below the mount's root. */
function cgroupDir(mount: CgroupMount, path: string): string {
  let rel = path;
  if (mount.root !== '/' && (path === mount.root || path.startsWith(`${mount.root}/`))) {
    rel = path.slice(mount.root.length);
  }
  const joined = `${mount.mountPoint}/${rel}`.replace(/\/+/g, '/');
  return joined.length > 1 && joined.endsWith('/') ? joined.slice(0, -1) : joined;
}

/** `cpu.max`: the quota in CPUs, or undefined for "max" (none) or text that is not a quota. */
export function quotaFromCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return undefined;
  const q = Number(quota);
  const p = Number(period ?? '100000');
  return Number.isFinite(q) && q > 0 && Number.isFinite(p) && p > 0 ? q / p : undefined;
}

/** `cpu.cfs_quota_us` and `cpu.cfs_period_us`: the quota in CPUs, or undefined for -1 (none). */
export function quotaFromCfs(quotaText: string, periodText: string): number | undefined {
  const q = Number(quotaText.trim());
  const p = Number(periodText.trim());
  return Number.isFinite(q) && q > 0 && Number.isFinite(p) && p > 0 ? q / p : undefined;
}

/** The process's CPU quota in CPUs from its cgroup (v2 first, then v1), or undefined for none. */
export function readCpuQuota(read: ReadText): number | undefined {
  const groups = parseProcCgroup(read('/proc/self/cgroup') ?? '');
  const mounts = parseMountinfo(read('/proc/self/mountinfo') ?? '');
  const v2 = groups.find((g) => g.controllers.length === 0);
  if (v2 !== undefined) {
    for (const m of mounts.filter((m) => m.v2)) {
      const text = read(`${cgroupDir(m, v2.path)}/cpu.max`);
      if (text !== undefined) return quotaFromCpuMax(text);
    }
  }
  const v1 = groups.find((g) => g.controllers.includes('cpu'));
  if (v1 !== undefined) {
    for (const m of mounts.filter((m) => !m.v2 && m.controllers.includes('cpu'))) {
      const dir = cgroupDir(m, v1.path);
      const quota = read(`${dir}/cpu.cfs_quota_us`);
      const period = read(`${dir}/cpu.cfs_period_us`);
      if (quota !== undefined && period !== undefined) return quotaFromCfs(quota, period);
    }
  }
  return undefined;
}

/** Workers for a quota: rounded up, at least 1, at most the CPU count; the CPU count without one. */
export function workersFor(quota: number | undefined, cpus: number): number {
  const all = Math.max(1, Math.floor(cpus));
  if (quota === undefined) return all;
  return Math.min(all, Math.max(1, Math.ceil(quota - 1e-9)));
}
