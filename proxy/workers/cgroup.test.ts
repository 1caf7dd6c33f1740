import { describe, expect, it } from 'vitest';
import { quotaFromCfs, quotaFromCpuMax, type ReadText, readCpuQuota, workersFor } from './cgroup.js';

const files =
  (map: Record<string, string>): ReadText =>
  (path) =>
    map[path];

// This machine's layout: cgroup v1 with its own cpu hierarchy, plus the empty v2 line.
const V1_CGROUP = '9:name=systemd:/\n4:memory:/app\n1:cpu:/\n0::/\n';
const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
].join('\n');

describe('the CPU quota of the cgroup', () => {
  it('reads cgroup v2 cpu.max below the mount, with the path below the root', () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/c1\n',
      '/proc/self/mountinfo': '29 23 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
      '/sys/fs/cgroup/pod1/c1/cpu.max': '150000 100000\n',
    });
    expect(readCpuQuota(read)).toBe(1.5);
  });

  it('says none for cgroup v2 "max"', () => {
    const read = files({
      '/proc/self/cgroup': '0::/\n',
      '/proc/self/mountinfo': '29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
      '/sys/fs/cgroup/cpu.max': 'max 100000\n',
    });
    expect(readCpuQuota(read)).toBeUndefined();
  });

  it('falls back to cgroup v1 when the v2 hierarchy has no cpu controller (hybrid)', () => {
    const read = files({
      '/proc/self/cgroup': V1_CGROUP,
      '/proc/self/mountinfo': `${V1_MOUNTS}\n36 31 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`,
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '250000\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    expect(readCpuQuota(read)).toBe(2.5);
  });

  it('finds the v1 cpu controller mounted together with cpuacct, at a nested path', () => {
    const read = files({
      '/proc/self/cgroup': '3:cpu,cpuacct:/docker/abc\n',
      '/proc/self/mountinfo': '40 31 0:35 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '50000',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000',
    });
    expect(readCpuQuota(read)).toBe(0.5);
  });

  it('says none for v1 quota -1, and for a machine without cgroup files', () => {
    const read = files({
      '/proc/self/cgroup': V1_CGROUP,
      '/proc/self/mountinfo': V1_MOUNTS,
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    expect(readCpuQuota(read)).toBeUndefined();
    expect(readCpuQuota(files({}))).toBeUndefined();
  });

  it('parses the quota files', () => {
    expect(quotaFromCpuMax('200000 100000')).toBe(2);
    expect(quotaFromCpuMax('max 100000')).toBeUndefined();
    expect(quotaFromCpuMax('garbage')).toBeUndefined();
    expect(quotaFromCfs('-1', '100000')).toBeUndefined();
    expect(quotaFromCfs('75000', '50000')).toBe(1.5);
  });
});

describe('workers for a quota', () => {
  it('rounds up, at least 1, at most the CPU count; all CPUs without a quota', () => {
    expect(workersFor(1.5, 8)).toBe(2);
    expect(workersFor(2, 8)).toBe(2);
    expect(workersFor(0.25, 8)).toBe(1);
    expect(workersFor(16, 4)).toBe(4);
    expect(workersFor(undefined, 2)).toBe(2);
    expect(workersFor(undefined, 0)).toBe(1);
  });
});
