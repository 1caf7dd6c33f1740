// Preloaded into a proxy by bench/latency-ab.ts (node --import): records every GC pause and every
// event-loop gap over 12 ms (a 5 ms timer that came late), with wall-clock times, and writes them
// to $BENCH_PROBE_OUT as JSON when the process exits.
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const out = process.env.BENCH_PROBE_OUT;
const origin = performance.timeOrigin;
/** [start ms since the epoch, duration ms, kind (perf_hooks constants: 1 minor, 4 major, 8 incremental)] */
const gcs: [number, number, number][] = [];
/** [start ms since the epoch, length ms] */
const gaps: [number, number][] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcs.push([
      origin + e.startTime,
      e.duration,
      (e as unknown as { detail?: { kind: number } }).detail?.kind ?? 0,
    ]);
  }
}).observe({ entryTypes: ['gc'] });
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  if (now - last > 12) gaps.push([origin + last, now - last]);
  last = now;
}, 5).unref();
process.on('exit', () => {
  if (out !== undefined) writeFileSync(out, JSON.stringify({ gcs, gaps }));
});
