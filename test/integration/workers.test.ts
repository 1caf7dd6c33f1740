// `--workers 2`: one proxy binary, two worker processes behind its one listener, exactly as
// correct as one process. vmagent scrapes a target and sends through haproxy (keep-alive off, so
// every request is a new connection and the cluster hands them to both workers) to the proxy,
// which forwards to a real Prometheus 2 with its durable queue on. The test shows:
// - a perMetric limit exact across both workers: a bomb of 5,000 series under maxSeries 500
//   ends with exactly 500 admitted (the workers decide through the primary's store);
// - /metrics sums the workers: requests sent on new connections are all counted, spread over both;
// - the statistics are the whole proxy's, from either worker: the bomb's series, which reach both
//   workers, are counted once, and the series of requests spread over the workers all count
//   (top offenders, their gauges, the unused report), and so do reads served by either (usage);
// - a reload swaps both workers: one configuration hash everywhere, and the new limit in force;
// - a worker killed with SIGKILL is started again and counted, and every sample the sender had
//   acknowledged reaches Prometheus (the killed worker's queue is replayed by its successor);
// - SIGTERM stops the primary and both workers.
// Each worker drains its own queue, so after a restart the replayed samples can be older than
// what the other worker delivered meanwhile: the receiver accepts out-of-order samples (README
// "Workers").

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import { expectReceivedExactly } from '../framework/assert.js';
import {
  eventually,
  parseExposition,
  startLoadBalancer,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';

const OVERFLOW = '__cardinality_overflow__';
const policy = (maxSeries: number) => `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: bombs
  namespace: platform
spec:
  limits:
    window: 10m
    perMetric:
      - metric: cardinal_bomb.*
        maxSeries: ${maxSeries}
        onExceed: overflow
        overflowLabel: id
---
apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: usage
  namespace: platform
spec:
  unused:
    action: report
    metrics: [cardinal_bomb]
`;

const bomb = (name: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ name, labels: { id: String(i) }, value: i }));

/** POSTs on a connection of its own, so the cluster may hand it to either worker. */
function post(url: string, body: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/x-protobuf',
          'content-encoding': 'snappy',
          'content-length': body.length,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** GETs JSON on a connection of its own. */
function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve(JSON.parse(text) as T));
    })
      .on('error', reject)
      .end();
  });
}

/** GETs text on a connection of its own. */
function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
}

/** The cells of each table row of a page, from `from` (a heading) to the next h2 heading. */
function pageRows(page: string, from: string): string[][] {
  const start = page.indexOf(from);
  if (start < 0) throw new Error(`the page has no ${from}`);
  const next = page.indexOf('<h2', start + from.length);
  const part = page.slice(start, next < 0 ? undefined : next);
  return [...part.matchAll(/<tr>(.*?)<\/tr>/g)]
    .map((r) => [...r[1]!.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => c[1]!))
    .filter((cells) => cells.length > 0);
}

type Workers = { answered: number; of: number };
type TopReport = {
  metrics: { metric: string; activeSeries: number }[];
  labels: { metric: string; label: string; distinctValues: number }[];
  workers: Workers;
};
type UnusedAnswer = {
  policies: { policy: string; metrics: { metric: string; activeSeries: number }[] }[];
  workers: Workers;
};
type UsageAnswer = {
  metrics: { metric: string; reads: { '30d': number }; ingest: { activeSeries: number } | null }[];
  workers: Workers;
};

/** The worker processes of the proxy (its children running the proxy's main). */
function workerPids(primary: number): number[] {
  const children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim();
  return children
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('proxy/main.js');
      } catch {
        return false;
      }
    });
}

describe('--workers 2', () => {
  const track = useCleanup();

  it('keeps limits, /metrics, reloads and the durable queue as one process does', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2, outOfOrderWindow: '30m' }));
    let configPath = '';
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => {
          configPath = join(dir, 'policies.yaml');
          writeFileSync(configPath, policy(500));
          return [
            '--workers',
            '2',
            '--config',
            configPath,
            '--queue.dir',
            join(dir, 'queue'),
            '--replica-name',
            'proxy-0',
            '--query.upstream',
            receiver.url,
            '--log-level',
            'info',
          ];
        },
      }),
    );
    const metrics = async () => parseExposition(await (await fetch(proxy.metricsUrl)).text());
    const sum = async (name: string, labels: Record<string, string> = {}) =>
      (await metrics())
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((a, s) => a + s.value, 0);
    const count = async (selector: string) =>
      (await receiver.query(`count(last_over_time(${selector}[10m]))`))[0]?.value ?? 0;

    expect(await sum('cardinal_proxy_workers')).toBe(2);
    const rss = (await metrics()).filter((s) => s.name === 'cardinal_proxy_worker_resident_memory_bytes');
    expect(rss.map((s) => s.labels.worker).sort()).toEqual(['0', '1']);
    for (const s of rss) expect(s.value).toBeGreaterThan(0);

    // /metrics sums both workers: 40 requests of 3 samples each, every one on a new connection.
    const before = await sum('cardinal_proxy_received_total', { kind: 'samples' });
    const beforeRequests = await sum('cardinal_proxy_requests_total', { code: '204' });
    const now = Date.now();
    for (let i = 0; i < 40; i++) {
      const body = snappyEncode(
        encodeWriteRequestV1({
          timeseries: [0, 1, 2].map((j) => ({
            labels: [
              { name: '__name__', value: 'cardinal_test_direct' },
              { name: 'n', value: String(i * 3 + j) },
            ],
            samples: [{ value: j, timestamp: now }],
            exemplars: [],
            histograms: [],
          })),
          metadata: [],
        }),
      );
      expect(await post(proxy.writeUrl, body)).toBe(204);
    }
    expect((await sum('cardinal_proxy_received_total', { kind: 'samples' })) - before).toBe(120);
    expect((await sum('cardinal_proxy_requests_total', { code: '204' })) - beforeRequests).toBe(40);
    const perWorker = (await metrics()).filter((s) => s.name === 'cardinal_proxy_worker_requests_total');
    expect(perWorker).toHaveLength(2);
    for (const s of perWorker) expect(s.value).toBeGreaterThan(0);
    await eventually(async () => expect(await count('cardinal_test_direct')).toBe(120), {
      timeoutMs: 60_000,
    });

    // A real sender through a load balancer that opens a connection per request.
    const lb = track(await startLoadBalancer([proxy.url]));
    const target = track(await startTarget({ sequence: { name: 'cardinal_test_vm_seq_total' } }));
    const vmagent = track(
      await startVmagent({
        remoteWriteUrl: `${lb.url}/api/v1/write`,
        scrapeTargets: [target.address],
        scrapeInterval: '2s',
        extraArgs: ['-remoteWrite.queues=1'],
      }),
    );
    await eventually(async () => expect(await count('cardinal_test_vm_seq_total')).toBe(1), {
      timeoutMs: 60_000,
    });

    // The limit, exact across the workers: 500 of the bomb's 5,000, and its overflow series.
    const errorsBefore = await sum('cardinal_proxy_limits_store_errors_total', { op: 'admit' });
    target.setSeries(bomb('cardinal_bomb', 5000));
    const scrapes = target.scrapes;
    await eventually(() => expect(target.scrapes).toBeGreaterThanOrEqual(scrapes + 4), { timeoutMs: 60_000 });
    await eventually(
      async () => expect(await count(`cardinal_bomb{id!="${OVERFLOW}"}`)).toBeGreaterThanOrEqual(500),
      { timeoutMs: 60_000 },
    );
    const later = target.scrapes;
    await eventually(() => expect(target.scrapes).toBeGreaterThanOrEqual(later + 2), { timeoutMs: 60_000 });
    // The primary answered every admission (otherwise a worker would have used its share, 250).
    expect(await sum('cardinal_proxy_limits_store_errors_total', { op: 'admit' })).toBe(errorsBefore);
    expect(await count(`cardinal_bomb{id!="${OVERFLOW}"}`)).toBe(500);
    expect(await count(`cardinal_bomb{id="${OVERFLOW}"}`)).toBe(1);
    const limits = await getJson<{ policies: { limits: { current: number; max: number }[] }[] }>(
      `${proxy.url}/api/v1/stats/limits`,
    );
    expect(limits.policies[0]?.limits[0]).toMatchObject({ current: 500, max: 500 });
    // A metric one request brought to one worker is listed by either (the workers' lists merged).
    const solo = snappyEncode(
      encodeWriteRequestV1({
        timeseries: [0, 1, 2].map((j) => ({
          labels: [
            { name: '__name__', value: 'cardinal_bomb_solo' },
            { name: 'id', value: String(j) },
          ],
          samples: [{ value: j, timestamp: Date.now() }],
          exemplars: [],
          histograms: [],
        })),
        metadata: [],
      }),
    );
    expect(await post(proxy.writeUrl, solo)).toBe(204);
    for (let i = 0; i < 6; i++) {
      const each = await getJson<{
        policies: { limits: { metric?: string; current: number }[] }[];
        workers: Workers;
      }>(`${proxy.url}/api/v1/stats/limits`);
      expect(each.workers).toEqual({ answered: 2, of: 2 });
      expect(each.policies[0]?.limits.find((l) => l.metric === 'cardinal_bomb_solo')?.current).toBe(3);
    }

    // The statistics of the whole proxy, whichever worker answers. Every scrape reaches one worker
    // and holds all the bomb's series, so both workers forwarded the same 500 admitted ones (a sum
    // would say 1000; the overflow series is an aggregate, which the statistics do not track, in
    // one process neither); the 40 direct requests were spread, each with 3 series of its own (the
    // largest worker's count would be below 120). Each answer is asked for on a new connection.
    const workersBoth = { answered: 2, of: 2 };
    const active = (r: TopReport, metric: string) => r.metrics.find((m) => m.metric === metric)?.activeSeries;
    const distinct = (r: TopReport, metric: string, label: string) =>
      r.labels.find((l) => l.metric === metric && l.label === label)?.distinctValues;
    for (let i = 0; i < 6; i++) {
      const top = await getJson<TopReport>(`${proxy.url}/api/v1/stats/top-offenders?limit=1000`);
      expect(top.workers).toEqual(workersBoth);
      expect(active(top, 'cardinal_bomb')).toBe(500);
      expect(distinct(top, 'cardinal_bomb', 'id')).toBe(500);
      expect(active(top, 'cardinal_test_direct')).toBe(120);
      expect(distinct(top, 'cardinal_test_direct', 'n')).toBe(120);
    }
    // The gauges, from the same merge.
    const top = await getJson<TopReport>(`${proxy.url}/api/v1/stats/top-offenders?limit=1000`);
    const gauges = await metrics();
    const gauge = (name: string, labels: Record<string, string> = {}) =>
      gauges
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .map((s) => s.value);
    expect(gauge('cardinal_proxy_top_metric_active_series', { metric: 'cardinal_bomb' })).toEqual([500]);
    expect(gauge('cardinal_proxy_top_metric_active_series', { metric: 'cardinal_test_direct' })).toEqual([
      120,
    ]);
    expect(
      gauge('cardinal_proxy_top_label_distinct_values', { metric: 'cardinal_bomb', label: 'id' }),
    ).toEqual([500]);
    expect(gauge('cardinal_proxy_active_series')).toEqual([
      top.metrics.reduce((n, m) => n + m.activeSeries, 0),
    ]);
    // The unused report: the direct series are read by nothing, the bomb is listed as read.
    for (let i = 0; i < 4; i++) {
      const unused = await getJson<UnusedAnswer>(`${proxy.url}/api/v1/stats/unused?limit=100`);
      expect(unused.workers).toEqual(workersBoth);
      const p = unused.policies.find((x) => x.policy === 'platform/usage');
      expect(p?.metrics.find((m) => m.metric === 'cardinal_test_direct')?.activeSeries).toBe(120);
      expect(p?.metrics.find((m) => m.metric === 'cardinal_bomb')).toBeUndefined();
    }
    // Reads through the read path, each on a new connection, so both workers serve some: the usage
    // report counts them all, and joins the whole proxy's ingest.
    for (let i = 0; i < 10; i++) {
      const res = await getJson<{ status: string }>(
        `${proxy.url}/api/v1/query?query=${encodeURIComponent('count(cardinal_test_direct)')}`,
      );
      expect(res.status).toBe('success');
    }
    // The primary keeps a merge for 1 s, and the usage gauges of the /metrics above made one.
    await eventually(async () => {
      const usage = await getJson<UsageAnswer>(`${proxy.url}/api/v1/stats/usage?limit=1000`);
      expect(usage.metrics.find((m) => m.metric === 'cardinal_test_direct')?.reads['30d']).toBe(10);
    });
    for (let i = 0; i < 4; i++) {
      const usage = await getJson<UsageAnswer>(`${proxy.url}/api/v1/stats/usage?limit=1000`);
      expect(usage.workers).toEqual(workersBoth);
      const row = usage.metrics.find((m) => m.metric === 'cardinal_test_direct');
      expect(row?.reads['30d']).toBe(10);
      expect(row?.ingest?.activeSeries).toBe(120);
      expect(usage.metrics.find((m) => m.metric === 'cardinal_bomb')?.ingest?.activeSeries).toBe(500);
    }

    // The usage gauges are the whole proxy's, not summed over the workers: both tracked the one
    // metric read (a sum would say 2 tracked metrics and 2 x their reads).
    const usageGauges = await metrics();
    const usageGauge = (name: string, labels: Record<string, string> = {}) =>
      usageGauges
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .map((s) => s.value);
    expect(usageGauge('cardinal_proxy_usage_tracked_metrics')).toEqual([1]);
    expect(
      usageGauge('cardinal_proxy_usage_top_metric_reads_24h', { metric: 'cardinal_test_direct' }),
    ).toEqual([10]);
    expect(usageGauge('cardinal_proxy_usage_tracked_readers')).toEqual([1]);

    // The pages, from either worker, show the whole proxy's counters (between two /metrics taken
    // before and after: one worker's alone would be below the first), queues and limits.
    const bombsRules = async () =>
      (await metrics())
        .filter(
          (x) => x.name === 'cardinal_proxy_policy_samples_total' && x.labels.policy === 'platform/bombs',
        )
        .reduce((a, x) => a + x.value, 0);
    const attempts = () => sum('cardinal_proxy_forward_attempts_total');
    const status = await getJson<{ queues: { remote_write: { maxBytes: number } } }>(
      `${proxy.url}/api/v1/status/queue`,
    );
    for (let i = 0; i < 4; i++) {
      const [rulesBefore, attemptsBefore] = [await bombsRules(), await attempts()];
      const policiesPage = await getText(`${proxy.url}/policies`);
      const overview = await getText(`${proxy.url}/`);
      const [rulesAfter, attemptsAfter] = [await bombsRules(), await attempts()];
      const bombs = pageRows(policiesPage, '<h2 id="platform/bombs">');
      const ruleSamples = bombs.filter((r) => r.length === 5).reduce((a, r) => a + Number(r[3]), 0);
      expect(ruleSamples).toBeGreaterThanOrEqual(rulesBefore);
      expect(ruleSamples).toBeLessThanOrEqual(rulesAfter);
      expect(rulesBefore).toBeGreaterThan(0);
      // The limit's fullness: the store's count of the bomb's series, at its limit.
      expect(bombs.find((r) => r.length === 6)).toEqual([
        'limits.perMetric[0]: cardinal_bomb.*',
        'cardinal_bomb',
        '500',
        '500',
        '100%',
        '1',
      ]);
      const pageAttempts = pageRows(overview, '<h2>Upstream attempts</h2>').reduce(
        (a, r) => a + Number(r[1]),
        0,
      );
      expect(pageAttempts).toBeGreaterThanOrEqual(attemptsBefore);
      expect(pageAttempts).toBeLessThanOrEqual(attemptsAfter);
      // Both workers' queues: the room of both (one worker's is half).
      const queueRow = pageRows(overview, '<h2>Queues</h2>').find((r) => r[0] === 'remote_write');
      expect(Number(queueRow?.[2])).toBe(status.queues.remote_write.maxBytes);
    }

    // A reload swaps both workers: one hash in every answer and in /metrics, the new limit in force.
    const oldHash = (await getJson<{ hash: string }>(`${proxy.url}/api/v1/status/config`)).hash;
    writeFileSync(configPath, policy(800));
    const reloaded = (await (await fetch(`${proxy.url}/-/reload`, { method: 'POST' })).json()) as {
      hash: string;
      lastError: unknown;
    };
    expect(reloaded.lastError).toBeNull();
    expect(reloaded.hash).not.toBe(oldHash);
    for (let i = 0; i < 10; i++) {
      expect((await getJson<{ hash: string }>(`${proxy.url}/api/v1/status/config`)).hash).toBe(reloaded.hash);
    }
    const info = (await metrics()).filter((s) => s.name === 'cardinal_proxy_config_info');
    expect(info.map((s) => s.labels.hash)).toEqual([reloaded.hash]);
    await eventually(async () => expect(await count(`cardinal_bomb{id!="${OVERFLOW}"}`)).toBe(800), {
      timeoutMs: 90_000,
    });

    // A worker killed mid-flow: started again, counted, and nothing acknowledged is lost.
    target.setSeries([]);
    const primary = proxy.program.pid!;
    const [victim] = workerPids(primary);
    expect(workerPids(primary)).toHaveLength(2);
    process.kill(victim!, 'SIGKILL');
    await eventually(
      async () => {
        expect(workerPids(primary)).toHaveLength(2);
        expect(workerPids(primary)).not.toContain(victim);
        expect(await sum('cardinal_proxy_worker_restarts_total')).toBe(1);
        expect(
          (await metrics()).filter((s) => s.name === 'cardinal_proxy_worker_resident_memory_bytes'),
        ).toHaveLength(2);
      },
      { timeoutMs: 60_000 },
    );
    const afterRestart = target.scrapes;
    await eventually(() => expect(target.scrapes).toBeGreaterThanOrEqual(afterRestart + 3), {
      timeoutMs: 60_000,
    });
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served, 90_000);
    await eventually(
      async () =>
        expect(await sum('cardinal_proxy_queue_oldest_age_seconds', { queue: 'remote_write' })).toBe(0),
      { timeoutMs: 60_000 },
    );

    // SIGTERM: the primary stops both workers and ends by itself, with code 0.
    await vmagent.close();
    const workers = workerPids(primary);
    await proxy.stop({ graceMs: 60_000 });
    expect(proxy.program.exitDescription()).toBe('exit code 0');
    for (const pid of workers) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});
