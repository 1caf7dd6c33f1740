import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const gcModule = fileURLToPath(new URL('./gc.ts', import.meta.url));

// A child process allocates 240 MB of dead 600 KB buffers, as requests do, and counts its garbage
// collections by kind (perf_hooks 'gc' entries: 1 minor, 4 major).
const script = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
const { tuneGarbageCollection } = await import(${JSON.stringify(gcModule)});
const set = tuneGarbageCollection(process.execArgv);
const kinds = { minor: 0, major: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) kinds.major++;
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) kinds.minor++;
  }
}).observe({ entryTypes: ['gc'] });
let keep = [];
for (let i = 0; i < 400; i++) {
  const b = new Uint8Array(600_000);
  b[i] = 1;
  keep.push(b);
  if (keep.length > 4) keep.shift();
  await new Promise((r) => setImmediate(r));
}
await new Promise((r) => setTimeout(r, 50));
process.stdout.write(JSON.stringify({ set, ...kinds }));
`;

function run(nodeArgs: string[]): { set: boolean; minor: number; major: number } {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`child exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { set: boolean; minor: number; major: number };
}

describe('tuneGarbageCollection', () => {
  it('lets scavenges reclaim short-lived buffers: a few mark-compacts at most', () => {
    const r = run([]);
    expect(r.set).toBe(true);
    expect(r.minor).toBeGreaterThan(0);
    expect(r.major).toBeLessThanOrEqual(2);
  });

  it('leaves the flag alone when node was started with it switched off, and V8 then runs mark-compacts', () => {
    const r = run(['--no-external-memory-accounted-in-global-limit']);
    expect(r.set).toBe(false);
    expect(r.major).toBeGreaterThan(2);
  });
});
