import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TopDrop, TopOffendersReport } from '../../policy/reports.js';
import type { ProxyEndpoint } from './endpoints.js';
import {
  type PollAllOptions,
  type PollOptions,
  type ProxyPoll,
  ProxyPoller,
  parseConfigStatus,
  parseUnusedReport,
  pollAll,
  pollProxy,
  toEndpointPoll,
  toProxyReport,
} from './poll.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface FakeProxy extends ProxyEndpoint {
  /** The request paths seen, with their queries. */
  readonly requests: string[];
  handle: Handler;
  close(): Promise<void>;
}

const open: FakeProxy[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});

/** An HTTP server on loopback that answers as `handle` says; `handle` may be replaced between polls. */
async function fakeProxy(handle: Handler): Promise<FakeProxy> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    proxy.handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const proxy: FakeProxy = {
    address: '127.0.0.1',
    port,
    endpoint: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    handle,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  open.push(proxy);
  return proxy;
}

const json = (res: ServerResponse, body: unknown, status = 200) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

const configStatus = (hash: string, lastError: string | null = null) => ({
  hash,
  loadedAt: '2025-01-01T00:00:00.000Z',
  files: ['/etc/cardinal/policies.yaml'],
  policies: ['team-a/drop-debug'],
  lastError: lastError === null ? null : { message: lastError, at: '2025-01-01T00:01:00.000Z' },
});

const drop = (metric: string, samples: number): TopDrop => ({
  metric,
  policy: 'team-a/drop-debug',
  reason: 'metric_dropped',
  samples,
});

const report = (drops: TopDrop[]): TopOffendersReport => ({
  metrics: [{ metric: 'debug_queue_depth', activeSeries: 3 }],
  labels: [],
  drops,
});

/** A well-behaved proxy whose answers are read from `state` at each request. */
function healthy(state: { hash: string; lastError?: string; drops: TopDrop[] }): Handler {
  return (req, res) => {
    if (isStatus(req.url)) return json(res, configStatus(state.hash, state.lastError ?? null));
    if (req.url?.startsWith('/api/v1/stats/top-offenders?')) return json(res, report(state.drops));
    json(res, { error: 'not found' }, 404);
  };
}

/** Routes the status request to `status` and the top-offenders request to `top`. */
function split(status: Handler, top: Handler): Handler {
  return (req, res) => (isStatus(req.url) ? status : top)(req, res);
}

/** The config status request, asked for without the policy details. */
const isStatus = (url: string | undefined) => url === '/api/v1/status/config?policyDetails=false';

const OPTIONS: PollOptions = { timeoutMs: 2_000, topLimit: 50 };

describe('pollProxy', () => {
  it("reports a healthy proxy's hash and top offenders, asking for topLimit", async () => {
    const p = await fakeProxy(healthy({ hash: 'abc123', drops: [drop('debug_queue_depth', 7)] }));
    const got = await pollProxy(p.url, { ...OPTIONS, now: () => 1234 });
    expect(got).toEqual({
      endpoint: p.endpoint,
      reachable: true,
      configHash: 'abc123',
      report: report([drop('debug_queue_depth', 7)]),
      limit: 50,
      at: 1234,
    });
    // The fake proxy has no unused or limits route (an older proxy): the poll is whole without them.
    expect(p.requests.sort()).toEqual([
      '/api/v1/stats/limits',
      '/api/v1/stats/top-offenders?limit=50',
      '/api/v1/stats/unused?limit=50',
      '/api/v1/stats/usage?limit=100000&readers=0&sort=lastRead',
      '/api/v1/status/config?policyDetails=false',
    ]);
  });

  it('sends the token of --proxy-bearer-token-file, re-read every poll', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-poll-token-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'admin-1\n');
    const ok = healthy({ hash: 'h1', drops: [] });
    const p = await fakeProxy((req, res) => {
      if (req.headers.authorization !== 'Bearer admin-2') return json(res, { error: 'unauthorized' }, 401);
      ok(req, res);
    });
    const first = await pollProxy(p.url, { ...OPTIONS, bearerTokenFile: tokenFile });
    expect(first).toMatchObject({ reachable: false, reason: expect.stringContaining('HTTP 401') });
    writeFileSync(tokenFile, 'admin-2\n');
    expect(await pollProxy(p.url, { ...OPTIONS, bearerTokenFile: tokenFile })).toMatchObject({
      reachable: true,
      configHash: 'h1',
    });
    rmSync(dir, { recursive: true, force: true });
    expect(await pollProxy(p.url, { ...OPTIONS, bearerTokenFile: tokenFile })).toMatchObject({
      reachable: false,
      reason: 'reading --proxy-bearer-token-file: ENOENT',
    });
  });

  it("reports the proxy's failed reload, with the hash still in force", async () => {
    const p = await fakeProxy(healthy({ hash: 'abc123', lastError: 'policies.yaml: bad regex', drops: [] }));
    const got = await pollProxy(p.url, OPTIONS);
    expect(got).toMatchObject({
      reachable: true,
      configHash: 'abc123',
      lastError: 'policies.yaml: bad regex',
    });
  });

  it('reports a refused connection as unreachable', async () => {
    const p = await fakeProxy(healthy({ hash: 'h', drops: [] }));
    await p.close();
    const got = await pollProxy(p.url, OPTIONS);
    expect(got).toMatchObject({ endpoint: p.endpoint, reachable: false });
    expect(got.reason).toMatch(/^\/api\/v1\/status\/config: .*ECONNREFUSED/);
    expect(got.configHash).toBeUndefined();
  });

  it.each<{ name: string; handle: Handler; reason: RegExp }>([
    { name: 'an error status', handle: (_req, res) => json(res, {}, 500), reason: /HTTP 500/ },
    {
      name: 'a redirect, which is not followed',
      handle: (_req, res) => {
        res.writeHead(302, { location: 'http://192.0.2.1/' });
        res.end();
      },
      reason: /HTTP 302/,
    },
    {
      name: 'a body that is not JSON',
      handle: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"hash": ');
      },
      reason: /invalid JSON/,
    },
    {
      name: 'a status without a hash',
      handle: (_req, res) => json(res, { lastError: null }),
      reason: /hash:/,
    },
    {
      name: 'a malformed lastError',
      handle: (_req, res) => json(res, { hash: 'h', lastError: 'oops' }),
      reason: /lastError\.message/,
    },
    {
      name: 'a declared length over the bound',
      handle: (_req, res) => {
        res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) });
        res.write('x'.repeat(1024));
      },
      reason: /exceeds 4194304/,
    },
  ])('reports $name as unreachable', async ({ handle, reason }) => {
    const p = await fakeProxy(split(handle, healthy({ hash: 'h', drops: [] })));
    const got = await pollProxy(p.url, OPTIONS);
    expect(got.reachable).toBe(false);
    expect(got.reason).toMatch(reason);
    expect(got.report).toBeUndefined();
  });

  it('stops reading an endless body at the bound instead of allocating without end', async () => {
    let sent = 0;
    const endless: Handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    };
    const p = await fakeProxy(split(endless, healthy({ hash: 'h', drops: [] })));
    const started = Date.now();
    const got = await pollProxy(p.url, { ...OPTIONS, timeoutMs: 30_000, maxResponseBytes: 1024 * 1024 });
    expect(got.reachable).toBe(false);
    expect(got.reason).toMatch(/exceeds 1048576 bytes/);
    // Well before the timeout: the bound, not the deadline, ended the read.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it.each<{ name: string; handle: Handler }>([
    { name: 'never answers', handle: () => {} },
    {
      name: 'sends headers and then stalls',
      handle: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"hash":');
      },
    },
  ])('gives up on a proxy that $name after timeoutMs', async ({ handle }) => {
    const p = await fakeProxy(split(handle, healthy({ hash: 'h', drops: [] })));
    const started = Date.now();
    const got = await pollProxy(p.url, { ...OPTIONS, timeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(got).toMatchObject({ reachable: false, reason: '/api/v1/status/config: no answer within 300 ms' });
  });

  it('keeps a proxy reachable whose top offenders fail, without a report', async () => {
    const p = await fakeProxy(
      split(healthy({ hash: 'h', drops: [] }), (_req, res) => json(res, { metrics: 1 })),
    );
    const got = await pollProxy(p.url, OPTIONS);
    expect(got).toMatchObject({ reachable: true, configHash: 'h' });
    expect(got.report).toBeUndefined();
    expect(got.reason).toMatch(/^\/api\/v1\/stats\/top-offenders: metrics: must be a list/);
    expect(toEndpointPoll(got)).toBeUndefined();
  });

  it.each<Partial<PollOptions>>([
    { timeoutMs: 0 },
    { topLimit: 0 },
    { topLimit: 1001 },
    { maxResponseBytes: -1 },
  ])('rejects invalid options %j', async (bad) => {
    await expect(pollProxy('http://127.0.0.1:1', { ...OPTIONS, ...bad })).rejects.toThrow(RangeError);
  });
});

describe('pollAll', () => {
  it('polls every endpoint, at most `concurrency` at once, in the order given', async () => {
    let inFlight = 0;
    let most = 0;
    const slow: Handler = (req, res) => {
      if (!isStatus(req.url)) return healthy({ hash: 'h', drops: [] })(req, res);
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => {
        inFlight--;
        json(res, configStatus(`hash-${req.socket.localPort}`));
      }, 50);
    };
    const proxies = await Promise.all(Array.from({ length: 5 }, () => fakeProxy(slow)));
    const got = await pollAll(proxies, { ...OPTIONS, concurrency: 2 });
    expect(got.map((p) => p.endpoint)).toEqual(proxies.map((p) => p.endpoint));
    expect(got.map((p) => p.configHash)).toEqual(proxies.map((p) => `hash-${p.port}`));
    expect(most).toBe(2);
  });

  it('reports each proxy on its own: one down does not hide the others', async () => {
    const up = await fakeProxy(healthy({ hash: 'h', drops: [] }));
    const down = await fakeProxy(healthy({ hash: 'h', drops: [] }));
    await down.close();
    const got = await pollAll([down, up], OPTIONS);
    expect(got.map((p) => [p.endpoint, p.reachable])).toEqual([
      [down.endpoint, false],
      [up.endpoint, true],
    ]);
  });

  it('resolves to nothing for no endpoints', async () => {
    expect(await pollAll([], OPTIONS)).toEqual([]);
  });
});

describe('toProxyReport and toEndpointPoll', () => {
  const base: ProxyPoll = { endpoint: '10.0.0.1:8080', reachable: true, configHash: 'h', limit: 50, at: 10 };

  it.each<{ poll: ProxyPoll; report: object; endpointPoll: object | undefined }>([
    {
      poll: { ...base, lastError: 'bad', report: report([]) },
      report: { endpoint: '10.0.0.1:8080', reachable: true, configHash: 'h', lastError: 'bad' },
      endpointPoll: { endpoint: '10.0.0.1:8080', at: 10, limit: 50, configHash: 'h', report: report([]) },
    },
    {
      poll: { endpoint: '10.0.0.1:8080', reachable: false, reason: 'down', limit: 50, at: 10 },
      report: { endpoint: '10.0.0.1:8080', reachable: false, reason: 'down' },
      endpointPoll: undefined,
    },
    {
      poll: base,
      report: { endpoint: '10.0.0.1:8080', reachable: true, configHash: 'h' },
      endpointPoll: undefined,
    },
  ])('maps $poll.reachable/$poll.report', ({ poll, report, endpointPoll }) => {
    expect(toProxyReport(poll)).toStrictEqual(report);
    expect(toEndpointPoll(poll)).toStrictEqual(endpointPoll);
  });
});

describe('parseUnusedReport', () => {
  it('keeps each policy\u2019s counts and rows', () => {
    const report = parseUnusedReport({
      usageDocuments: 1,
      used: [],
      usedTotal: 0,
      policies: [
        {
          policy: 'ns/p',
          action: 'drop',
          mode: 'enforce',
          usageKnown: true,
          usedMetrics: 3,
          unusedMetrics: 1,
          activeSeries: 4,
          samplesPerSecond: 0.5,
          metrics: [{ metric: 'a', activeSeries: 4, samples: 10, samplesPerSecond: 0.5 }],
        },
      ],
    });
    expect(report.get('ns/p')).toEqual({
      usageKnown: true,
      unusedMetrics: 1,
      activeSeries: 4,
      samplesPerSecond: 0.5,
      metrics: [{ metric: 'a', activeSeries: 4, samplesPerSecond: 0.5 }],
      labels: [],
    });
  });

  it.each([
    [null, 'policies: must be a list'],
    [{ policies: [{ metrics: [] }] }, 'policies[0].policy: must be a string'],
    [
      { policies: [{ policy: 'p', metrics: [], unusedMetrics: -1 }] },
      'policies[0].unusedMetrics: must be a non-negative number',
    ],
    [
      { policies: [{ policy: 'p', unusedMetrics: 0, activeSeries: 0, samplesPerSecond: 0, metrics: [{}] }] },
      'policies[0].metrics[0].metric: must be a string',
    ],
  ])('refuses %j', (json, message) => {
    expect(() => parseUnusedReport(json)).toThrow(message);
  });
});

describe('parseConfigStatus', () => {
  it.each<{ input: unknown; want: object | RegExp }>([
    { input: configStatus('h'), want: { hash: 'h' } },
    { input: configStatus('h', 'boom'), want: { hash: 'h', lastError: 'boom' } },
    { input: { hash: 'h' }, want: { hash: 'h' } },
    { input: null, want: /status: must be an object/ },
    { input: [], want: /status: must be an object/ },
    { input: { hash: '' }, want: /hash: must be a non-empty string/ },
    { input: { hash: 1 }, want: /hash: must be a non-empty string/ },
    { input: { hash: 'h', lastError: { message: 3 } }, want: /lastError\.message: must be a string/ },
    {
      input: { hash: 'h', fileHashes: { '/c/a.yaml': 'x' } },
      want: { hash: 'h', fileHashes: { '/c/a.yaml': 'x' } },
    },
    { input: { hash: 'h', fileHashes: [] }, want: /fileHashes: must be an object/ },
    {
      input: { hash: 'h', fileHashes: { '/c/a.yaml': 1 } },
      want: /fileHashes\["\/c\/a\.yaml"\]: must be a string/,
    },
  ])('$input', ({ input, want }) => {
    if (want instanceof RegExp) expect(() => parseConfigStatus(input)).toThrow(want);
    else expect(parseConfigStatus(input)).toStrictEqual(want);
  });
});

describe('ProxyPoller', () => {
  /** A clock the test moves. */
  function clock(start: number) {
    const c = { t: start, now: () => c.t };
    return c;
  }

  it('turns counts into rates from the previous round of the same proxy', async () => {
    const a = { hash: 'h1', drops: [drop('debug_queue_depth', 100)] };
    const b = { hash: 'h1', drops: [drop('debug_queue_depth', 10)] };
    const pa = await fakeProxy(healthy(a));
    const pb = await fakeProxy(healthy(b));
    const c = clock(1_000_000);
    const poller = new ProxyPoller({ ...OPTIONS, now: c.now });

    const first = await poller.poll([pa, pb]);
    expect(first.proxies).toEqual([
      { endpoint: pa.endpoint, reachable: true, configHash: 'h1' },
      { endpoint: pb.endpoint, reachable: true, configHash: 'h1' },
    ]);
    expect(first.previous).toEqual([]);
    expect(first.offenders.get('team-a/drop-debug')).toEqual({
      topOffenders: [
        { metric: 'debug_queue_depth', series: 6, droppedSamples: 110, reason: 'metric_dropped' },
      ],
      droppedSamples: 110,
    });

    c.t += 10_000;
    a.drops = [drop('debug_queue_depth', 300)];
    b.drops = [drop('debug_queue_depth', 60)];
    const second = await poller.poll([pa, pb]);
    expect(second.previous.map((p) => p.endpoint)).toEqual([pa.endpoint, pb.endpoint]);
    expect(second.offenders.get('team-a/drop-debug')).toMatchObject({
      droppedSamples: 360,
      droppedSamplesPerSecond: 25,
      topOffenders: [{ metric: 'debug_queue_depth', droppedSamples: 360, droppedSamplesPerSecond: 25 }],
    });
  });

  it('keeps the last report of a proxy that fails a round, and forgets one that is no longer listed', async () => {
    const a = { hash: 'h', drops: [drop('debug_queue_depth', 100)] };
    const pa = await fakeProxy(healthy(a));
    const pb = await fakeProxy(healthy({ hash: 'h', drops: [drop('debug_queue_depth', 5)] }));
    const c = clock(0);
    const poller = new ProxyPoller({ ...OPTIONS, now: c.now });
    await poller.poll([pa, pb]);
    expect(poller.known()).toEqual([pa.endpoint, pb.endpoint].sort());

    // pa fails a round: it still runs what it ran (one miss is not an outage), its last report
    // is kept for the rates; pb left the Service: forgotten.
    const failing = pa.handle;
    pa.handle = (_req, res) => json(res, {}, 503);
    c.t += 10_000;
    const second = await poller.poll([pa]);
    expect(second.proxies).toEqual([{ endpoint: pa.endpoint, reachable: true, configHash: 'h' }]);
    expect(second.polls[0]?.reason).toMatch(/HTTP 503/);
    expect(second.current).toEqual([]);
    expect(second.offenders.size).toBe(0);
    expect(poller.known()).toEqual([pa.endpoint]);
    // A second miss in a row: unreachable, and why.
    c.t += 10_000;
    const missed = await poller.poll([pa]);
    expect(missed.proxies).toEqual([
      { endpoint: pa.endpoint, reachable: false, reason: expect.stringMatching(/HTTP 503/) },
    ]);

    // Back again: the rate spans the three intervals.
    pa.handle = failing;
    a.drops = [drop('debug_queue_depth', 700)];
    c.t += 10_000;
    const third = await poller.poll([pa]);
    expect(third.previous.map((p) => p.at)).toEqual([0]);
    expect(third.offenders.get('team-a/drop-debug')?.droppedSamplesPerSecond).toBe(20);
  });

  it('treats a new configuration hash as a counter reset', async () => {
    const a = { hash: 'h1', drops: [drop('debug_queue_depth', 1000)] };
    const pa = await fakeProxy(healthy(a));
    const c = clock(0);
    const poller = new ProxyPoller({ ...OPTIONS, now: c.now });
    await poller.poll([pa]);
    a.hash = 'h2';
    a.drops = [drop('debug_queue_depth', 50)];
    c.t += 10_000;
    const round = await poller.poll([pa]);
    expect(round.offenders.get('team-a/drop-debug')?.droppedSamplesPerSecond).toBe(5);
  });

  it('asks a look only for what it uses: the config status and the limits, keeping the last rates', async () => {
    const a = { hash: 'h1', drops: [drop('debug_queue_depth', 100)] };
    const pa = await fakeProxy(healthy(a));
    const poller = new ProxyPoller(OPTIONS);
    const rated = await poller.poll([pa]);
    pa.requests.length = 0;
    a.hash = 'h2';
    const look = await poller.poll([pa], { rates: false });
    expect(pa.requests.sort()).toEqual(['/api/v1/stats/limits', '/api/v1/status/config?policyDetails=false']);
    expect(look.proxies).toEqual([{ endpoint: pa.endpoint, reachable: true, configHash: 'h2' }]);
    expect(look.polls[0]).not.toHaveProperty('reason');
    expect(look.offenders).toEqual(rated.offenders);
    expect(look.current).toEqual(rated.current);
  });

  it('runs overlapping rounds one after the other', async () => {
    const pa = await fakeProxy(healthy({ hash: 'h', drops: [drop('debug_queue_depth', 1)] }));
    let t = 0;
    const poller = new ProxyPoller({ ...OPTIONS, now: () => (t += 1_000) });
    const [r1, r2] = await Promise.all([poller.poll([pa]), poller.poll([pa])]);
    expect(r1.previous).toEqual([]);
    expect(r2.previous).toEqual(r1.current);
  });

  it.each<Partial<PollAllOptions>>([{ topLimit: 0 }, { timeoutMs: Number.NaN }, { concurrency: 0 }])(
    'refuses invalid options %j when built',
    (bad) => {
      expect(() => new ProxyPoller({ ...OPTIONS, ...bad })).toThrow(RangeError);
    },
  );
});
