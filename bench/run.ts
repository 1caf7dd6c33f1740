// `npm run bench`: throughput and added latency of the proxy's remote-write path, beside vmagent
// on the same workload and machine. It reports numbers; it never asserts a time.
//
// Rows:
//   stage decode+scan   the proxy's per-request CPU work in-process (snappy decode + protobuf scan), one core;
//                       once more with the door check (proxy/codec/check.ts) at the default --ingest.* flags
//   stage ... policies  the same plus the realistic policy set (bench/policies.ts) run by the proxy's
//                       engine, statistics and re-encoding, in-process after warm-up, one core
//   direct -> sink      the load generator straight into the sink: the floor every other row sits on
//   cardinal-proxy      load generator -> proxy -> sink; the proxy answers after the sink accepted;
//                       once without policies, once with the realistic policy set (--config), and
//                       once with --queue.dir: then it answers once the data is fsync'd on disk,
//                       and an end-to-end row says how fast it delivers what it acknowledged
//   limit store         the proxy with one perMetric limit, without and with --limits.store (a
//                       redis-server on loopback): steady state (every series known) and with 10 %
//                       of each request's series new; the store's bytes per series from INFO memory
//                       and round trips per request from the proxy's metrics
//   --workers 1 / 2     the proxy with one and two worker processes, plain and with the policy set,
//                       beside vmagent on all cores: samples/s, the CPUs the proxy used, samples per
//                       CPU-second of its own and RSS per worker (the load generator shares the cores)
//   vmagent             load generator -> vmagent (GOMAXPROCS=1) -> sink; vmagent answers once queued,
//                       before it forwards, so its latency row is not the same contract; once plain,
//                       once with the same relabel rules and -remoteWrite.maxHourlySeries
// Memory rows come from a child process (bench/memory.ts, node --expose-gc).
// "max samples/s" is a closed loop with 8 requests in flight; "added" latency is the open-loop
// percentile at half of that rate minus the same percentile straight into the sink at that rate.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { type CheckOptions, checkRequest } from '../proxy/codec/check.js';
import { scanWriteRequestV1 } from '../proxy/codec/scan.js';
import { snappyDecodeReusing } from '../proxy/codec/snappy-into.js';
import { parseProxyOptions } from '../proxy/config/flags.js';
import type { MemoryReport } from './memory.js';
import { policyPath } from './pipeline.js';
import {
  limitOnlySpecs,
  policySpecs,
  VMAGENT_DIFFERENCES,
  writePolicyDir,
  writeVmagentRelabel,
} from './policies.js';
import { readPathBench, recorderBench } from './read-path.js';
import { makeWorkload, type Workload } from './workload.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const SERIES = Number(process.env.BENCH_SERIES ?? 2000);
const LABELS = Number(process.env.BENCH_LABELS ?? 10);
const CONCURRENCY = 8;
const here = fileURLToPath(new URL('.', import.meta.url));

const headers = {
  'content-type': 'application/x-protobuf',
  'content-encoding': 'snappy',
  'x-prometheus-remote-write-version': '0.1.0',
};

interface Row {
  name: string;
  samplesPerSec: number | undefined;
  p50: number | undefined;
  p99: number | undefined;
  note: string;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Decode + scan in-process; with `checks`, the door check too, as the proxy's defaults set it. */
function stageBench(w: Workload, checks?: Omit<CheckOptions, 'nowMs'>): number {
  let samples = 0;
  let index: ReturnType<typeof scanWriteRequestV1> | undefined;
  // Into one buffer reused from request to request, as the proxy decodes.
  let buffer: Buffer | undefined;
  const one = (body: Uint8Array): void => {
    const r = snappyDecodeReusing(body, 1 << 30, buffer);
    buffer = r.buffer;
    const decoded = r.decoded;
    index = scanWriteRequestV1(decoded, index);
    if (checks !== undefined && checkRequest(decoded, index, { ...checks, nowMs: Date.now() }).first)
      throw new Error('the door check refused the bench workload');
  };
  // Warm up the JIT before measuring.
  for (let k = 0; k < 50; k++) one(w.bodies[k % w.bodies.length]!);
  let i = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  while (performance.now() < end) {
    one(w.bodies[i++ % w.bodies.length]!);
    samples += index!.totalSamples;
  }
  return samples / ((performance.now() - start) / 1000);
}

/**
 * The request path with policies, in-process: decode, scan, the engine over the realistic policy
 * set, statistics and, as most series are rewritten, re-encoding and snappy compression.
 */
function policyStageBench(w: Workload, configDir: string): number {
  const path = policyPath(configDir);
  // Warm-up: fills the verdict cache and lets the JIT settle before measuring steady state.
  const warm = performance.now() + Math.min(2000, (SECONDS * 1000) / 4);
  for (let k = 0; performance.now() < warm; k++) path.run(w.bodies[k % w.bodies.length]!, Date.now());
  let samples = 0;
  let i = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  while (performance.now() < end) {
    path.run(w.bodies[i++ % w.bodies.length]!, Date.now());
    samples += w.samplesPerRequest;
  }
  return samples / ((performance.now() - start) / 1000);
}

async function closedLoop(url: string, w: Workload): Promise<{ samplesPerSec: number; errors: number }> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: CONCURRENCY });
  let done = 0;
  let errors = 0;
  let i = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const res = await pool.request({
          path: u.pathname,
          method: 'POST',
          headers,
          body: w.bodies[i++ % w.bodies.length]!,
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) done++;
        else errors++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  return { samplesPerSec: (done * w.samplesPerRequest) / elapsed, errors };
}

async function openLoop(url: string, w: Workload, requestsPerSec: number): Promise<number[]> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 64 });
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const interval = 1000 / requestsPerSec;
  const start = performance.now();
  for (let n = 0; ; n++) {
    const at = start + n * interval;
    if (at > start + SECONDS * 1000) break;
    const wait = at - performance.now();
    if (wait > 1) await sleep(wait);
    const sent = performance.now();
    pending.push(
      pool
        .request({ path: u.pathname, method: 'POST', headers, body: w.bodies[n % w.bodies.length]! })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode < 300) latencies.push(performance.now() - sent);
        }),
    );
  }
  await Promise.all(pending);
  await pool.close();
  return latencies.sort((a, b) => a - b);
}

async function startProcess(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  readyUrl: string,
): Promise<ChildProcess> {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  // Up to a minute: a loaded 2-core machine starts a proxy with two workers slowly.
  for (let i = 0; i < 1200; i++) {
    // A program that rejects its flags or configuration exits; say so rather than wait.
    if (child.exitCode !== null)
      throw new Error(`${cmd} exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(readyUrl);
      if (res.ok) return child;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`${cmd} did not become ready at ${readyUrl}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

async function startSink(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [join(here, 'sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve) =>
    child.stdout?.once('data', (d: Buffer) => resolve(d.toString().trim())),
  );
  return { child, url: `http://127.0.0.1:${port}/api/v1/write` };
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/**
 * Max throughput in a closed loop, then latency in an open loop at half that rate, through `url`
 * and, at the same rate, straight into the sink; "added" latency is the difference.
 */
async function measure(
  name: string,
  url: string,
  sinkUrl: string,
  w: Workload,
  note: string,
  metricsUrl?: string,
): Promise<Row> {
  const max = await closedLoop(url, w);
  const rate = max.samplesPerSec / 2 / w.samplesPerRequest;
  // With the proxy's /metrics: where the tail comes from (reading it resets the lag histogram).
  const before = metricsUrl === undefined ? '' : await (await fetch(metricsUrl)).text();
  const through = await openLoop(url, w, rate);
  const after = metricsUrl === undefined ? '' : await (await fetch(metricsUrl)).text();
  const direct = await openLoop(sinkUrl, w, rate);
  const added = (p: number) => percentile(through, p) - percentile(direct, p);
  return {
    name,
    samplesPerSec: max.samplesPerSec,
    p50: added(50),
    p99: added(99),
    note:
      `${note}; half load = ${Math.round(rate)} req/s${max.errors > 0 ? `; ${max.errors} errors` : ''}` +
      (metricsUrl === undefined ? '' : `; at half load ${tailCauses(before, after, SECONDS)}`),
  };
}

/**
 * What the proxy's process says of the open loop: event-loop delay (prom-client's histogram,
 * reset at each read of /metrics) and garbage collection, from two reads around it.
 */
function tailCauses(before: string, after: string, seconds: number): string {
  const ms = (name: string) => (sumOf(after, name) * 1000).toFixed(1);
  const gc = (kind: string, part: 'sum' | 'count') => {
    const metric = `nodejs_gc_duration_seconds_${part}{kind="${kind}"}`;
    return sumOf(after, metric) - sumOf(before, metric);
  };
  const kinds = ['minor', 'major', 'incremental', 'weakcb'];
  const gcSeconds = kinds.reduce((a, k) => a + gc(k, 'sum'), 0);
  const pauses = kinds.reduce((a, k) => a + gc(k, 'count'), 0);
  // prom-client's GC histogram has buckets at 1, 10 and 100 ms: pauses above 10 ms are the tail's.
  const within = (le: string) =>
    kinds.reduce((a, k) => {
      const metric = `nodejs_gc_duration_seconds_bucket{le="${le}",kind="${k}"}`;
      return a + sumOf(after, metric) - sumOf(before, metric);
    }, 0);
  return (
    `event-loop timer p50 ${ms('nodejs_eventloop_lag_p50_seconds')} / p99 ${ms('nodejs_eventloop_lag_p99_seconds')} / max ${ms('nodejs_eventloop_lag_max_seconds')} ms (a 10 ms timer: 10 is no delay), ` +
    `GC ${((100 * gcSeconds) / seconds).toFixed(1)} % of the time in ${pauses} pauses (mean ${((1000 * gcSeconds) / Math.max(1, pauses)).toFixed(2)} ms; ` +
    `${gc('major', 'count')} mark-compact; ${pauses - within('0.01')} over 10 ms, ${pauses - within('0.1')} over 100 ms)`
  );
}

/** Lines of a Prometheus text exposition whose name matches `name` and whose value is not 0. */
async function nonZeroMetrics(url: string, name: RegExp): Promise<string[]> {
  const text = await (await fetch(url)).text();
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#') && name.test(l.split(/[{ ]/)[0] ?? '') && !/ 0$/.test(l));
}

/** The proxy's policy counters, summed by reason and action: what the policy set did. */
async function policyCounters(metricsUrl: string): Promise<string> {
  const sums = new Map<string, number>();
  for (const line of await nonZeroMetrics(metricsUrl, /^cardinal_proxy_policy_samples_total$/)) {
    const reason = /reason="([^"]*)"/.exec(line)?.[1];
    const action = /action="([^"]*)"/.exec(line)?.[1];
    const key = `${reason} ${action}`;
    sums.set(key, (sums.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return [...sums].map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join('; ') || 'none';
}

/**
 * The queue end to end: a closed loop as in `closedLoop`, then the time until everything it
 * acknowledged reached the sink. Acknowledging can outpace delivering; this row shows the rate
 * that can be kept up.
 */
async function queueEndToEnd(base: string, w: Workload): Promise<Row> {
  const metric = async (name: string): Promise<number> =>
    sumOf(await (await fetch(`${base}/metrics`)).text(), name);
  const start = performance.now();
  const load = await closedLoop(`${base}/api/v1/write`, w);
  const loadSeconds = (performance.now() - start) / 1000;
  // Bounded, so that a queue that never drains ends the row instead of the run.
  const deadline = performance.now() + 300_000;
  for (;;) {
    const appended = await metric('cardinal_proxy_queue_appended_samples_total');
    if (appended === (await metric('cardinal_proxy_queue_sent_samples_total'))) break;
    if (performance.now() > deadline) throw new Error('the queue did not drain within 300 s');
    await sleep(20);
  }
  const seconds = (performance.now() - start) / 1000;
  return {
    name: 'cardinal-proxy with durable queue, end to end',
    samplesPerSec: (load.samplesPerSec * loadSeconds) / seconds,
    p50: undefined,
    p99: undefined,
    note: `closed loop for ${SECONDS}s, then until the sink received everything acknowledged (${(seconds - loadSeconds).toFixed(1)}s more)`,
  };
}

/** The sum of a metric over all its label sets in an exposition. */
function sumOf(text: string, name: string): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    if (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** What the queue did: records per fsync, and incoming requests per request sent upstream. */
async function queueCounters(metricsUrl: string): Promise<string> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string): number => sumOf(text, name);
  const fsyncs = value('cardinal_proxy_queue_fsync_duration_seconds_count');
  const records = value('cardinal_proxy_queue_fsync_records_total');
  const sent = value('cardinal_proxy_queue_sent_requests_total');
  const fsyncSeconds = value('cardinal_proxy_queue_fsync_duration_seconds_sum');
  return (
    `${records.toLocaleString('en-US')} records in ${fsyncs.toLocaleString('en-US')} fsyncs ` +
    `(${(records / Math.max(1, fsyncs)).toFixed(1)} per fsync, mean ${((fsyncSeconds / Math.max(1, fsyncs)) * 1000).toFixed(2)} ms); ` +
    `${sent.toLocaleString('en-US')} requests upstream (${(value('cardinal_proxy_queue_sent_records_total') / Math.max(1, sent)).toFixed(1)} records each)`
  );
}

function runMemoryBench(): Promise<MemoryReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', join(here, 'memory.js')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as MemoryReport);
      else reject(new Error(`bench/memory.js exited with code ${code}`));
    });
  });
}

function fmt(n: number | undefined, digits: number): string {
  return n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits);
}

async function startProxy(sinkUrl: string, extra: string[]): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await startProcess(
    process.execPath,
    [
      join(here, '../proxy/main.js'),
      '--listen',
      `127.0.0.1:${port}`,
      '--upstream',
      sinkUrl,
      '--log-level',
      'warn',
      // One process unless a row asks for more (the default follows the CPUs).
      '--workers',
      '1',
      ...extra,
    ],
    {},
    `${base}/-/ready`,
  );
  return { child, base };
}

async function startVmagent(
  vmagent: string,
  sinkUrl: string,
  dataPath: string,
  extra: string[],
  gomaxprocs = '1',
): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await startProcess(
    vmagent,
    [
      `-httpListenAddr=127.0.0.1:${port}`,
      `-remoteWrite.url=${sinkUrl}`,
      `-remoteWrite.tmpDataPath=${dataPath}`,
      '-loggerLevel=ERROR',
      ...extra,
    ],
    { GOMAXPROCS: gomaxprocs },
    `${base}/health`,
  );
  return { child, base };
}

function printRows(rows: readonly Row[], checks: readonly string[]): void {
  console.log('\n| path | max samples/s | added p50 ms | added p99 ms | note |\n|---|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.samplesPerSec === undefined ? '-' : Math.round(r.samplesPerSec).toLocaleString('en-US')} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.note} |`,
    );
  }
  if (checks.length > 0) console.log('');
  for (const c of checks) console.log(c);
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/**
 * The limit store rows: one perMetric limit high enough to admit everything, the proxy without
 * and with --limits.store on a redis-server started here, at steady state and with 10 % new series.
 */
async function limitStoreRows(o: {
  sinkUrl: string;
  tmp: string;
  rows: Row[];
  checks: string[];
  children: ChildProcess[];
  stop: (child: ChildProcess) => Promise<void>;
}): Promise<void> {
  const redisServer =
    process.env.CARDINAL_REDIS ??
    spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (!redisServer) {
    o.rows.push({
      name: 'limit store',
      samplesPerSec: undefined,
      p50: undefined,
      p99: undefined,
      note: 'redis-server not installed (bash hack/deps.sh)',
    });
    return;
  }
  const { Redis } = await import('ioredis');
  const port = await freePort();
  const redis = spawn(
    redisServer,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  o.children.push(redis);
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 100 });
  client.on('error', () => {});
  for (let i = 0; i < 100 && client.status !== 'ready'; i++) {
    await client.connect().catch(() => sleep(100));
  }
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
  const config = writePolicyDir(join(o.tmp, 'limit-only'), limitOnlySpecs(10_000_000));
  const steady = makeWorkload({ series: SERIES, labels: LABELS, bodies: 16 });
  const fresh = makeWorkload({ series: SERIES, labels: LABELS, bodies: 400, newFraction: 0.1 });
  // A generous timeout: a loaded machine must not turn the store rows into fallback rows.
  const store = [
    '--limits.store',
    `redis://127.0.0.1:${port}`,
    '--limits.store.prefix',
    'bench',
    '--limits.store.timeout',
    '1s',
  ];
  try {
    const memBefore = await usedMemory();
    for (const [label, w, note] of [
      ['steady state', steady, 'every series known after the first requests'],
      [
        '10% new series',
        fresh,
        `10 % of each request's series new for the first ${fresh.bodies.length} requests, then known`,
      ],
    ] as const) {
      for (const withStore of [false, true]) {
        const proxy = await startProxy(o.sinkUrl, ['--config', config, ...(withStore ? store : [])]);
        o.children.push(proxy.child);
        const name = `cardinal-proxy, perMetric limit${withStore ? ', limit store on loopback' : ''}, ${label}`;
        o.rows.push(await measure(name, `${proxy.base}/api/v1/write`, o.sinkUrl, w, note));
        if (withStore) {
          const text = await (await fetch(`${proxy.base}/metrics`)).text();
          const requests = sumOf(text, 'cardinal_proxy_requests_total');
          const admits =
            /cardinal_proxy_limits_store_round_trips_total\{op="admit"\} (\S+)/.exec(text)?.[1] ?? '0';
          const refreshes =
            /cardinal_proxy_limits_store_round_trips_total\{op="refresh"\} (\S+)/.exec(text)?.[1] ?? '0';
          const fallbacks = sumOf(text, 'cardinal_proxy_limits_store_errors_total');
          o.checks.push(
            `${name}: ${(Number(admits) / Math.max(1, requests)).toFixed(3)} admission round trips per request ` +
              `(${admits} of ${requests} requests), ${refreshes} background refreshes, ${fallbacks} store errors`,
          );
        }
        await o.stop(proxy.child);
      }
    }
    let members = 0;
    for (const key of await client.keys('*')) members += await client.zcard(key);
    const bytes = ((await usedMemory()) - memBefore) / Math.max(1, members);
    o.rows.push({
      name: 'limit store, bytes per tracked series',
      samplesPerSec: undefined,
      p50: undefined,
      p99: undefined,
      note: `${bytes.toFixed(1)} B (INFO memory used_memory growth / ${members.toLocaleString('en-US')} members in sorted sets)`,
    });
  } finally {
    client.disconnect();
    await o.stop(redis);
  }
}

/** CPU seconds a process and its children (a proxy's workers) have used so far. */
function cpuSeconds(pid: number): number {
  const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
  const of = (p: number): number => {
    let own = 0;
    try {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      own = (Number(f[11]) + Number(f[12])) / ticks;
    } catch {
      return 0;
    }
    return own + childrenOf(p).reduce((sum, c) => sum + of(c), 0);
  };
  return of(pid);
}

function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text === '' ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** Resident bytes of each process: a proxy's workers (its children), or the process itself. */
function rssPerProcess(pid: number): number[] {
  const rss = (p: number) => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) * 1024;
  };
  const kids = childrenOf(pid);
  return (kids.length === 0 ? [pid] : kids).map(rss);
}

/**
 * `--workers 1` and `--workers 2` on this machine, pass-through and with the policy set, beside
 * vmagent on all cores (GOMAXPROCS unset: every CPU) from the same run. The load generator
 * shares the cores, so each row also says how much CPU the proxy (or vmagent) used and how many
 * samples it moved per CPU-second of its own.
 */
async function workerRows(o: {
  sinkUrl: string;
  tmp: string;
  configDir: string;
  vmRelabel: string;
  w: Workload;
  children: ChildProcess[];
  stop: (child: ChildProcess) => Promise<void>;
}): Promise<void> {
  const cores = availableParallelism();
  const out: string[] = [];
  const row = async (name: string, started: { child: ChildProcess; base: string }, url: string) => {
    o.children.push(started.child);
    const pid = started.child.pid!;
    await closedLoop(url, o.w); // warm-up
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const r = await closedLoop(url, o.w);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(pid) - cpu0;
    const rss = rssPerProcess(pid);
    out.push(
      `| ${name} | ${fmt(r.samplesPerSec / 1000, 0)} k | ${fmt(cpu / seconds, 2)} | ${fmt((r.samplesPerSec * seconds) / cpu / 1000, 0)} k | ${rss.map((b) => mib(b)).join(', ')} |${r.errors > 0 ? ` ${r.errors} errors` : ''}`,
    );
    await o.stop(started.child);
  };
  for (const workers of [1, 2]) {
    const plain = await startProxy(o.sinkUrl, ['--workers', String(workers)]);
    await row(`cardinal-proxy --workers ${workers}`, plain, `${plain.base}/api/v1/write`);
    const governed = await startProxy(o.sinkUrl, ['--workers', String(workers), '--config', o.configDir]);
    await row(`cardinal-proxy --workers ${workers}, policies`, governed, `${governed.base}/api/v1/write`);
  }
  const vmagent =
    process.env.CARDINAL_VMAGENT ??
    spawnSync('sh', ['-c', 'command -v vmagent'], { encoding: 'utf8' }).stdout.trim();
  if (vmagent) {
    const all = String(cores);
    const vm = await startVmagent(vmagent, o.sinkUrl, join(o.tmp, 'vmagent-all'), [], all);
    await row(`vmagent, GOMAXPROCS=${all}`, vm, `${vm.base}/api/v1/write`);
    const vmr = await startVmagent(
      vmagent,
      o.sinkUrl,
      join(o.tmp, 'vmagent-all-relabel'),
      [`-remoteWrite.relabelConfig=${o.vmRelabel}`, '-remoteWrite.maxHourlySeries=1000000'],
      all,
    );
    await row(`vmagent, GOMAXPROCS=${all}, relabel + maxHourlySeries`, vmr, `${vmr.base}/api/v1/write`);
  }
  console.log(
    `\n| ${cores} cores, load generator on the same cores | samples/s | CPUs used | samples per CPU-second | RSS per process |\n|---|---:|---:|---:|---|`,
  );
  for (const l of out) console.log(l);
}

async function main(): Promise<void> {
  const w = makeWorkload({ series: SERIES, labels: LABELS, bodies: 16 });
  // The limit sits well above what the workload needs, so it tracks every series and drops none.
  const maxSeriesPerMetric = Math.max(1000, 10 * w.maxSeriesPerMetric);
  console.log(
    `workload: ${SERIES} series x ${LABELS} labels, 1 sample each (${w.distinctSeries} distinct label sets, ` +
      `at most ${w.maxSeriesPerMetric} per metric); ${(w.decodedBytes / 1024).toFixed(0)} KiB decoded, ` +
      `${(w.bodies[0]!.length / 1024).toFixed(0)} KiB snappy per request; ${SECONDS}s per phase; node ${process.version}`,
  );
  const tmp = mkdtempSync(join(tmpdir(), 'cardinal-bench-'));
  const configDir = writePolicyDir(join(tmp, 'policies'), policySpecs(maxSeriesPerMetric));
  const vmRelabel = writeVmagentRelabel(join(tmp, 'vmagent-relabel.yaml'));
  const checks: string[] = [];
  const rows: Row[] = [];
  rows.push({
    name: 'stage decode+scan (in-process)',
    samplesPerSec: stageBench(w),
    p50: undefined,
    p99: undefined,
    note: 'one core, no HTTP',
  });
  const ingest = parseProxyOptions([], {});
  if (ingest !== 'help' && ingest !== 'version' && ingest.ingest !== undefined) {
    rows.push({
      name: 'stage decode+scan+door check (in-process)',
      samplesPerSec: stageBench(w, ingest.ingest),
      p50: undefined,
      p99: undefined,
      note: `one core, no HTTP; the default --ingest.* checks (names ${ingest.ingest.names})`,
    });
  }
  rows.push({
    name: 'stage decode+scan+policies (in-process)',
    samplesPerSec: policyStageBench(w, configDir),
    p50: undefined,
    p99: undefined,
    note: 'one core, no HTTP; steady state after warm-up; includes re-encoding',
  });
  const scanRate = rows[0]?.samplesPerSec;
  const policyRate = rows[rows.length - 1]?.samplesPerSec;
  if (scanRate !== undefined && policyRate !== undefined)
    checks.push(`in-process policy path / decode+scan: ${(policyRate / scanRate).toFixed(3)}`);
  if (process.env.BENCH_ONLY === 'in-process') {
    // Only the in-process rows (BENCH_ONLY=in-process npm run bench): no child process, no HTTP.
    rmSync(tmp, { recursive: true, force: true });
    printRows(rows, checks);
    return;
  }

  const sink = await startSink();
  const children: ChildProcess[] = [sink.child];
  const stop = async (child: ChildProcess) => {
    await stopChild(child);
    children.splice(children.indexOf(child), 1);
  };
  /** The proxy with the policy set: its row and its policy counters; the caller stops it. */
  const governedRow = async () => {
    const governed = await startProxy(sink.url, ['--config', configDir]);
    children.push(governed.child);
    rows.push(
      await measure(
        'cardinal-proxy with policies -> sink',
        `${governed.base}/api/v1/write`,
        sink.url,
        w,
        `10 relabel rules, standards, perMetric maxSeries ${maxSeriesPerMetric}`,
      ),
    );
    checks.push(
      `cardinal-proxy with policies, policy counters: ${await policyCounters(`${governed.base}/metrics`)}`,
    );
    return governed;
  };
  try {
    if (process.env.BENCH_ONLY === 'policies') {
      // Only the policy rows (BENCH_ONLY=policies npm run bench): the in-process rows above and the
      // proxy with the policy set, for comparing two builds quickly.
      await governedRow();
      printRows(rows, checks);
      return;
    }
    if (process.env.BENCH_ONLY === 'workers') {
      // Only the --workers rows (BENCH_ONLY=workers npm run bench), with vmagent on all cores.
      await workerRows({ sinkUrl: sink.url, tmp, configDir, vmRelabel, w, children, stop });
      return;
    }
    if (process.env.BENCH_ONLY === 'limits') {
      // Only the limit store rows (BENCH_ONLY=limits npm run bench).
      await limitStoreRows({ sinkUrl: sink.url, tmp, rows, checks, children, stop });
      printRows(rows, checks);
      return;
    }
    const direct = await closedLoop(sink.url, w);
    rows.push({
      name: 'direct -> sink',
      samplesPerSec: direct.samplesPerSec,
      p50: undefined,
      p99: undefined,
      note: "the load generator's ceiling",
    });

    const vmagent =
      process.env.CARDINAL_VMAGENT ??
      spawnSync('sh', ['-c', 'command -v vmagent'], { encoding: 'utf8' }).stdout.trim();
    /** vmagent without relabeling, the pass-through row's peer. */
    const vmagentRow = async () => {
      const vm = await startVmagent(vmagent, sink.url, join(tmp, 'vmagent'), []);
      children.push(vm.child);
      rows.push(
        await measure(
          'vmagent -> sink (GOMAXPROCS=1)',
          `${vm.base}/api/v1/write`,
          sink.url,
          w,
          'acks once queued',
        ),
      );
      await stop(vm.child);
    };
    const plain = await startProxy(sink.url, []);
    children.push(plain.child);
    rows.push(
      await measure(
        'cardinal-proxy -> sink',
        `${plain.base}/api/v1/write`,
        sink.url,
        w,
        'acks after the sink accepted',
        `${plain.base}/metrics`,
      ),
    );
    await stop(plain.child);
    if (process.env.BENCH_ONLY === 'pass-through') {
      // Only the in-process rows, the proxy without policies and vmagent beside it.
      if (vmagent) await vmagentRow();
      printRows(rows, checks);
      return;
    }

    // The durable queue: the proxy answers once the request is fsync'd (group commit) and drains
    // to the sink in batches. The directory is on the same disk as the rest of the run's files.
    const queued = await startProxy(sink.url, ['--queue.dir', join(tmp, 'queue')]);
    children.push(queued.child);
    rows.push(await queueEndToEnd(queued.base, w));
    rows.push(
      await measure(
        'cardinal-proxy with durable queue -> sink',
        `${queued.base}/api/v1/write`,
        sink.url,
        w,
        'acks after fdatasync (group commit), drains in batches',
      ),
    );
    checks.push(`cardinal-proxy with durable queue: ${await queueCounters(`${queued.base}/metrics`)}`);
    await stop(queued.child);

    // Starting the proxy with the policy set is also what checks that it validates.
    const governed = await governedRow();
    await stop(governed.child);

    await limitStoreRows({ sinkUrl: sink.url, tmp, rows, checks, children, stop });
    await workerRows({ sinkUrl: sink.url, tmp, configDir, vmRelabel, w, children, stop });

    if (vmagent) {
      await vmagentRow();

      // The proxy's limit tracks at most --limits.max-tracked-series (1,000,000) series.
      const maxHourly = 1_000_000;
      const vmr = await startVmagent(vmagent, sink.url, join(tmp, 'vmagent-relabel'), [
        `-remoteWrite.relabelConfig=${vmRelabel}`,
        `-remoteWrite.maxHourlySeries=${maxHourly}`,
      ]);
      children.push(vmr.child);
      rows.push(
        await measure(
          'vmagent with equivalent relabel + maxHourlySeries (GOMAXPROCS=1)',
          `${vmr.base}/api/v1/write`,
          sink.url,
          w,
          `acks once queued; maxHourlySeries ${maxHourly}; ${VMAGENT_DIFFERENCES}`,
        ),
      );
      const vmCounters = await nonZeroMetrics(`${vmr.base}/metrics`, /hourly_series_limit|relabel/);
      checks.push(
        `vmagent with relabel, non-zero limit and relabel metrics: ${vmCounters.join('; ') || 'none'}`,
      );
      await stop(vmr.child);
    } else {
      rows.push({
        name: 'vmagent',
        samplesPerSec: undefined,
        p50: undefined,
        p99: undefined,
        note: 'not installed (bash hack/deps.sh)',
      });
    }
  } finally {
    await Promise.all(children.reverse().map(stopChild));
    rmSync(tmp, { recursive: true, force: true });
  }

  const memory = await runMemoryBench();
  const reads = await readPathBench(Math.max(10, SECONDS * 10));
  const recorder = recorderBench(Math.max(1, SECONDS / 2));

  printRows(rows, []);
  console.log('\n| memory | value | note |\n|---|---:|---|');
  console.log(
    `| bytes per tracked series, SeriesTracker | ${memory.trackerBytesPerSeries.toFixed(2)} | capacity 1,000,000, filled with 1,000,000 series |`,
  );
  console.log(
    `| bytes per tracked series, policy path | ${memory.pathBytesPerSeries.toFixed(2)} | engine with one perMetric limit, default flags (limit tracker, top-offender trackers, verdict cache of 200,000 label sets); 1,000,000 series sent, ${memory.pathAdmitted.toLocaleString('en-US')} forwarded |`,
  );
  console.log(
    `| bytes per tracked series, policy path, --cache.max-label-sets 1000 | ${memory.pathSmallCacheBytesPerSeries.toFixed(2)} | the same with the verdict cache nearly off: the difference is the cache |`,
  );
  console.log(
    `| heap under a cardinality bomb, before | ${mib(memory.bombBefore)} | policy path built, perMetric maxSeries ${memory.bombMaxSeriesPerMetric.toLocaleString('en-US')} over 50 metrics; heapUsed + arrayBuffers |`,
  );
  console.log(
    `| heap under a cardinality bomb, after 1M series | ${mib(memory.bombAfter1M)} | 2,000 new series a request |`,
  );
  console.log(
    `| heap under a cardinality bomb, after 5M series | ${mib(memory.bombAfter5M)} | ${memory.bombForwarded.toLocaleString('en-US')} forwarded, the rest dropped by the limit |`,
  );
  console.log(
    `| bytes per tracked metric, usage recorder | ${memory.usageBytesPerMetric.toFixed(0)} | 100,000 metric names read, 5 readers each (--query.usage.readers-per-metric) |`,
  );
  console.log(
    '\n| read path (Prometheus 2) | answer bytes | direct p50 ms | added p50 ms | added p99 ms |\n|---|---:|---:|---:|---:|',
  );
  for (const r of reads) {
    console.log(
      `| ${r.name} | ${r.bytes.toLocaleString('en-US')} | ${fmt(r.directP50, 2)} | ${fmt(r.addedP50, 2)} | ${fmt(r.addedP99, 2)} |`,
    );
  }
  console.log('\n| usage recorder (in-process, one core) | queries/s |\n|---|---:|');
  for (const r of recorder) console.log(`| ${r.name} | ${Math.round(r.perSecond).toLocaleString('en-US')} |`);
  console.log('');
  for (const c of checks) console.log(c);
}

await main();
