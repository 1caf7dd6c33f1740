// Rows of `npm run bench` for the read path (--query.upstream): the latency the proxy adds to a
// query against a real Prometheus (Debian's prometheus 2, or CARDINAL_PROMETHEUS2), for a small and
// a large answer, requests one at a time, alternating direct and through the proxy; and the usage
// recorder's throughput in-process (PromQL parsed and recorded; recorded only), one core. Reports
// numbers, asserts none.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { addExpression, emptyReads } from '../proxy/query/extract.js';
import { UsageRecorder } from '../proxy/query/recorder.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const BIG_SERIES = 2000;

export interface ReadRow {
  readonly name: string;
  readonly bytes: number;
  readonly directP50: number;
  readonly addedP50: number;
  readonly addedP99: number;
}

export interface RecorderRow {
  readonly name: string;
  readonly perSecond: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

async function ready(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`${url}: the program exited with code ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not become ready`);
}

async function port(): Promise<number> {
  const { createServer: net } = await import('node:net');
  const s = net();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function timed(url: string): Promise<{ ms: number; bytes: number }> {
  const t = process.hrtime.bigint();
  const res = await request(url);
  let bytes = 0;
  for await (const c of res.body) bytes += (c as Buffer).length;
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, bytes };
}

export async function readPathBench(rounds: number): Promise<ReadRow[]> {
  const tmp = mkdtempSync(join(tmpdir(), 'cardinal-bench-read-'));
  const children: ChildProcess[] = [];
  const pad = 'x'.repeat(40);
  let page = '# TYPE app_small gauge\napp_small{job="a"} 1\n# TYPE app_big gauge\n';
  for (let i = 0; i < BIG_SERIES; i++) page += `app_big{i="${i}",pad="${pad}"} ${i}\n`;
  const target = createServer((_req, res) => res.end(page));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  try {
    const promPort = await port();
    writeFileSync(
      join(tmp, 'prometheus.yml'),
      `global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: t\n    static_configs: [{targets: ['127.0.0.1:${(target.address() as AddressInfo).port}']}]\n`,
    );
    const prom = spawn(
      process.env.CARDINAL_PROMETHEUS2 ?? 'prometheus',
      [
        `--config.file=${join(tmp, 'prometheus.yml')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        `--storage.tsdb.path=${join(tmp, 'data')}`,
      ],
      { stdio: 'ignore' },
    );
    children.push(prom);
    const direct = `http://127.0.0.1:${promPort}`;
    await ready(`${direct}/-/ready`, prom);
    const proxyPort = await port();
    const proxy = spawn(
      process.execPath,
      [
        join(here, '../proxy/main.js'),
        '--listen',
        `127.0.0.1:${proxyPort}`,
        '--upstream',
        `${direct}/api/v1/write`,
        '--query.upstream',
        direct,
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    children.push(proxy);
    const through = `http://127.0.0.1:${proxyPort}`;
    await ready(`${through}/-/ready`, proxy);
    // Ten seconds of data, so the range answer is large.
    for (;;) {
      const res = await fetch(`${direct}/api/v1/query?query=count(count_over_time(app_big[20s])%20>=%2010)`);
      const n = ((await res.json()) as { data?: { result?: { value: [number, string] }[] } }).data
        ?.result?.[0]?.value[1];
      if (n === String(BIG_SERIES)) break;
      await sleep(500);
    }
    const t = Math.floor(Date.now() / 1000) - 1;
    const cases = [
      {
        name: 'small answer (instant query, 1 series)',
        path: `/api/v1/query?query=app_small&time=${t}`,
        n: rounds * 20,
      },
      {
        name: `large answer (range query, ${BIG_SERIES} series x 11 steps)`,
        path: `/api/v1/query_range?query=app_big&start=${t - 10}&end=${t}&step=1`,
        n: rounds * 2,
      },
    ];
    const rows: ReadRow[] = [];
    for (const c of cases) {
      for (let i = 0; i < 5; i++) {
        await timed(direct + c.path);
        await timed(through + c.path);
      }
      const d: number[] = [];
      const p: number[] = [];
      let bytes = 0;
      for (let i = 0; i < c.n; i++) {
        d.push((await timed(direct + c.path)).ms);
        const r = await timed(through + c.path);
        p.push(r.ms);
        bytes = r.bytes;
      }
      d.sort((a, b) => a - b);
      p.sort((a, b) => a - b);
      rows.push({
        name: c.name,
        bytes,
        directP50: percentile(d, 0.5),
        addedP50: percentile(p, 0.5) - percentile(d, 0.5),
        addedP99: percentile(p, 0.99) - percentile(d, 0.99),
      });
    }
    return rows;
  } finally {
    for (const c of children.reverse()) {
      c.kill('SIGTERM');
      await new Promise((r) => (c.exitCode !== null ? r(undefined) : c.once('exit', r)));
    }
    await new Promise((r) => target.close(r));
    rmSync(tmp, { recursive: true, force: true });
  }
}

const QUERIES = [
  'sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))',
  'histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))',
  'up == 0',
  'node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes',
  'topk(10, sum by (namespace, pod) (rate(container_cpu_usage_seconds_total[5m])))',
  'count({__name__=~"node_network_.*"})',
  'increase(kube_pod_container_status_restarts_total[1h]) > 3',
  'label_replace(rate(process_cpu_seconds_total[1m]), "host", "$1", "instance", "(.*):.*")',
];

/** Queries per second the recorder takes, one core: with PromQL parsing, and without. */
export function recorderBench(seconds: number): RecorderRow[] {
  // 2,000 known names, 20 of which the regex query matches (node_exporter has about that many).
  const known = Array.from({ length: 2000 }, (_, i) =>
    i < 20 ? `node_network_metric_${i}` : `app_metric_${i}`,
  );
  const recorder = new UsageRecorder(
    { maxMetrics: 100_000, maxReaders: 1000, readersPerMetric: 5 },
    Date.now(),
    {
      generation: () => 1,
      names: () => known,
    },
  );
  const readers = Array.from({ length: 50 }, (_, i) => `dashboard:d${i} panel:${i % 7} org:1`);
  const parsed = QUERIES.map((q) => {
    const r = emptyReads();
    addExpression(r, q);
    return r;
  });
  const run = (parse: boolean) => {
    const until = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < until) {
      for (let i = 0; i < 100; i++, n++) {
        let r = parsed[n % QUERIES.length]!;
        if (parse) {
          r = emptyReads();
          addExpression(r, QUERIES[n % QUERIES.length]!);
        }
        recorder.record(r.names, r.patterns, readers[n % readers.length]!, Date.now());
      }
    }
    return n / seconds;
  };
  return [
    { name: 'usage recorder, PromQL parsed and recorded (mixed dashboard queries)', perSecond: run(true) },
    { name: 'usage recorder, recorded only (names known)', perSecond: run(false) },
  ];
}
