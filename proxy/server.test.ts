import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { type Logger, pino } from 'pino';
import protobuf from 'protobufjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TenantHeaderMode } from './auth/http.js';
import { createAuthMetrics } from './auth/metrics.js';
import { REDACT } from './auth/redact.js';
import { CredentialStore } from './auth/store.js';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
} from './codec/proto.js';
import { snappyDecode, snappyEncode } from './codec/snappy.js';
import type { RequestV2, WriteRequestV1 } from './codec/types.js';
import { Forwarder } from './forward/client.js';
import { PushForwarder } from './forward/pushgateway.js';
import { BodyPool } from './ingest/body.js';
import type { LintMode } from './ingest/pushgateway/http.js';
import type { IngestChecks } from './ingest/remote-write.js';
import { compilePipeline, type PolicyInput } from './pipeline/compile.js';
import { PolicyEngine } from './pipeline/engine.js';
import { buildServer, type ConfigStatus } from './server.js';
import { limitsReport } from './stats/limits.js';
import { createProxyMetrics } from './stats/metrics.js';
import { Offenders } from './stats/offenders.js';
import { PolicyStats } from './stats/policy-stats.js';

// The proxy's HTTP contract, end to end inside one process: fastify's inject as the sender, a
// node:http server as the upstream. Real senders and receivers are in test/integration.

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

type Responder = (req: Received) => {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer this much later. */
  delayMs?: number;
};

let upstream: Server;
let upstreamUrl: string;
let received: Received[] = [];
let respond: Responder = () => ({ status: 204 });

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) };
      received.push(r);
      const out = respond(r);
      setTimeout(() => {
        res.writeHead(out.status, out.headers ?? {});
        res.end(out.body ?? '');
      }, out.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/api/v1/write`;
});
afterAll(() => new Promise<void>((resolve) => upstream.close(() => resolve())));

const apps: FastifyInstance[] = [];
afterEach(async () => {
  received = [];
  respond = () => ({ status: 204 });
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

function proxy(
  opts: {
    upstreamProtocol?: 'same' | '1.0';
    maxRequestBytes?: number;
    maxDecodedBytes?: number;
    policies?: PolicyInput[];
    reportDroppedAsWritten?: boolean;
    checks?: IngestChecks;
    credentialsFile?: string;
    metricsAuth?: boolean;
    reloadMinIntervalMs?: number;
    tenantHeaderMode?: TenantHeaderMode;
    logger?: Logger;
    /** Enable the push routes, forwarding to the test upstream as the Pushgateway. */
    push?: { lintMode: LintMode };
    bodies?: BodyPool;
  } = {},
) {
  const metrics = createProxyMetrics('test');
  const forwarder = new Forwarder({
    url: upstreamUrl,
    retry: { minBackoffMs: 1, maxBackoffMs: 5, budgetMs: 300 },
    attemptTimeoutMs: 2000,
    connections: 4,
    userAgent: 'cardinal-proxy/test',
    metrics,
  });
  const pipeline = compilePipeline(opts.policies ?? []);
  const policyStats = new PolicyStats(metrics.registry);
  policyStats.setPipeline(pipeline);
  const engine = new PolicyEngine(
    pipeline,
    { verdictCacheSize: 100, maxTrackedSeries: 100, maxTrackedLabelValues: 100, maxMetricNames: 100 },
    policyStats,
  );
  const offenders = new Offenders(engine, { windowMs: 60_000, maxTrackedSeries: 1000, exposeTop: 5 });
  offenders.register(metrics.registry);
  policyStats.observe({
    slot: offenders.hooks.slot,
    forwarded: offenders.hooks.forwarded,
    newSeries: (m, l, t) => offenders.newSeries(m, l, t),
  });
  const status: ConfigStatus = {
    hash: 'h',
    loadedAt: new Date(0),
    files: [],
    fileHashes: {},
    policies: 0,
    policyDetails: [],
    lastError: undefined,
  };
  const store = opts.credentialsFile === undefined ? undefined : new CredentialStore(opts.credentialsFile);
  const pushForwarder =
    opts.push === undefined
      ? undefined
      : new PushForwarder({
          url: new URL(upstreamUrl).origin,
          retry: { minBackoffMs: 1, maxBackoffMs: 5, budgetMs: 300 },
          attemptTimeoutMs: 2000,
          connections: 2,
          userAgent: 'cardinal-proxy/test',
          metrics,
        });
  const app = buildServer({
    bodies: opts.bodies,
    logger: opts.logger ?? pino({ level: 'silent' }),
    metrics,
    forwarder,
    maxRequestBytes: opts.maxRequestBytes ?? 1 << 20,
    maxDecodedBytes: opts.maxDecodedBytes ?? 4 << 20,
    upstreamProtocol: opts.upstreamProtocol ?? 'same',
    engine,
    policyStats,
    reportDroppedAsWritten: opts.reportDroppedAsWritten ?? false,
    checks: opts.checks,
    topOffenders: (limit) => offenders.report(limit),
    limits: () => limitsReport(engine),
    configStatus: () => status,
    ready: () => true,
    reload: async () => {
      store?.reload();
      return status;
    },
    push:
      pushForwarder === undefined || opts.push === undefined
        ? undefined
        : { forwarder: pushForwarder, lintMode: opts.push.lintMode },
    auth:
      store === undefined
        ? undefined
        : {
            store,
            tenantHeaderMode: opts.tenantHeaderMode ?? 'override',
            metrics: createAuthMetrics(metrics.registry),
            status: () => store.status,
          },
    metricsAuth: opts.metricsAuth,
    reloadMinIntervalMs: opts.reloadMinIntervalMs,
  });
  app.addHook('onClose', async () => {
    await forwarder.close();
    await pushForwarder?.close();
  });
  apps.push(app);
  return { app, metrics };
}

const v1: WriteRequestV1 = {
  timeseries: [
    {
      labels: [
        { name: '__name__', value: 'http_requests_total' },
        { name: 'job', value: 'api' },
      ],
      samples: [
        { value: 1, timestamp: 1_700_000_000_000 },
        { value: 2.5, timestamp: 1_700_000_015_000 },
      ],
      exemplars: [],
      histograms: [],
    },
  ],
  metadata: [],
};

const v2: RequestV2 = {
  symbols: ['', '__name__', 'rpc_duration_seconds', 'job', 'api', 'trace_id', 'abc', 'help text', 'seconds'],
  timeseries: [
    {
      labelsRefs: [1, 2, 3, 4],
      samples: [],
      histograms: [
        {
          countInt: 5,
          sum: 1.5,
          schema: 3,
          zeroThreshold: 1e-128,
          zeroCountInt: 1,
          negativeSpans: [],
          negativeDeltas: [],
          negativeCounts: [],
          positiveSpans: [{ offset: -2, length: 2 }],
          positiveDeltas: [3, -2],
          positiveCounts: [],
          resetHint: 2,
          timestamp: 1_700_000_000_000,
          customValues: [],
        },
      ],
      exemplars: [{ labelsRefs: [5, 6], value: 0.3, timestamp: 1_700_000_000_001 }],
      metadata: { type: 3, helpRef: 7, unitRef: 8 },
      createdTimestamp: 1_699_999_000_000,
    },
    {
      labelsRefs: [1, 2, 3, 6],
      samples: [{ value: 4, timestamp: 1_700_000_000_000 }],
      histograms: [],
      exemplars: [],
      metadata: { type: 0, helpRef: 0, unitRef: 0 },
      createdTimestamp: 0,
    },
  ],
};

const V1_TYPE = 'application/x-protobuf;proto=prometheus.WriteRequest';
const V2_TYPE = 'application/x-protobuf;proto=io.prometheus.write.v2.Request';

function post(app: FastifyInstance, body: Uint8Array, headers: Record<string, string>) {
  return app.inject({ method: 'POST', url: '/api/v1/write', payload: Buffer.from(body), headers });
}

describe('shutting down', () => {
  it('answers a write in flight when closing begins, telling its sender to reconnect (elsewhere)', async () => {
    // On a rolling update the sender's keep-alive connection still reaches this proxy after its
    // endpoint is gone: the answer must be the upstream's, not a 503, and close the connection.
    respond = () => ({ status: 204, delayMs: 300 });
    const { app } = proxy();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const agent = new Agent({ keepAlive: true });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/api/v1/write',
          agent,
          headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
        },
        resolve,
      );
      req.on('error', reject);
      req.end(snappyEncode(encodeWriteRequestV1(v1)));
    });
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received).toHaveLength(1);
    const closed = app.close();
    const res = await answered;
    let text = '';
    res.on('data', (c: Buffer) => {
      text += c.toString();
    });
    await new Promise((r) => res.on('end', r));
    // The answer is the route's own (here: the forwarder, closed by this helper's onClose hook
    // while the upstream still delays, gives up with its 503), not fastify's "closing" 503, and
    // it closes the connection. test/cluster/ proves the status end to end on rolling updates.
    expect(text).not.toMatch(/Service Unavailable/i);
    expect([204, 503]).toContain(res.statusCode);
    expect(res.headers.connection).toBe('close');
    await closed;
    agent.destroy();
  });
});

describe('request bodies read into reused memory', () => {
  it('are given back once the upstream answered 2xx or nothing was sent, and kept when a forward failed', async () => {
    const bodies = new BodyPool();
    const { app } = proxy({ bodies });
    const body = snappyEncode(encodeWriteRequestV1(v1));
    const headers = { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' };
    expect((await post(app, body, headers)).statusCode).toBe(204);
    expect(received).toHaveLength(1);
    expect(Buffer.compare(received[0]!.body, Buffer.from(body))).toBe(0);
    expect(bodies.kept).toBe(1);

    // Refused at the door: nothing went upstream, the memory is free again.
    expect((await post(app, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), headers)).statusCode).toBe(
      400,
    );
    expect(bodies.kept).toBe(1);

    // The upstream fails: an attempt may have been cut off while still sending, so its memory is
    // left to the garbage collector.
    respond = () => ({ status: 500 });
    expect((await post(app, body, headers)).statusCode).toBeGreaterThanOrEqual(500);
    expect(bodies.kept).toBe(0);

    // The next body gets fresh memory and arrives intact.
    respond = () => ({ status: 204 });
    received = [];
    expect((await post(app, body, headers)).statusCode).toBe(204);
    expect(Buffer.compare(received[0]!.body, Buffer.from(body))).toBe(0);
    expect(bodies.kept).toBe(1);
  });
});

describe('remote-write 1.0', () => {
  it('forwards the original bytes after the upstream accepted, with tenant and version headers', async () => {
    const { app, metrics } = proxy();
    const body = snappyEncode(encodeWriteRequestV1(v1));
    const res = await post(app, body, {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'snappy',
      'x-prometheus-remote-write-version': '0.1.0',
      'x-scope-orgid': 'team-a',
    });
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(1);
    const got = received[0]!;
    expect(got.body.equals(body)).toBe(true);
    expect(got.headers['content-type']).toBe(V1_TYPE);
    expect(got.headers['content-encoding']).toBe('snappy');
    expect(got.headers['x-prometheus-remote-write-version']).toBe('0.1.0');
    expect(got.headers['x-scope-orgid']).toBe('team-a');
    expect(decodeWriteRequestV1(snappyDecode(got.body, 1 << 20))).toEqual(v1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('cardinal_proxy_received_total{protocol="1.0",kind="samples"} 2');
    expect(text).toContain('cardinal_proxy_forwarded_total{protocol="1.0",kind="series"} 1');
    expect(text).toContain('cardinal_proxy_requests_total{protocol="1.0",code="204",reason="ok"} 1');
  });

  it('the /write alias works the same', async () => {
    const { app } = proxy();
    const res = await app.inject({
      method: 'POST',
      url: '/write',
      payload: snappyEncode(encodeWriteRequestV1(v1)),
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    });
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(1);
  });
});

describe('remote-write 2.0', () => {
  it('forwards as 2.0 and relays the upstream written counts', async () => {
    respond = () => ({
      status: 204,
      headers: {
        'X-Prometheus-Remote-Write-Samples-Written': '1',
        'X-Prometheus-Remote-Write-Histograms-Written': '1',
        'X-Prometheus-Remote-Write-Exemplars-Written': '1',
      },
    });
    const { app } = proxy();
    const body = snappyEncode(encodeRequestV2(v2));
    const res = await post(app, body, { 'content-type': V2_TYPE, 'content-encoding': 'snappy' });
    expect(res.statusCode).toBe(204);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('1');
    expect(res.headers['x-prometheus-remote-write-histograms-written']).toBe('1');
    expect(res.headers['x-prometheus-remote-write-exemplars-written']).toBe('1');
    const got = received[0]!;
    expect(got.headers['content-type']).toBe(V2_TYPE);
    expect(got.headers['x-prometheus-remote-write-version']).toBe('2.0.0');
    expect(decodeRequestV2(snappyDecode(got.body, 1 << 20))).toEqual(v2);
  });

  it('invents no written counts when the upstream got 2.0 and sent none (Prometheus 2.42 stores nothing then)', async () => {
    const { app } = proxy();
    const res = await post(app, snappyEncode(encodeRequestV2(v2)), {
      'content-type': V2_TYPE,
      'content-encoding': 'snappy',
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBeUndefined();
    expect(res.headers['x-prometheus-remote-write-histograms-written']).toBeUndefined();
    expect(res.headers['x-prometheus-remote-write-exemplars-written']).toBeUndefined();
  });

  it('reports its own counts when it down-converted: a 1.0 receiver answering 2xx wrote all', async () => {
    const { app } = proxy({ upstreamProtocol: '1.0' });
    const res = await post(app, snappyEncode(encodeRequestV2(v2)), {
      'content-type': V2_TYPE,
      'content-encoding': 'snappy',
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('1');
    expect(res.headers['x-prometheus-remote-write-histograms-written']).toBe('1');
    expect(res.headers['x-prometheus-remote-write-exemplars-written']).toBe('1');
  });

  it('down-converts to 1.0 when asked, keeping labels, samples, histograms, exemplars and metadata', async () => {
    const { app } = proxy({ upstreamProtocol: '1.0' });
    const res = await post(app, snappyEncode(encodeRequestV2(v2)), {
      'content-type': V2_TYPE,
      'content-encoding': 'snappy',
    });
    expect(res.statusCode).toBe(204);
    const got = received[0]!;
    expect(got.headers['content-type']).toBe(V1_TYPE);
    expect(got.headers['x-prometheus-remote-write-version']).toBe('0.1.0');
    const out = decodeWriteRequestV1(snappyDecode(got.body, 1 << 20));
    expect(out.timeseries[0]?.labels).toEqual([
      { name: '__name__', value: 'rpc_duration_seconds' },
      { name: 'job', value: 'api' },
    ]);
    expect(out.timeseries[0]?.histograms).toEqual(v2.timeseries[0]?.histograms);
    expect(out.timeseries[0]?.exemplars).toEqual([
      { labels: [{ name: 'trace_id', value: 'abc' }], value: 0.3, timestamp: 1_700_000_000_001 },
    ]);
    expect(out.timeseries[1]?.samples).toEqual([{ value: 4, timestamp: 1_700_000_000_000 }]);
    expect(out.metadata).toEqual([
      { type: 3, metricFamilyName: 'rpc_duration_seconds', help: 'help text', unit: 'seconds' },
    ]);
  });
});

describe('rejections', () => {
  const good = () => snappyEncode(encodeWriteRequestV1(v1));
  it.each([
    [
      'unsupported Content-Type',
      { 'content-type': 'application/json' },
      good,
      415,
      'unsupported Content-Type',
    ],
    [
      'unsupported proto',
      { 'content-type': 'application/x-protobuf;proto=foo.Bar' },
      good,
      415,
      'proto=foo.Bar is not supported',
    ],
    [
      'unsupported encoding',
      { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' },
      good,
      415,
      'Content-Encoding',
    ],
    [
      'not snappy',
      { 'content-type': 'application/x-protobuf' },
      () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      400,
      'not a valid snappy block',
    ],
    [
      'not protobuf',
      { 'content-type': 'application/x-protobuf' },
      () => snappyEncode(Buffer.from([0x0a, 0x05, 0x01])),
      400,
      'not a valid protobuf message',
    ],
    [
      'bad 2.0 symbol reference',
      { 'content-type': V2_TYPE },
      () =>
        snappyEncode(
          encodeRequestV2({ symbols: [''], timeseries: [{ ...v2.timeseries[1]!, labelsRefs: [1, 2] }] }),
        ),
      400,
      'out of range',
    ],
    ['empty body', { 'content-type': 'application/x-protobuf' }, () => Buffer.alloc(0), 400, 'snappy'],
  ])('%s: %i, nothing forwarded', async (_name, headers, body, status, message) => {
    const { app } = proxy();
    const res = await post(app, body(), headers as Record<string, string>);
    expect(res.statusCode).toBe(status);
    expect(res.body).toContain(message);
    expect(res.body.trim().split('\n')).toHaveLength(1);
    expect(received).toHaveLength(0);
  });

  it('413 for a body over --max-request-bytes', async () => {
    const { app, metrics } = proxy({ maxRequestBytes: 64 });
    const res = await post(app, Buffer.alloc(100, 1), { 'content-type': 'application/x-protobuf' });
    expect(res.statusCode).toBe(413);
    expect(received).toHaveLength(0);
    expect(await metrics.registry.metrics()).toContain('reason="BODY_TOO_LARGE"} 1');
  });

  it('413 for a body that decompresses past --max-decoded-bytes, before decompressing it', async () => {
    const { app } = proxy({ maxDecodedBytes: 1000 });
    const res = await post(app, snappyEncode(Buffer.alloc(5000)), {
      'content-type': 'application/x-protobuf',
    });
    expect(res.statusCode).toBe(413);
    expect(res.body).toContain('decoded size 5000 bytes exceeds the limit of 1000 bytes');
  });

  it('405 with Allow for other methods', async () => {
    const { app } = proxy();
    const res = await app.inject({ method: 'GET', url: '/api/v1/write' });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe('POST');
  });
});

describe('upstream answers', () => {
  const send = (app: FastifyInstance, body = snappyEncode(encodeWriteRequestV1(v1))) =>
    post(app, body, { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' });

  it('retries 5xx and 429, then succeeds', async () => {
    let n = 0;
    respond = () => {
      n++;
      if (n === 1) return { status: 503, body: 'starting' };
      if (n === 2) return { status: 429, headers: { 'Retry-After': '0' } };
      return { status: 204 };
    };
    const { app, metrics } = proxy();
    const res = await send(app);
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(3);
    const text = await metrics.registry.metrics();
    expect(text).toContain('cardinal_proxy_forward_retries_total{protocol="1.0",reason="503"} 1');
    expect(text).toContain('cardinal_proxy_forward_retries_total{protocol="1.0",reason="429"} 1');
  });

  it('answers 503 when the retry budget runs out, and the sender may retry', async () => {
    respond = () => ({ status: 500, body: 'tsdb is down' });
    const { app } = proxy();
    const res = await send(app);
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('upstream unavailable, retries exhausted');
    expect(res.body).toContain('last: 500');
    expect(received.length).toBeGreaterThan(1);
  });

  it('answers 503 when the upstream cannot be reached', async () => {
    const { app } = proxy();
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const metrics = createProxyMetrics('test');
    const forwarder = new Forwarder({
      url: `http://127.0.0.1:${port}/api/v1/write`,
      retry: { minBackoffMs: 1, maxBackoffMs: 5, budgetMs: 100 },
      attemptTimeoutMs: 500,
      connections: 1,
      userAgent: 't',
      metrics,
    });
    await expect(forwarder.send({ body: Buffer.alloc(1), version: '1.0' })).rejects.toMatchObject({
      code: 'UPSTREAM_UNAVAILABLE',
      status: 503,
    });
    await forwarder.close();
    expect(await metrics.registry.metrics()).toMatch(
      /cardinal_proxy_forward_retries_total\{protocol="1.0",reason="econnrefused"\} \d+/,
    );
    await app.close();
  });

  it('does not retry another 4xx and answers 400 with the reason', async () => {
    respond = () => ({ status: 400, body: 'out of order sample\n' });
    const { app } = proxy();
    const res = await send(app);
    expect(res.statusCode).toBe(400);
    expect(res.body).toBe('upstream rejected the request: 400 out of order sample\n');
    expect(received).toHaveLength(1);
  });

  it('passes a 415 on, so a 2.0 sender falls back to 1.0', async () => {
    respond = () => ({ status: 415, body: 'unsupported proto' });
    const { app } = proxy();
    const res = await post(app, snappyEncode(encodeRequestV2(v2)), {
      'content-type': V2_TYPE,
      'content-encoding': 'snappy',
    });
    expect(res.statusCode).toBe(415);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('0');
    expect(received).toHaveLength(1);
  });
});

describe('operations', () => {
  it('serves health, readiness, metrics and the config status', async () => {
    const { app } = proxy();
    expect((await app.inject('/-/healthy')).statusCode).toBe(200);
    expect((await app.inject('/-/ready')).statusCode).toBe(200);
    const m = await app.inject('/metrics');
    expect(m.statusCode).toBe(200);
    expect(m.body).toContain('cardinal_proxy_build_info{version="test"} 1');
    const s = await app.inject('/api/v1/status/config');
    expect(s.json()).toMatchObject({ hash: 'h', policies: 0, lastError: null });
  });

  it('leaves the policy details out of the config status on ?policyDetails=false, and refuses other values', async () => {
    const { app } = proxy();
    const full = (await app.inject('/api/v1/status/config')).json();
    expect(full).toHaveProperty('policyDetails', []);
    const slim = await app.inject('/api/v1/status/config?policyDetails=false');
    expect(slim.statusCode).toBe(200);
    const { policyDetails: _details, ...rest } = full;
    expect(slim.json()).not.toHaveProperty('policyDetails');
    expect(slim.json()).toEqual(rest);
    expect((await app.inject('/api/v1/status/config?policyDetails=true')).json()).toEqual(full);
    const bad = await app.inject('/api/v1/status/config?policyDetails=no');
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('policyDetails: "no" must be true or false');
  });
});

describe('policies on the request path', () => {
  const V2 = { 'content-type': V2_TYPE, 'content-encoding': 'snappy' };

  it('forwards only what the policies let through and counts the rest', async () => {
    const { app, metrics } = proxy({
      policies: [{ name: 'p', namespace: 'ns', spec: { drop: ['http_.*'] } }],
    });
    const input: WriteRequestV1 = {
      ...v1,
      timeseries: [...v1.timeseries, { ...v1.timeseries[0]!, labels: [{ name: '__name__', value: 'up' }] }],
    };
    const res = await post(app, snappyEncode(encodeWriteRequestV1(input)), {
      'content-type': 'application/x-protobuf',
    });
    expect(res.statusCode).toBe(204);
    const out = decodeWriteRequestV1(snappyDecode(received[0]!.body, 1 << 20));
    expect(out.timeseries.map((t) => t.labels[0]?.value)).toEqual(['up']);
    const text = await metrics.registry.metrics();
    expect(text).toContain(
      'cardinal_proxy_policy_samples_total{policy="ns/p",rule="drop[0]",reason="metric_dropped",action="dropped",mode="enforce"} 2',
    );
    expect(text).toContain('cardinal_proxy_forwarded_total{protocol="1.0",kind="samples"} 2');
  });

  it('sends nothing upstream when every series was dropped, and says so in the 2.0 headers', async () => {
    const { app } = proxy({ policies: [{ name: 'p', namespace: undefined, spec: { drop: ['.*'] } }] });
    const res = await post(app, snappyEncode(encodeRequestV2(v2)), V2);
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(0);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('0');
    expect(res.headers['x-prometheus-remote-write-histograms-written']).toBe('0');
  });

  it.each([
    [false, ['1', '0', '0']],
    [true, ['1', '1', '1']],
  ])(
    '--report-dropped-as-written=%s: the 2.0 written headers',
    async (flag, [samples, histograms, exemplars]) => {
      // Drops the first series (a histogram with an exemplar), keeps the second (one sample).
      const { app } = proxy({
        policies: [
          { name: 'p', namespace: undefined, spec: { match: { selector: '{job="api"}' }, drop: ['.*'] } },
        ],
        reportDroppedAsWritten: flag,
      });
      // A 2.0 receiver says what it wrote: the kept series' one sample.
      respond = () => ({
        status: 204,
        headers: {
          'x-prometheus-remote-write-samples-written': '1',
          'x-prometheus-remote-write-histograms-written': '0',
          'x-prometheus-remote-write-exemplars-written': '0',
        },
      });
      const res = await post(app, snappyEncode(encodeRequestV2(v2)), V2);
      expect(res.statusCode).toBe(204);
      expect(received).toHaveLength(1);
      expect(res.headers['x-prometheus-remote-write-samples-written']).toBe(samples);
      expect(res.headers['x-prometheus-remote-write-histograms-written']).toBe(histograms);
      expect(res.headers['x-prometheus-remote-write-exemplars-written']).toBe(exemplars);
    },
  );
});

describe('top offenders', () => {
  it('reports the metrics with the most series, labels with the most values, and drops by policy and reason', async () => {
    const { app } = proxy({
      policies: [
        {
          name: 'p',
          namespace: 'ns',
          spec: { limits: { perMetric: [{ metric: 'req_total', maxSeries: 3 }] } },
        },
      ],
    });
    const ts = (name: string, user: string) => ({
      labels: [
        { name: '__name__', value: name },
        { name: 'user', value: user },
      ],
      samples: [{ value: 1, timestamp: 1 }],
      exemplars: [],
      histograms: [],
    });
    const input: WriteRequestV1 = {
      timeseries: [...Array.from({ length: 8 }, (_, k) => ts('req_total', `u${k}`)), ts('up', 'x')],
      metadata: [],
    };
    const res = await post(app, snappyEncode(encodeWriteRequestV1(input)), {
      'content-type': 'application/x-protobuf',
    });
    expect(res.statusCode).toBe(204);
    const top = (await app.inject('/api/v1/stats/top-offenders?limit=2')).json();
    expect(top.metrics).toEqual([
      { metric: 'req_total', activeSeries: 3 },
      { metric: 'up', activeSeries: 1 },
    ]);
    expect(top.labels).toEqual([
      { metric: 'req_total', label: 'user', distinctValues: 3 },
      { metric: 'up', label: 'user', distinctValues: 1 },
    ]);
    expect(top.drops).toEqual([{ metric: 'req_total', policy: 'ns/p', reason: 'series_limit', samples: 5 }]);
    const metricsText = (await app.inject('/metrics')).body;
    expect(metricsText).toContain('cardinal_proxy_top_metric_active_series{metric="req_total"} 3');
    expect(metricsText).toContain(
      'cardinal_proxy_top_dropped_samples{metric="req_total",policy="ns/p",reason="series_limit"} 5',
    );
    expect((await app.inject('/api/v1/stats/top-offenders?limit=abc')).statusCode).toBe(400);
  });
});

describe('authenticated ingest', () => {
  let dir: string;
  let credentialsFile: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-server-auth-'));
    credentialsFile = join(dir, 'credentials.yaml');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const CREDENTIALS = [
    '- { tenant: team-a, bearerToken: token-a }',
    '- { tenant: team-b, basicAuth: { username: bob, password: "pw-b" } }',
    '- { tenant: pusher, bearerToken: token-p, allowedPaths: ["/metrics/job/*"] }',
    '- { tenant: ops, bearerToken: token-admin, allowedPaths: [], roles: [admin] }',
    '- { tenant: scraper, bearerToken: token-scrape, allowedPaths: [], roles: [metrics] }',
  ].join('\n');
  const ADMIN = { authorization: 'Bearer token-admin' };
  const V1 = { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' };
  const body = () => snappyEncode(encodeWriteRequestV1(v1));
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  function authProxy(opts: Parameters<typeof proxy>[0] = {}) {
    writeFileSync(credentialsFile, CREDENTIALS);
    return proxy({ credentialsFile, ...opts });
  }

  it.each([
    [undefined, 'missing', 'no Authorization header', 'Bearer realm="cardinal"'],
    ['Bearer wrong', 'invalid', 'invalid credentials', 'Bearer realm="cardinal", error="invalid_token"'],
    [
      basic('bob', 'token-a'),
      'invalid',
      'invalid credentials',
      'Bearer realm="cardinal", error="invalid_token"',
    ],
    [
      'Bearer a b',
      'malformed',
      'malformed Authorization header',
      'Bearer realm="cardinal", error="invalid_token"',
    ],
    [
      'Negotiate abc',
      'unsupported_scheme',
      'unsupported authorization scheme; use Bearer or Basic',
      'Bearer realm="cardinal"',
    ],
  ])('401 for %j, forwarding nothing', async (authorization, reason, text, bearer) => {
    const { app, metrics } = authProxy();
    const res = await post(app, body(), authorization === undefined ? V1 : { ...V1, authorization });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toEqual([bearer, 'Basic realm="cardinal", charset="UTF-8"']);
    expect(res.body).toBe(`unauthorized: ${text}\n`);
    expect(res.body).not.toContain('wrong');
    expect(received).toHaveLength(0);
    const m = await metrics.registry.metrics();
    expect(m).toContain(`cardinal_proxy_auth_failures_total{reason="${reason}"} 1`);
    expect(m).toContain(
      'cardinal_proxy_requests_total{protocol="unknown",code="401",reason="UNAUTHORIZED"} 1',
    );
    expect(m).not.toContain('wrong');
  });

  it('204 for the right token; its tenant replaces the sender X-Scope-OrgID upstream', async () => {
    const { app } = authProxy();
    const res = await post(app, body(), {
      ...V1,
      authorization: 'Bearer token-a',
      'x-scope-orgid': 'team-z',
    });
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(1);
    expect(received[0]?.headers['x-scope-orgid']).toBe('team-a');
    expect(received[0]?.headers.authorization).toBeUndefined();

    const viaBasic = await app.inject({
      method: 'POST',
      url: '/write',
      payload: Buffer.from(body()),
      headers: { ...V1, authorization: basic('bob', 'pw-b') },
    });
    expect(viaBasic.statusCode).toBe(204);
    expect(received[1]?.headers['x-scope-orgid']).toBe('team-b');
  });

  it('forwards no X-Scope-OrgID with --auth.tenant-header-mode none, and policies still match the tenant', async () => {
    const { app } = authProxy({
      tenantHeaderMode: 'none',
      policies: [
        {
          name: 'a-drops',
          namespace: undefined,
          spec: { match: { tenants: ['team-a'] }, drop: ['http_requests_total'] },
        },
      ],
    });
    const res = await post(app, body(), {
      ...V1,
      authorization: 'Bearer token-a',
      'x-scope-orgid': 'team-b',
    });
    expect(res.statusCode).toBe(204);
    expect(received).toHaveLength(0);
    expect((await post(app, body(), { ...V1, authorization: basic('bob', 'pw-b') })).statusCode).toBe(204);
    expect(received).toHaveLength(1);
    expect(received[0]?.headers['x-scope-orgid']).toBeUndefined();
  });

  it('403 for a path the tenant may not push to, forwarding nothing', async () => {
    const { app, metrics } = authProxy();
    const res = await post(app, body(), { ...V1, authorization: 'Bearer token-p' });
    expect(res.statusCode).toBe(403);
    expect(res.body).toBe('forbidden: tenant pusher may not push to /api/v1/write\n');
    expect(res.headers['www-authenticate']).toBeUndefined();
    const push = await app.inject({
      method: 'PUT',
      url: '/metrics/job/batch',
      payload: 'x 1\n',
      headers: { authorization: 'Bearer token-a', 'content-type': 'text/plain' },
    });
    expect(push.statusCode).not.toBe(401);
    expect(push.statusCode).not.toBe(403);
    expect(received).toHaveLength(0);
    expect(await metrics.registry.metrics()).toContain(
      'cardinal_proxy_auth_failures_total{reason="forbidden_path"} 1',
    );
  });

  it('leaves only the probes and /metrics open; status, statistics and reload need the admin role', async () => {
    const { app } = authProxy();
    expect((await app.inject('/-/healthy')).statusCode).toBe(200);
    expect((await app.inject('/-/ready')).statusCode).toBe(200);
    expect((await app.inject('/metrics')).statusCode).toBe(200);
    for (const [method, url] of [
      ['GET', '/api/v1/status/config'],
      ['GET', '/api/v1/stats/top-offenders'],
      ['GET', '/api/v1/stats/limits'],
      ['POST', '/-/reload'],
    ] as const) {
      const anonymous = await app.inject({ method, url });
      expect(anonymous.statusCode, `${method} ${url}`).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBeDefined();
      // An ingest credential is valid but not an admin's.
      const writer = await app.inject({ method, url, headers: { authorization: 'Bearer token-a' } });
      expect(writer.statusCode, `${method} ${url}`).toBe(403);
      expect(writer.body).toBe('forbidden: tenant team-a lacks the admin role\n');
    }
    const s = await app.inject({ url: '/api/v1/status/config', headers: ADMIN });
    expect(s.statusCode).toBe(200);
    expect(s.json()).toMatchObject({
      auth: {
        files: [credentialsFile],
        tenants: ['ops', 'pusher', 'scraper', 'team-a', 'team-b'],
        credentials: 5,
        lastError: null,
      },
    });
    expect(s.body).not.toContain('token-a');
  });

  it('an admin or metrics credential writes nothing', async () => {
    const { app } = authProxy();
    for (const token of ['token-admin', 'token-scrape']) {
      const res = await post(app, body(), { ...V1, authorization: `Bearer ${token}` });
      expect(res.statusCode).toBe(403);
    }
    expect(received).toHaveLength(0);
  });

  it('with --metrics.auth, /metrics needs the metrics or admin role', async () => {
    const { app } = authProxy({ metricsAuth: true });
    expect((await app.inject('/metrics')).statusCode).toBe(401);
    expect(
      (await app.inject({ url: '/metrics', headers: { authorization: 'Bearer token-a' } })).statusCode,
    ).toBe(403);
    expect(
      (await app.inject({ url: '/metrics', headers: { authorization: 'Bearer token-scrape' } })).statusCode,
    ).toBe(200);
    expect((await app.inject({ url: '/metrics', headers: ADMIN })).statusCode).toBe(200);
    expect((await app.inject('/-/ready')).statusCode).toBe(200);
  });

  it('answers a reload asked for too soon with 429 and Retry-After', async () => {
    const { app } = authProxy({ reloadMinIntervalMs: 60_000 });
    expect((await app.inject({ method: 'POST', url: '/-/reload', headers: ADMIN })).statusCode).toBe(200);
    const again = await app.inject({ method: 'POST', url: '/-/reload', headers: ADMIN });
    expect(again.statusCode).toBe(429);
    expect(again.headers['retry-after']).toBe('60');
  });

  it('takes a rotated token on reload without a restart; an invalid file keeps the old ones and says why', async () => {
    const { app } = authProxy({ reloadMinIntervalMs: 0 });
    const send = (token: string) => post(app, body(), { ...V1, authorization: `Bearer ${token}` });
    expect((await send('token-a')).statusCode).toBe(204);

    const admin = '- { tenant: ops, bearerToken: token-admin, allowedPaths: [], roles: [admin] }\n';
    writeFileSync(credentialsFile, `- { tenant: team-a, bearerToken: token-a2 }\n${admin}`);
    expect((await app.inject({ method: 'POST', url: '/-/reload', headers: ADMIN })).statusCode).toBe(200);
    expect((await send('token-a2')).statusCode).toBe(204);
    expect((await send('token-a')).statusCode).toBe(401);

    writeFileSync(credentialsFile, `- { tenant: team-a }\n${admin}`);
    const bad = await app.inject({ method: 'POST', url: '/-/reload', headers: ADMIN });
    expect(bad.statusCode).toBe(500);
    expect(bad.json().auth.lastError.message).toContain(`${credentialsFile}:1: [0]: needs bearerToken`);
    expect((await send('token-a2')).statusCode).toBe(204);
  });

  it('never logs the Authorization header', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: 'trace', redact: REDACT }, sink);
    const { app } = authProxy({ logger });
    await post(app, body(), { ...V1, authorization: 'Bearer not-the-token' });
    await post(app, body(), { ...V1, authorization: 'Bearer token-a' });
    logger.info({ req: { headers: { authorization: 'Bearer token-a' } } }, 'a request');
    logger.info({ headers: { authorization: basic('bob', 'pw-b') } }, 'headers');
    const text = lines.join('');
    expect(text).toContain('[redacted]');
    for (const secret of ['not-the-token', 'token-a', basic('bob', 'pw-b')])
      expect(text).not.toContain(secret);
  });
});

describe('Pushgateway protocol', () => {
  const GOOD = '# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{kind="a"} 3\n';
  const push = (
    app: FastifyInstance,
    url: string,
    body: string | Buffer,
    headers: Record<string, string> = {},
    method: 'PUT' | 'POST' | 'DELETE' = 'PUT',
  ) => app.inject({ method, url, headers, payload: body });

  it('forwards PUT, POST and DELETE with the canonical grouping path and relays the answer', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    respond = (r) => ({ status: r.method === 'DELETE' ? 202 : 200 });
    expect((await push(app, '/metrics/job/nightly/instance@base64/aG9zdC8x', GOOD)).statusCode).toBe(200);
    expect(
      (await push(app, '/metrics/job@base64/bmlnaHRseQ/shard/%C3%A9', GOOD, {}, 'POST')).statusCode,
    ).toBe(200);
    expect((await push(app, '/metrics/job/nightly/instance@base64/=', '', {}, 'DELETE')).statusCode).toBe(
      202,
    );
    expect(received.map((r) => `${r.method} ${r.url}`)).toEqual([
      'PUT /metrics/job/nightly/instance@base64/aG9zdC8x',
      'POST /metrics/job/nightly/shard/%C3%A9',
      'DELETE /metrics/job/nightly/instance@base64/=',
    ]);
    // Unchanged text is forwarded byte for byte.
    expect(received[0]!.body.toString()).toBe(GOOD);
    expect(received[0]!.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(received[2]!.body.length).toBe(0);
  });

  it('renders OpenMetrics and gzip bodies in the text format the Pushgateway reads', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    respond = () => ({ status: 200 });
    const om =
      '# TYPE jobs counter\n# HELP jobs Jobs run.\njobs_total{kind="a"} 3\njobs_created{kind="a"} 1.7e9\n# EOF\n';
    const res = await push(app, '/metrics/job/x', om, {
      'content-type': 'application/openmetrics-text; version=1.0.0',
    });
    expect(res.statusCode).toBe(200);
    expect(received[0]!.body.toString()).toBe(
      '# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{kind="a"} 3\n# TYPE jobs_created gauge\njobs_created{kind="a"} 1700000000\n',
    );
    const gz = await push(app, '/metrics/job/x', gzipSync(GOOD), { 'content-encoding': 'gzip' });
    expect(gz.statusCode).toBe(200);
    expect(received[1]!.body.toString()).toBe(GOOD);
  });

  it.each([
    [
      'a grouping key without a value',
      '/metrics/job/x/instance',
      GOOD,
      {},
      400,
      'invalid grouping key: label "instance" has no value in the path',
    ],
    ['a reserved label name', '/metrics/job/x/__name__/y', GOOD, {}, 400, 'improper label name "__name__"'],
    ['bad base64', '/metrics/job/x/a@base64/!!', GOOD, {}, 400, 'is not valid base64url'],
    [
      'an unknown media type',
      '/metrics/job/x',
      GOOD,
      { 'content-type': 'application/json' },
      415,
      'push the text format',
    ],
    ['an unknown encoding', '/metrics/job/x', GOOD, { 'content-encoding': 'br' }, 415, 'use gzip or none'],
    ['broken gzip', '/metrics/job/x', GOOD, { 'content-encoding': 'gzip' }, 400, 'not valid gzip'],
    ['invalid UTF-8', '/metrics/job/x', Buffer.from([0x6d, 0x20, 0xff, 0x0a]), {}, 400, 'not valid UTF-8'],
  ])('%s: %i with the reason, nothing forwarded', async (_name, url, body, headers, status, message) => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    const res = await push(app, url, body, headers as Record<string, string>);
    expect(res.statusCode).toBe(status);
    expect(res.body).toContain(message);
    expect(received).toHaveLength(0);
  });

  it('refuses a protobuf push with problems, saying the lines are those of its text rendering', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    // MetricFamily { name: "rows", type: COUNTER, metric { counter { value: 1 } } }, length-delimited.
    const counter = protobuf.Writer.create().uint32(9).double(1).finish();
    const metric = protobuf.Writer.create().uint32(26).bytes(counter).finish();
    const family = protobuf.Writer.create()
      .uint32(10)
      .string('rows')
      .uint32(24)
      .int32(0)
      .uint32(34)
      .bytes(metric)
      .finish();
    const body = Buffer.from(protobuf.Writer.create().bytes(family).finish());
    const res = await push(app, '/metrics/job/x', body, {
      'content-type':
        'application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited',
    });
    expect(res.statusCode).toBe(400);
    expect(res.body).toBe(
      'push rejected, nothing was forwarded: 2 problems (lines of the protobuf push rendered in the text format)\n' +
        'line 1: counter metrics should have "_total" suffix (counter-total-suffix)\n' +
        'line 1: no help text (help-missing)\n',
    );
    expect(received).toHaveLength(0);
  });

  it('413 for a gzip body that inflates past --max-decoded-bytes', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' }, maxDecodedBytes: 1000 });
    const res = await push(app, '/metrics/job/x', gzipSync(Buffer.alloc(5000, 0x20)), {
      'content-encoding': 'gzip',
    });
    expect(res.statusCode).toBe(413);
    expect(received).toHaveLength(0);
  });

  it('passes on what the Pushgateway refuses, and answers 503 when it cannot be reached in the budget', async () => {
    const { app, metrics } = proxy({ push: { lintMode: 'reject' } });
    respond = () => ({
      status: 400,
      body: 'pushed metrics are invalid or inconsistent with existing metrics',
    });
    const refused = await push(app, '/metrics/job/x', GOOD);
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toBe('pushed metrics are invalid or inconsistent with existing metrics');
    respond = () => ({ status: 503 });
    const down = await push(app, '/metrics/job/x', GOOD);
    expect(down.statusCode).toBe(503);
    expect(down.body).toContain('pushgateway unavailable');
    expect(await metrics.registry.metrics()).toContain('protocol="pushgateway",outcome="retry",reason="503"');
  });

  it('drops what policies drop and forwards the rest re-rendered', async () => {
    const { app } = proxy({
      push: { lintMode: 'reject' },
      policies: [{ name: 'p', namespace: 'ns', spec: { drop: ['debug_.*'] } }],
    });
    respond = () => ({ status: 200 });
    const body = `${GOOD}# HELP debug_depth Depth.\n# TYPE debug_depth gauge\ndebug_depth 4\n`;
    expect((await push(app, '/metrics/job/x', body)).statusCode).toBe(200);
    expect(received[0]!.body.toString()).toBe(GOOD);
  });

  it('in warn mode forwards a push with lint problems and lists them after the answer', async () => {
    const { app, metrics } = proxy({ push: { lintMode: 'warn' } });
    respond = () => ({ status: 200 });
    const res = await push(app, '/metrics/job/x', 'rows 1\n');
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('warning: line 1: no help text (help-missing)\n');
    expect(received[0]!.body.toString()).toBe('rows 1\n');
    expect(await metrics.registry.metrics()).toContain(
      'cardinal_proxy_push_problems_total{rule="help-missing",outcome="warned"} 1',
    );
  });

  it('405 with Allow for GET; 404 for the push routes when no Pushgateway is configured', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    const get = await app.inject({ method: 'GET', url: '/metrics/job/x' });
    expect(get.statusCode).toBe(405);
    expect(get.headers.allow).toBe('PUT, POST, DELETE');
    const { app: plain } = proxy();
    expect((await push(plain, '/metrics/job/x', GOOD)).statusCode).toBe(404);
  });

  it('answers any body with a forward or a 400 with reasons, never a crash (property)', async () => {
    const { app } = proxy({ push: { lintMode: 'reject' } });
    respond = () => ({ status: 200 });
    const line = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom(
        '# TYPE a counter',
        '# HELP a x',
        'a_total 1',
        'a{b="c"} 2',
        'a{b="\\n"} NaN',
        '# EOF',
        'a 1 2',
      ),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 12 }),
        fc.constantFrom('text/plain', 'application/openmetrics-text'),
        async (lines, type) => {
          received = [];
          const res = await push(app, '/metrics/job/fuzz', lines.join('\n'), { 'content-type': type });
          if (res.statusCode === 400) {
            expect(res.body).toMatch(
              /^push rejected, nothing was forwarded: \d+ problems?\n(line \d+: .+\n)+$/,
            );
            expect(received).toHaveLength(0);
          } else {
            expect(res.statusCode).toBe(200);
            expect(received).toHaveLength(1);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('the door check on the request path', () => {
  const CHECKS: IngestChecks = { onInvalid: 'reject', names: 'utf8', maxFutureMs: 600_000, maxAgeMs: 0 };
  const V2H = { 'content-type': V2_TYPE, 'content-encoding': 'snappy' };
  // The second series has a timestamp far in the future.
  const mixed: RequestV2 = {
    symbols: ['', '__name__', 'ok', 'bad'],
    timeseries: [
      {
        labelsRefs: [1, 2],
        samples: [{ value: 1, timestamp: Date.now() }],
        histograms: [],
        exemplars: [],
        metadata: { type: 0, helpRef: 0, unitRef: 0 },
        createdTimestamp: 0,
      },
      {
        labelsRefs: [1, 3],
        samples: [
          { value: 1, timestamp: 2 ** 62 },
          { value: 2, timestamp: 2 ** 62 + 1 },
        ],
        histograms: [],
        exemplars: [],
        metadata: { type: 0, helpRef: 0, unitRef: 0 },
        createdTimestamp: 0,
      },
    ],
  };

  it('reject: 400 naming the series, nothing forwarded, and 2.0 written counts of 0', async () => {
    const { app, metrics } = proxy({ checks: CHECKS });
    const res = await post(app, snappyEncode(encodeRequestV2(mixed)), V2H);
    expect(res.statusCode).toBe(400);
    expect(res.body).toMatch(
      /^series a receiver would refuse: timeseries\[1\] \{__name__="bad"\}: samples\[0\]\.timestamp/,
    );
    expect(received).toHaveLength(0);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('0');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/cardinal_proxy_invalid_samples_total\{reason="too_new",action="rejected"\} 2/);
  });

  it('drop: the rest is forwarded, and the 2.0 written counts are what the upstream wrote of it (a partial write)', async () => {
    const { app } = proxy({ checks: { ...CHECKS, onInvalid: 'drop' } });
    respond = () => ({ status: 204, headers: { 'x-prometheus-remote-write-samples-written': '1' } });
    const res = await post(app, snappyEncode(encodeRequestV2(mixed)), V2H);
    expect(res.statusCode).toBe(204);
    const out = decodeRequestV2(snappyDecode(received[0]!.body, 1 << 20));
    expect(out.timeseries.map((t) => out.symbols[t.labelsRefs[1]!])).toEqual(['ok']);
    expect(res.headers['x-prometheus-remote-write-samples-written']).toBe('1');
  });
});
