// `npm run bench`: throughput and added latency of the proxy's remote-write path, beside vmagent
// on the same workload and machine. It reports numbers; it never asserts a time.
//
// Rows:
//   stage decode+scan   the proxy's per-request CPU work in-process (snappy decode + protobuf scan), one core
//   direct -> sink      the load generator straight into the sink: the floor every other row sits on
//   cardinal-proxy      load generator -> proxy -> sink; the proxy answers after the sink accepted
//   vmagent             load generator -> vmagent (GOMAXPROCS=1) -> sink; vmagent answers once queued,
//                       before it forwards, so its latency row is not the same contract
// "max samples/s" is a closed loop with 8 requests in flight; "added" latency is the open-loop
// percentile at half of that rate minus the same percentile straight into the sink at that rate.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { scanWriteRequestV1 } from '../proxy/codec/scan.js';
import { snappyDecode } from '../proxy/codec/snappy.js';
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

function stageBench(w: Workload): number {
  let samples = 0;
  let index: ReturnType<typeof scanWriteRequestV1> | undefined;
  const end = performance.now() + SECONDS * 1000;
  let i = 0;
  let start = performance.now();
  // Warm up the JIT before measuring.
  for (let k = 0; k < 50; k++)
    index = scanWriteRequestV1(snappyDecode(w.bodies[k % w.bodies.length]!, 1 << 30), index);
  start = performance.now();
  while (performance.now() < end) {
    const body = w.bodies[i++ % w.bodies.length]!;
    index = scanWriteRequestV1(snappyDecode(body, 1 << 30), index);
    samples += index.totalSamples;
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
  for (let i = 0; i < 200; i++) {
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
async function measure(name: string, url: string, sinkUrl: string, w: Workload, note: string): Promise<Row> {
  const max = await closedLoop(url, w);
  const rate = max.samplesPerSec / 2 / w.samplesPerRequest;
  const through = await openLoop(url, w, rate);
  const direct = await openLoop(sinkUrl, w, rate);
  const added = (p: number) => percentile(through, p) - percentile(direct, p);
  return {
    name,
    samplesPerSec: max.samplesPerSec,
    p50: added(50),
    p99: added(99),
    note: `${note}; half load = ${Math.round(rate)} req/s${max.errors > 0 ? `; ${max.errors} errors` : ''}`,
  };
}

function fmt(n: number | undefined, digits: number): string {
  return n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits);
}

async function main(): Promise<void> {
  const w = makeWorkload({ series: SERIES, labels: LABELS, bodies: 16 });
  console.log(
    `workload: ${SERIES} series x ${LABELS} labels, 1 sample each; ${(w.decodedBytes / 1024).toFixed(0)} KiB decoded, ` +
      `${(w.bodies[0]!.length / 1024).toFixed(0)} KiB snappy per request; ${SECONDS}s per phase; node ${process.version}`,
  );
  const rows: Row[] = [];
  rows.push({
    name: 'stage decode+scan (in-process)',
    samplesPerSec: stageBench(w),
    p50: undefined,
    p99: undefined,
    note: 'one core, no HTTP',
  });

  const sink = await startSink();
  const children: ChildProcess[] = [sink.child];
  const tmp = mkdtempSync(join(tmpdir(), 'cardinal-bench-'));
  try {
    const direct = await closedLoop(sink.url, w);
    rows.push({
      name: 'direct -> sink',
      samplesPerSec: direct.samplesPerSec,
      p50: undefined,
      p99: undefined,
      note: "the load generator's ceiling",
    });

    const proxyPort = await freePort();
    children.push(
      await startProcess(
        process.execPath,
        [
          join(here, '../proxy/main.js'),
          '--listen',
          `127.0.0.1:${proxyPort}`,
          '--upstream',
          sink.url,
          '--log-level',
          'warn',
        ],
        {},
        `http://127.0.0.1:${proxyPort}/-/ready`,
      ),
    );
    rows.push(
      await measure(
        'cardinal-proxy -> sink',
        `http://127.0.0.1:${proxyPort}/api/v1/write`,
        sink.url,
        w,
        'acks after the sink accepted',
      ),
    );

    const vmagent =
      process.env.CARDINAL_VMAGENT ??
      spawnSync('sh', ['-c', 'command -v vmagent'], { encoding: 'utf8' }).stdout.trim();
    if (vmagent) {
      const vmPort = await freePort();
      children.push(
        await startProcess(
          vmagent,
          [
            `-httpListenAddr=127.0.0.1:${vmPort}`,
            `-remoteWrite.url=${sink.url}`,
            `-remoteWrite.tmpDataPath=${join(tmp, 'vmagent')}`,
            '-loggerLevel=ERROR',
          ],
          { GOMAXPROCS: '1' },
          `http://127.0.0.1:${vmPort}/health`,
        ),
      );
      rows.push(
        await measure(
          'vmagent -> sink (GOMAXPROCS=1)',
          `http://127.0.0.1:${vmPort}/api/v1/write`,
          sink.url,
          w,
          'acks once queued',
        ),
      );
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

  console.log('\n| path | max samples/s | added p50 ms | added p99 ms | note |\n|---|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.samplesPerSec === undefined ? '-' : Math.round(r.samplesPerSec).toLocaleString('en-US')} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.note} |`,
    );
  }
}

await main();
