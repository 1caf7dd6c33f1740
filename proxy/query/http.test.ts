import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAccess } from '../auth/http.js';
import { createAuthMetrics } from '../auth/metrics.js';
import { CredentialStore } from '../auth/store.js';
import type { RequestReads } from './extract.js';
import { ReadUpstream, registerReadPath } from './http.js';
import { createQueryMetrics, recorderGauges } from './metrics.js';
import { UsageRecorder } from './recorder.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let upstream: Server;
let base: string;
const seen: Seen[] = [];

beforeAll(async () => {
  // Answers like a query API would, with a status, headers and a body the test can recognise.
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      const status = req.url?.includes('teapot') ? 418 : 200;
      res.writeHead(status, {
        'content-type': 'application/json',
        'x-upstream': 'yes',
        'keep-alive': 'timeout=5',
      });
      res.end(`{"status":"success","echo":${JSON.stringify(req.url)}}`);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => upstream.close(r));
});

async function app(opts: { path?: string; credentials?: string } = {}) {
  const recorded: { reads: RequestReads; reader: string }[] = [];
  const a: FastifyInstance = Fastify();
  // As server.ts: bodies arrive as buffers, whatever their type.
  a.removeAllContentTypeParsers();
  a.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  const registry = new Registry();
  const recorder = new UsageRecorder({ maxMetrics: 10, maxReaders: 10, readersPerMetric: 2 }, 0);
  const up = new ReadUpstream(`${base}${opts.path ?? ''}`, 2, 5000);
  let auth: Parameters<typeof registerReadPath>[2]['auth'];
  if (opts.credentials !== undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'read-auth-'));
    writeFileSync(join(dir, 'c.yaml'), opts.credentials);
    auth = {
      store: new CredentialStore(join(dir, 'c.yaml')),
      tenantHeaderMode: 'override',
      metrics: createAuthMetrics(registry),
    };
  }
  registerAccess(a, { auth, metricsAuth: false, refused: () => {} });
  registerReadPath(a, up, {
    upstream: base,
    timeoutMs: 5000,
    connections: 2,
    record: (reads, reader) => recorded.push({ reads, reader }),
    metrics: createQueryMetrics(
      registry,
      recorderGauges(() => recorder),
      5,
    ),
    logger: pino({ level: 'silent' }),
    auth,
  });
  a.addHook('onClose', () => up.close());
  await a.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(a.server.address() as AddressInfo).port}`;
  return { a, url, recorded, registry };
}

describe('the read path over HTTP', () => {
  it('passes a GET through: path, query, headers and the answer as they are', async () => {
    const { a, url, recorded } = await app();
    seen.length = 0;
    const res = await fetch(`${url}/api/v1/query?query=up&time=1`, {
      headers: {
        authorization: 'Bearer upstream-token',
        'x-scope-orgid': 't1',
        'x-dashboard-uid': 'd',
        'x-custom': 'v',
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-upstream')).toBe('yes');
    expect(await res.text()).toBe('{"status":"success","echo":"/api/v1/query?query=up&time=1"}');
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/api/v1/query?query=up&time=1' });
    // Without proxy credentials, the upstream decides: Authorization and the tenant pass on.
    expect(seen[0]?.headers).toMatchObject({
      authorization: 'Bearer upstream-token',
      'x-scope-orgid': 't1',
      'x-custom': 'v',
    });
    expect([...(recorded[0]?.reads.names ?? [])]).toEqual(['up']);
    expect(recorded[0]?.reader).toBe('dashboard:d tenant:t1');
    await a.close();
  });

  it('passes a POST form through byte for byte and reads its query; relays the upstream status', async () => {
    const { a, url, recorded } = await app({ path: '/prometheus' });
    seen.length = 0;
    const body = 'query=sum%28rate%28http_requests_total%5B5m%5D%29%29&start=1&end=2&step=1';
    const res = await fetch(`${url}/api/v1/query_range`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/prometheus/api/v1/query_range', body });
    expect([...(recorded[0]?.reads.names ?? [])]).toEqual(['http_requests_total']);
    const teapot = await fetch(`${url}/api/v1/series?match[]=up&teapot=1`);
    expect(teapot.status).toBe(418);
    await a.close();
  });

  it('with credentials: refuses without one, and sends the tenant, not the credential, upstream', async () => {
    const token = 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4';
    const { a, url, recorded } = await app({ credentials: `- tenant: team-a\n  bearerToken: ${token}\n` });
    seen.length = 0;
    const refused = await fetch(`${url}/api/v1/query?query=up`, { headers: { 'x-scope-orgid': 'team-b' } });
    expect(refused.status).toBe(401);
    expect(await refused.text()).toBe('unauthorized: no Authorization header\n');
    const wrong = await fetch(`${url}/api/v1/query?query=up`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect(seen).toHaveLength(0);
    expect(recorded).toHaveLength(0);
    const ok = await fetch(`${url}/api/v1/labels`, {
      headers: {
        authorization: `Bearer ${token}`,
        'x-scope-orgid': 'team-b',
        'user-agent': 'Grafana/10.4.1',
      },
    });
    expect(ok.status).toBe(200);
    expect(seen[0]?.headers['x-scope-orgid']).toBe('team-a');
    expect(seen[0]?.headers.authorization).toBeUndefined();
    expect(recorded[0]?.reader).toBe('agent:Grafana/10.4.1 tenant:team-a');
    await a.close();
  });
});
