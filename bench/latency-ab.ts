// Interleaved A/B of the pass-through latency row at one fixed rate, for comparing builds and node
// flags on a noisy machine: `node dist/bench/latency-ab.js A=/path/to/dist/proxy/main.js
// 'B=/other/dist/proxy/main.js --max-semi-space-size=64' ...` (words after the path are node
// flags). Each round starts every variant in turn (the order reversed every other round), sends
// BENCH_RATE requests/s (default 120) for BENCH_SECONDS (default 5) after BENCH_WARMUP s (default 2;
// give 15 or more: the JIT is not warm after 2 s at low rates, and V8 sizes its young generation
// during the first seconds, which decides whether the run sees mark-compacts at all), then
// the same straight into the sink, and prints the added p50/p99, the proxy's GC pauses and
// event-loop gaps (bench/probe.ts), its CPU per request and its RSS high-water mark; then the
// medians over BENCH_ROUNDS (default 3). BENCH_CHILD_LOG=FILE appends the proxies' stdout to FILE
// (for node flags such as --trace-gc-nvp). It reports numbers and asserts none.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { makeWorkload } from './workload.js';

const RATE = Number(process.env.BENCH_RATE ?? 120);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2);
const LOG = process.env.BENCH_CHILD_LOG === undefined ? 'ignore' : openSync(process.env.BENCH_CHILD_LOG, 'a');
const here = fileURLToPath(new URL('.', import.meta.url));
const headers = {
  'content-type': 'application/x-protobuf',
  'content-encoding': 'snappy',
  'x-prometheus-remote-write-version': '0.1.0',
};
const w = makeWorkload({ series: 2000, labels: 10, bodies: 16 });

const variants = process.argv.slice(2).map((arg) => {
  const eq = arg.indexOf('=');
  if (eq < 1) throw new Error(`"${arg}": give each variant as NAME=PATH/TO/proxy/main.js [node flags]`);
  const [main, ...node] = arg.slice(eq + 1).split(/\s+/);
  return { name: arg.slice(0, eq), main: main!, node };
});
if (variants.length === 0) throw new Error('name at least one variant: NAME=PATH/TO/proxy/main.js');

const at = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
const median = (xs: number[]) =>
  at(
    [...xs].sort((a, b) => a - b),
    50,
  );

async function openLoop(url: string, seconds: number): Promise<number[]> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 64 });
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let n = 0; start + (n * 1000) / RATE <= start + seconds * 1000; n++) {
    const wait = start + (n * 1000) / RATE - performance.now();
    if (wait > 1) await sleep(wait);
    const sent = performance.now();
    const body = w.bodies[n % w.bodies.length]!;
    pending.push(
      pool.request({ path: u.pathname, method: 'POST', headers, body }).then(async (res) => {
        await res.body.dump();
        if (res.statusCode < 300) latencies.push(performance.now() - sent);
      }),
    );
  }
  await Promise.all(pending);
  await pool.close();
  return latencies.sort((a, b) => a - b);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

const stop = (c: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (c.exitCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });

/** CPU milliseconds (user + system) a process has used. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

const sink = spawn(process.execPath, [join(here, 'sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
const sinkPort = await new Promise<string>((r) =>
  sink.stdout?.once('data', (d: Buffer) => r(d.toString().trim())),
);
const sinkUrl = `http://127.0.0.1:${sinkPort}/api/v1/write`;
type Result = Record<
  'p50' | 'p99' | 'pauses' | 'majors' | 'gcPct' | 'gcMax' | 'gapMax' | 'cpu' | 'hwm',
  number
>;
const results = new Map<string, Result[]>(variants.map((v) => [v.name, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
      const port = await freePort();
      const probeOut = join(here, `.probe-${process.pid}-${round}-${v.name}.json`);
      const child = spawn(
        process.execPath,
        [
          ...v.node,
          '--import',
          join(here, 'probe.js'),
          v.main,
          '--listen',
          `127.0.0.1:${port}`,
          '--upstream',
          sinkUrl,
          '--log-level',
          'warn',
          '--workers',
          '1',
        ],
        {
          env: { ...process.env, BENCH_PROBE_OUT: probeOut },
          // BENCH_CHILD_LOG: the proxies' stdout (node --trace-gc, say) appended to that file.
          stdio: ['ignore', LOG, 'inherit'],
        },
      );
      const base = `http://127.0.0.1:${port}`;
      for (let i = 0; ; i++) {
        if (child.exitCode !== null || i > 1200) throw new Error(`${v.name} did not start`);
        if (
          await fetch(`${base}/-/ready`).then(
            (r) => r.ok,
            () => false,
          )
        )
          break;
        await sleep(50);
      }
      await openLoop(`${base}/api/v1/write`, WARMUP);
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
      const cpu0 = cpuMs(child.pid!);
      const t0 = Date.now();
      const through = await openLoop(`${base}/api/v1/write`, SECONDS);
      const t1 = Date.now();
      const cpu = cpuMs(child.pid!) - cpu0;
      const direct = await openLoop(sinkUrl, SECONDS);
      const hwm =
        Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024;
      await stop(child);
      const probe = JSON.parse(readFileSync(probeOut, 'utf8')) as {
        gcs: [number, number, number][];
        gaps: [number, number][];
      };
      rmSync(probeOut);
      const gcs = probe.gcs.filter((g) => g[0] >= t0 && g[0] <= t1);
      const gaps = probe.gaps.filter((g) => g[0] >= t0 && g[0] <= t1);
      const gcMs = gcs.reduce((a, g) => a + g[1], 0);
      const r: Result = {
        p50: at(through, 50) - at(direct, 50),
        p99: at(through, 99) - at(direct, 99),
        pauses: gcs.length,
        majors: gcs.filter((g) => g[2] === 4).length,
        gcPct: (100 * gcMs) / (t1 - t0),
        gcMax: Math.max(0, ...gcs.map((g) => g[1])),
        gapMax: Math.max(0, ...gaps.map((g) => g[1])),
        cpu: cpu / Math.max(1, through.length),
        hwm,
      };
      results.get(v.name)!.push(r);
      console.log(
        `round ${round} ${v.name}: load ${load}, added p50 ${r.p50.toFixed(2)} / p99 ${r.p99.toFixed(2)} ms (direct p99 ${at(direct, 99).toFixed(2)}); ` +
          `GC ${r.gcPct.toFixed(1)} % in ${r.pauses} pauses (${r.majors} mark-compact, max ${r.gcMax.toFixed(1)} ms); ` +
          `${gaps.length} event-loop gaps over 12 ms (max ${r.gapMax.toFixed(1)}, ${gaps.filter((g) => gcs.some((c) => c[0] < g[0] + g[1] && c[0] + c[1] > g[0])).length} with GC); ` +
          `CPU ${r.cpu.toFixed(2)} ms a request; RSS high-water ${r.hwm.toFixed(0)} MiB`,
      );
    }
  }
} finally {
  await stop(sink);
}
console.log(`\nmedians over ${ROUNDS} rounds at ${RATE} req/s:`);
for (const [name, rs] of results) {
  const m = (k: keyof Result) => median(rs.map((r) => r[k]));
  console.log(
    `${name}: added p50 ${m('p50').toFixed(2)} / p99 ${m('p99').toFixed(2)} ms; GC ${m('gcPct').toFixed(1)} % in ${m('pauses')} pauses ` +
      `(${m('majors')} mark-compact, max ${m('gcMax').toFixed(1)} ms); event-loop gap max ${m('gapMax').toFixed(1)} ms; CPU ${m('cpu').toFixed(2)} ms a request; RSS ${m('hwm').toFixed(0)} MiB`,
  );
}
