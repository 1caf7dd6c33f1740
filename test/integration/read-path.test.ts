// The read path (--query.upstream) in front of real Prometheus 2 and 3 servers: answers through the
// proxy are byte-identical to direct answers (status, content type, encoding and body) for a table
// of queries, errors and large results included; Debian's promtool, a client no one here wrote,
// prints the same through the proxy as direct; a large answer is streamed (the proxy's memory does
// not grow with it). Then exact usage counts for a scripted sequence with Grafana's headers, their
// survival across a restart, and rule evaluations counted from a tailed query log, across rotation.

import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, renameSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  binaryPath,
  eventually,
  freePort,
  metricSum,
  type PrometheusServer,
  type ProxyProgram,
  type ScrapeTarget,
  startPrometheusServer,
  startProxy,
  startTarget,
  useCleanup,
} from '../framework/index.js';

const run = promisify(execFile);
const BIG_SERIES = 4000;

interface Answer {
  status: number;
  type: string | undefined;
  encoding: string | undefined;
  body: Buffer;
}

async function get(
  base: string,
  path: string,
  init: { method?: 'GET' | 'POST'; form?: URLSearchParams; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await request(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
      ...init.headers,
    },
    ...(init.form === undefined ? {} : { body: init.form.toString() }),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const h = (k: string) => {
    const v = res.headers[k];
    return Array.isArray(v) ? v.join(',') : v;
  };
  return { status: res.statusCode, type: h('content-type'), encoding: h('content-encoding'), body };
}

function scrapeConfig(target: ScrapeTarget) {
  return {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: 'target', static_configs: [{ targets: [target.address] }] }],
  };
}

function bigSeries() {
  const pad = 'x'.repeat(40);
  return Array.from({ length: BIG_SERIES }, (_, i) => ({
    name: 'app_big_metric',
    labels: { i: String(i), pad },
    value: i,
  }));
}

const BASE_SERIES = [
  { name: 'app_requests_total', labels: { code: '200', job: 'shop' }, value: 10 },
  { name: 'app_requests_total', labels: { code: '500', job: 'shop' }, value: 1 },
  { name: 'app_cpu_seconds_total', labels: { job: 'shop' }, value: 3 },
  { name: 'app_queue_depth', labels: { job: 'shop' }, value: 7 },
];

describe.each([2, 3] as const)('the read path in front of Prometheus %i', (version) => {
  const track = useCleanup();
  let prom: PrometheusServer;
  let proxy: ProxyProgram;
  let t0: number;

  beforeAll(async () => {
    const target = track(await startTarget({ series: [...BASE_SERIES, ...bigSeries()] }));
    prom = track(await startPrometheusServer({ version, config: () => scrapeConfig(target) }));
    proxy = track(
      await startProxy({
        upstream: `${prom.url}/api/v1/write`,
        args: (dir) => ['--query.upstream', prom.url, '--query.usage.state-file', join(dir, 'usage.json')],
      }),
    );
    await eventually(
      async () => {
        const data = (await prom.api('/api/v1/query', { query: 'count(app_big_metric)' })) as {
          result: { value: [number, string] }[];
        };
        expect(data.result[0]?.value[1]).toBe(String(BIG_SERIES));
      },
      { timeoutMs: 60_000 },
    );
    // A moment after the first scrape, soon in the past: nothing scraped later changes an answer
    // evaluated at it.
    t0 = Math.floor(Date.now() / 1000) + 1;
    await eventually(async () => expect(Date.now() / 1000).toBeGreaterThan(t0 + 3), { timeoutMs: 10_000 });
  }, 120_000);

  const table = (): [string, string, Parameters<typeof get>[2]][] => {
    const range = `start=${t0 - 30}&end=${t0}`;
    return [
      ['instant query', `/api/v1/query?query=app_requests_total&time=${t0}`, {}],
      [
        'instant query, POST form',
        '/api/v1/query',
        {
          method: 'POST',
          form: new URLSearchParams({
            query: 'sum by (code) (rate(app_requests_total[10s]))',
            time: String(t0),
          }),
        },
      ],
      ['range query', `/api/v1/query_range?query=sum(app_requests_total)&${range}&step=1`, {}],
      [
        'range query, POST form',
        '/api/v1/query_range',
        {
          method: 'POST',
          form: new URLSearchParams({
            query: 'app_cpu_seconds_total',
            start: String(t0 - 10),
            end: String(t0),
            step: '2',
          }),
        },
      ],
      [
        'bad PromQL: the upstream 400',
        `/api/v1/query?query=${encodeURIComponent('sum(rate(')}&time=${t0}`,
        {},
      ],
      ['bad parameter: the upstream 400', `/api/v1/query_range?query=up&${range}&step=0`, {}],
      ['unknown function', `/api/v1/query?query=${encodeURIComponent('nosuchfn(up)')}&time=${t0}`, {}],
      ['series', `/api/v1/series?match[]=app_requests_total&${range}`, {}],
      [
        'series, POST form',
        '/api/v1/series',
        {
          method: 'POST',
          form: new URLSearchParams([
            ['match[]', 'app_cpu_seconds_total'],
            ['match[]', '{__name__=~"app_q.*"}'],
            ['start', String(t0 - 30)],
            ['end', String(t0)],
          ]),
        },
      ],
      ['labels', `/api/v1/labels?${range}`, {}],
      ['label values', `/api/v1/label/code/values?match[]=app_requests_total&${range}`, {}],
      ['metric names', `/api/v1/label/__name__/values?${range}`, {}],
      ['exemplars', `/api/v1/query_exemplars?query=app_requests_total&${range}`, {}],
      ['metadata', '/api/v1/metadata?metric=app_requests_total', {}],
      ['build information', '/api/v1/status/buildinfo', {}],
      ['large instant answer', `/api/v1/query?query=app_big_metric&time=${t0}`, {}],
      ['large range answer', `/api/v1/query_range?query=app_big_metric&${range}&step=1`, {}],
      [
        'large answer, gzip',
        `/api/v1/query_range?query=app_big_metric&${range}&step=1`,
        { headers: { 'accept-encoding': 'gzip' } },
      ],
    ];
  };

  it('answers every request of the table exactly as the upstream does', async () => {
    const rows: string[] = [];
    for (const [name, path, init] of table()) {
      const direct = await get(prom.url, path, init);
      const through = await get(proxy.url, path, init);
      expect({ name, status: through.status, type: through.type, encoding: through.encoding }).toEqual({
        name,
        status: direct.status,
        type: direct.type,
        encoding: direct.encoding,
      });
      expect(through.body.equals(direct.body), `${name}: bodies differ`).toBe(true);
      rows.push(
        `${name}: HTTP ${direct.status}, ${direct.body.length} bytes${direct.encoding ? ` ${direct.encoding}` : ''}`,
      );
    }
    console.log(`Prometheus ${version}, byte-identical through the proxy:\n  ${rows.join('\n  ')}`);
    // The errors were the upstream's own, not the proxy's.
    const bad = await get(proxy.url, `/api/v1/query?query=${encodeURIComponent('sum(rate(')}&time=${t0}`);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body.toString())).toMatchObject({ status: 'error', errorType: 'bad_data' });
    // Federation answers the latest samples: equal once no scrape falls between the two requests.
    await eventually(async () => {
      const direct = await get(prom.url, '/federate?match[]=app_requests_total');
      const through = await get(proxy.url, '/federate?match[]=app_requests_total');
      expect(through.status).toBe(200);
      expect(through.body.toString()).toBe(direct.body.toString());
    });
  });

  it("passes the upstream's own query timeout through as it answered it", async () => {
    // A timeout of 1 ns: Prometheus 2 answers 503 (timed out in the queue or in execution, either
    // may come first), Prometheus 3 a 400; the proxy's answer is whichever the upstream gave.
    const path = `/api/v1/query?query=${encodeURIComponent('count_over_time(app_big_metric[1h])')}&timeout=0.000000001`;
    await eventually(async () => {
      const direct = await get(prom.url, path);
      const through = await get(proxy.url, path);
      expect(direct.status).toBe(version === 2 ? 503 : 400);
      expect(JSON.parse(direct.body.toString())).toMatchObject({ status: 'error' });
      expect({ status: through.status, body: through.body.toString() }).toEqual({
        status: direct.status,
        body: direct.body.toString(),
      });
    });
  });

  it('prints the same through the proxy as direct, with promtool as the client', async () => {
    const promtool = binaryPath('promtool');
    // Unix seconds: promtool 2.42 prints nothing for an RFC 3339 time with milliseconds.
    const time = String(t0);
    const start = String(t0 - 20);
    const commands = [
      ['query', 'instant', '--time', time, '@', 'sum by (code) (app_requests_total)'],
      ['query', 'range', '--start', start, '--end', time, '--step', '5s', '@', 'app_cpu_seconds_total'],
      ['query', 'series', '--match', 'app_requests_total', '--start', start, '--end', time, '@'],
      ['query', 'labels', '--start', start, '--end', time, '@', 'code'],
    ];
    for (const c of commands) {
      const at = c.indexOf('@');
      const argv = (url: string) => [...c.slice(0, at), url, ...c.slice(at + 1)];
      const direct = await run(promtool, argv(prom.url));
      const through = await run(promtool, argv(proxy.url));
      expect(direct.stdout.length).toBeGreaterThan(0);
      expect(through.stdout).toBe(direct.stdout);
    }
  });

  it('streams a large answer: the proxy holds no copy of it', async () => {
    // 4000 series x 301 steps: tens of megabytes of JSON.
    const path = `/api/v1/query_range?query=app_big_metric&start=${t0}&end=${t0 + 3}&step=0.01`;
    const rss = () => metricSum(proxy.metricsUrl, 'process_resident_memory_bytes', {});
    const before = await rss();
    const res = await request(`${proxy.url}${path}`);
    // Read one chunk, then stop reading: backpressure holds the rest in the upstream.
    const iterator = res.body[Symbol.asyncIterator]();
    const first = await iterator.next();
    let size = first.done ? 0 : (first.value as Buffer).length;
    await new Promise((r) => setTimeout(r, 1500));
    const during = await rss();
    for (let c = await iterator.next(); !c.done; c = await iterator.next())
      size += (c.value as Buffer).length;
    expect(res.statusCode).toBe(200);
    console.log(
      `Prometheus ${version}: answer of ${(size / 1e6).toFixed(1)} MB streamed; proxy RSS ${(before / 1e6).toFixed(1)} MB before, ${(during / 1e6).toFixed(1)} MB while it was held`,
    );
    expect(size).toBeGreaterThan(20e6);
    // A proxy that buffered the answer would hold at least all of it; half leaves room for what
    // else the process allocates meanwhile (a quarter failed once on the loaded machine).
    expect(during - before).toBeLessThan(size / 2);
  });
});

describe('usage of the read path: exact counts, readers, restart', () => {
  const track = useCleanup();
  let prom: PrometheusServer;
  let proxy: ProxyProgram;

  beforeAll(async () => {
    const target = track(await startTarget({ series: BASE_SERIES }));
    prom = track(await startPrometheusServer({ version: 2, config: () => scrapeConfig(target) }));
    // The names exist before the proxy starts, so its first fetch of them has them all.
    await eventually(async () => {
      const res = await fetch(`${prom.url}/api/v1/label/__name__/values`);
      const names = ((await res.json()) as { data: string[] }).data;
      expect(names).toEqual(
        expect.arrayContaining(['app_requests_total', 'app_cpu_seconds_total', 'app_queue_depth']),
      );
    });
    proxy = track(
      await startProxy({
        upstream: `${prom.url}/api/v1/write`,
        args: (dir) => [
          '--query.upstream',
          prom.url,
          '--query.usage.state-file',
          join(dir, 'usage.json'),
          '--query.names-refresh',
          '1s',
        ],
      }),
    );
  }, 60_000);

  interface UsageRow {
    metric: string;
    reads: Record<string, number>;
    lastRead: string | null;
    readers: { reader: string; reads: number; lastRead: string }[];
    known: boolean;
  }
  const usage = async () =>
    (await (await fetch(`${proxy.url}/api/v1/stats/usage?limit=100&readers=10`)).json()) as {
      metrics: UsageRow[];
      readers: { reader: string; reads: number }[];
      missing: { metric: string; reads30d: number }[];
      missingKnown: boolean;
    };
  const row = (u: Awaited<ReturnType<typeof usage>>, m: string) => u.metrics.find((r) => r.metric === m);

  it('counts each read exactly, by reader, with regex selectors and unparsed queries', async () => {
    // The proxy has fetched the query API's names: the regex below resolves against them.
    await eventually(async () => expect((await usage()).missingKnown).toBe(true));
    const grafana = {
      'user-agent': 'Grafana/10.4.1',
      'x-dashboard-uid': 'shop-overview',
      'x-panel-id': '4',
      'x-grafana-org-id': '1',
    };
    const q = (query: string) => `/api/v1/query?query=${encodeURIComponent(query)}`;
    for (let i = 0; i < 3; i++) {
      expect(
        (
          await get(proxy.url, q('sum(rate(app_requests_total[1m])) / app_requests_total'), {
            headers: grafana,
          })
        ).status,
      ).toBe(200);
    }
    for (let i = 0; i < 2; i++) {
      const form = new URLSearchParams({
        query: 'sum(app_requests_total) / sum(app_cpu_seconds_total)',
        start: String(Math.floor(Date.now() / 1000) - 60),
        end: String(Math.floor(Date.now() / 1000)),
        step: '15',
      });
      const headers = {
        'user-agent': 'Grafana/10.4.1',
        'x-rule-uid': 'high-error-rate',
        'x-grafana-org-id': '1',
      };
      expect((await get(proxy.url, '/api/v1/query_range', { method: 'POST', form, headers })).status).toBe(
        200,
      );
    }
    const curl = { 'user-agent': 'curl/8.0' };
    expect(
      (
        await get(proxy.url, '/api/v1/series?match[]=app_queue_depth&match[]=app_requests_total', {
          headers: curl,
        })
      ).status,
    ).toBe(200);
    expect((await get(proxy.url, q('count({__name__=~"app_.*_total"})'), { headers: curl })).status).toBe(
      200,
    );
    // Malformed: passed through (the upstream's 400), counted as unparsed, reads nothing.
    expect((await get(proxy.url, q('sum(rate(app_queue_depth[1m]'), { headers: curl })).status).toBe(400);
    // A metric that does not exist: read, and missing.
    expect((await get(proxy.url, q('app_typo_total'), { headers: curl })).status).toBe(200);
    // Reads no metric: label names, and a selector without a name.
    expect((await get(proxy.url, '/api/v1/labels', { headers: curl })).status).toBe(200);
    expect((await get(proxy.url, q('{job="shop"}'), { headers: curl })).status).toBe(200);

    const u = await usage();
    const dashboard = 'dashboard:shop-overview panel:4 org:1';
    const rule = 'grafana-rule:high-error-rate org:1';
    expect(row(u, 'app_requests_total')).toMatchObject({
      reads: { '1h': 7, '24h': 7, '30d': 7, total: 7 },
      known: true,
    });
    expect(new Map(row(u, 'app_requests_total')?.readers.map((r) => [r.reader, r.reads]))).toEqual(
      new Map([
        [dashboard, 3],
        [rule, 2],
        ['agent:curl/8.0', 2],
      ]),
    );
    expect(row(u, 'app_cpu_seconds_total')).toMatchObject({ reads: { total: 3 } });
    expect(row(u, 'app_queue_depth')).toMatchObject({ reads: { total: 1 } });
    expect(row(u, 'app_typo_total')).toMatchObject({ reads: { total: 1 }, known: false });
    expect(u.missing).toEqual([expect.objectContaining({ metric: 'app_typo_total', reads30d: 1 })]);
    expect(u.metrics.map((m) => m.metric).sort()).toEqual(
      ['app_cpu_seconds_total', 'app_queue_depth', 'app_requests_total', 'app_typo_total'].sort(),
    );
    expect(new Map(u.readers.map((r) => [r.reader, r.reads]))).toEqual(
      new Map([
        [dashboard, 3],
        [rule, 2],
        // series, regex, malformed, typo, labels and the nameless selector: six requests.
        ['agent:curl/8.0', 6],
      ]),
    );
    expect(await proxy.metric('cardinal_proxy_usage_expressions_total', { outcome: 'unparsed' })).toBe(1);
    expect(await proxy.metric('cardinal_proxy_usage_unnamed_selectors_total')).toBe(1);
    expect(await proxy.metric('cardinal_proxy_usage_tracked_metrics')).toBe(4);
    expect(
      await proxy.metric('cardinal_proxy_usage_top_metric_reads_24h', { metric: 'app_requests_total' }),
    ).toBe(7);
    expect(
      await proxy.metric('cardinal_proxy_query_requests_total', { endpoint: 'query', code: '400' }),
    ).toBe(1);
  });

  it('keeps counts and last-read times across a restart', async () => {
    const before = await usage();
    await proxy.stop();
    await proxy.start();
    const after = await usage();
    for (const m of before.metrics) {
      expect(row(after, m.metric)).toMatchObject({
        reads: m.reads,
        lastRead: m.lastRead,
        readers: m.readers,
      });
    }
    // Reads go on counting from there.
    expect((await get(proxy.url, '/api/v1/query?query=app_queue_depth')).status).toBe(200);
    expect(row(await usage(), 'app_queue_depth')?.reads.total).toBe(2);
  });
});

describe('the read path without a reachable upstream', () => {
  const track = useCleanup();
  let silent: Server;
  let proxy: ProxyProgram;
  let refused: ProxyProgram;

  beforeAll(async () => {
    // A peer that accepts connections and never answers.
    const sockets = new Set<import('node:net').Socket>();
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as { port: number };
    track({
      dirs: [],
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise((r) => silent.close(r));
      },
    });
    proxy = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: () => ['--query.upstream', `http://127.0.0.1:${port}`, '--query.timeout', '500ms'],
      }),
    );
    const closed = await freePort();
    refused = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: () => ['--query.upstream', `http://127.0.0.1:${closed}`],
      }),
    );
  }, 60_000);

  it('answers 504 after --query.timeout and 502 when the upstream refuses, as Prometheus API errors', async () => {
    const slow = await get(proxy.url, '/api/v1/query?query=up');
    expect(slow.status).toBe(504);
    expect(JSON.parse(slow.body.toString())).toEqual({
      status: 'error',
      errorType: 'timeout',
      error: 'the query API did not answer within 500 ms',
    });
    const down = await get(refused.url, '/api/v1/query?query=up');
    expect(down.status).toBe(502);
    expect(JSON.parse(down.body.toString())).toMatchObject({ status: 'error', errorType: 'unavailable' });
  });
});

describe.each([2, 3] as const)('rule evaluations from the query log of Prometheus %i', (version) => {
  const track = useCleanup();
  let prom: PrometheusServer;
  let proxy: ProxyProgram;
  let logFile: string;

  beforeAll(async () => {
    const target = track(await startTarget({ series: BASE_SERIES }));
    const rules = [
      'groups:',
      '  - name: shop-recording',
      '    interval: 1s',
      '    rules:',
      '      - record: job:app_requests:rate10s',
      '        expr: sum by (job) (rate(app_requests_total[10s]))',
      '  - name: shop-alerts',
      '    interval: 1s',
      '    rules:',
      '      - alert: QueueBacklog',
      '        expr: app_queue_depth > 100',
      '',
    ].join('\n');
    // The proxy starts first: a log that appears after it started is read from its start, so
    // every evaluation Prometheus logs is counted.
    logFile = join(mkdtempSync(join(tmpdir(), 'cardinal-query-log-')), 'query.log');
    proxy = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: (dir) => ['--query.log-file', logFile, '--query.usage.state-file', join(dir, 'usage.json')],
      }),
    );
    prom = track(
      await startPrometheusServer({
        version,
        files: { 'rules.yml': rules },
        config: (dir) => ({
          ...scrapeConfig(target),
          global: { scrape_interval: '1s', evaluation_interval: '1s', query_log_file: logFile },
          rule_files: [join(dir, 'rules.yml')],
        }),
      }),
    );
  }, 90_000);

  const usage = async () =>
    (await (await fetch(`${proxy.url}/api/v1/stats/usage?limit=100&readers=10`)).json()) as {
      readPath: boolean;
      metrics: { metric: string; reads: { total: number }; readers: { reader: string; reads: number }[] }[];
    };
  /** Rule-evaluation lines of `group` in `text` that read `metric`. */
  const lines = (text: string, group: string, metric: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { ruleGroup?: { name?: string }; params?: { query?: string } })
      .filter((l) => l.ruleGroup?.name === group && (l.params?.query ?? '').includes(metric)).length;

  it('counts each evaluation as a read by its rule group, across a rotation of the log', async () => {
    await eventually(async () => {
      const u = await usage();
      expect(u.readPath).toBe(false);
      expect(u.metrics.find((m) => m.metric === 'app_requests_total')?.reads.total).toBeGreaterThanOrEqual(2);
    });
    // Rotation as logrotate does it: rename, then Prometheus reopens the path on a reload.
    renameSync(logFile, `${logFile}.1`);
    prom.program.kill('SIGHUP');
    await eventually(async () => expect(readFileSync(logFile, 'utf8')).toContain('shop-recording'), {
      timeoutMs: 20_000,
    });
    await eventually(async () => {
      const n = readFileSync(logFile, 'utf8').split('\n').length;
      expect(n).toBeGreaterThan(4);
    });
    // A line the proxy cannot read is skipped, not fatal.
    appendFileSync(logFile, 'not json\n');
    await prom.stop();
    const rotated = readFileSync(`${logFile}.1`, 'utf8');
    const current = readFileSync(logFile, 'utf8');
    const want =
      lines(rotated, 'shop-recording', 'app_requests_total') +
      lines(current, 'shop-recording', 'app_requests_total');
    const wantAlerts =
      lines(rotated, 'shop-alerts', 'app_queue_depth') + lines(current, 'shop-alerts', 'app_queue_depth');
    await eventually(async () => {
      const u = await usage();
      const requests = u.metrics.find((m) => m.metric === 'app_requests_total');
      const queue = u.metrics.find((m) => m.metric === 'app_queue_depth');
      expect(requests?.reads.total).toBe(want);
      expect(requests?.readers).toEqual([
        expect.objectContaining({ reader: 'rule-group:rules.yml/shop-recording', reads: want }),
      ]);
      expect(queue?.readers).toEqual([
        expect.objectContaining({ reader: 'rule-group:rules.yml/shop-alerts', reads: wantAlerts }),
      ]);
      // The unreadable line may be the last one in the file, read after every evaluation was.
      expect(await proxy.metric('cardinal_proxy_usage_query_log_lines_total', { outcome: 'invalid' })).toBe(
        1,
      );
    });
    expect(want).toBeGreaterThan(2);
  });
});
