// Access control of the proxy binary against request targets an attacker would try, on plain HTTP
// and on HTTPS. The upstream (remote-write receiver and Pushgateway) is a recorder, so the test
// knows exactly what was let through: nothing without valid credentials, whatever the spelling of
// the request target, and X-Scope-OrgID upstream is always the credential's tenant. The recorder is
// also the query API of the read path (--query.upstream), whose routes (access `query`) take any
// valid credential and read as its tenant.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  eventually,
  freePort,
  metricSum,
  PROXY_MAIN,
  type RecordedRequest,
  selfSignedCertificate,
  startProgram,
  startRecorder,
  useCleanup,
} from '../framework/index.js';

const WRITER = 'writer-token-6Fq2Lm8s';
const PUSHER = 'pusher-token-3Jd9Wc1x';
const ADMIN = 'admin-token-8Ke4Rt7y';
const CREDENTIALS = [
  `- { tenant: team-a, bearerToken: ${WRITER}, allowedPaths: [/api/v1/write] }`,
  `- { tenant: batch, bearerToken: ${PUSHER}, allowedPaths: ["/metrics/job/*"] }`,
  `- { tenant: ops, bearerToken: ${ADMIN}, allowedPaths: [], roles: [admin] }`,
].join('\n');

const WRITE_BODY = snappyEncode(
  encodeWriteRequestV1({
    timeseries: [
      {
        labels: [{ name: '__name__', value: 'access_test' }],
        samples: [{ value: 1, timestamp: Date.now() }],
        exemplars: [],
        histograms: [],
      },
    ],
    metadata: [],
  }),
);
const PUSH_BODY = Buffer.from(
  '# HELP access_push A gauge pushed by the test.\n# TYPE access_push gauge\naccess_push 1\n',
);

interface Listener {
  readonly name: string;
  readonly port: number;
  readonly tls: boolean;
}

interface RawResponse {
  readonly status: number;
  readonly head: string;
}

/**
 * Sends one request with exactly this request line, as no HTTP client library would: they all
 * normalise the target before sending it.
 */
function rawRequest(
  l: Listener,
  method: string,
  target: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const head = [
      `${method} ${target} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Connection: close',
      `Content-Length: ${body.length}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      '',
      '',
    ].join('\r\n');
    // Written, not ended: a half-closed TLS connection may be reset before the answer is read;
    // `Connection: close` makes the server close it once it answered.
    const onConnect = () => socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
    const socket = l.tls
      ? tlsConnect({ host: '127.0.0.1', port: l.port, rejectUnauthorized: false }, onConnect)
      : netConnect({ host: '127.0.0.1', port: l.port }, onConnect);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m === null ? 0 : Number(m[1]), head: text.slice(0, text.indexOf('\r\n\r\n')) });
    });
  });
}

const REMOTE_WRITE = { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'snappy' };
const TEXT = { 'Content-Type': 'text/plain; version=0.0.4' };

/** Spellings of a path that a router or a proxy in front might take for the path itself. */
function spellings(path: string): string[] {
  const tail = path.slice(path.lastIndexOf('/') + 1);
  const dir = path.slice(0, path.lastIndexOf('/'));
  return [
    path,
    `${path}#x`,
    `${path}?a=1#frag`,
    `http://127.0.0.1${path}`,
    `http://evil.example${path}`,
    `HTTP://127.0.0.1:1${path}`,
    `/${path}`,
    `${dir}//${tail}`,
    `${path}/`,
    `${dir}/./${tail}`,
    `${dir}/x/../${tail}`,
    `${dir}/%2e/${tail}`,
    `${dir}/x/%2E%2E/${tail}`,
    `${dir}%2F${tail}`,
    `${dir}%5c${tail}`,
    `${dir}/${tail.slice(0, -1)}%${tail.charCodeAt(tail.length - 1).toString(16)}`,
    `${dir}/${tail.toUpperCase()}`,
  ];
}

describe('access control whatever the request target', () => {
  const track = useCleanup();
  let dir: string;
  let recorder: Awaited<ReturnType<typeof startRecorder>>;
  const listeners: Listener[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-access-'));
    writeFileSync(join(dir, 'credentials.yaml'), CREDENTIALS);
    const tls = selfSignedCertificate(dir, 'cardinal-access');
    recorder = track(await startRecorder());
    for (const https of [false, true]) {
      const port = await freePort();
      track(
        await startProgram({
          name: https ? 'cardinal-proxy-https' : 'cardinal-proxy-http',
          command: process.execPath,
          args: () => [
            PROXY_MAIN,
            '--listen',
            `127.0.0.1:${port}`,
            '--upstream',
            recorder.writeUrl,
            '--pushgateway',
            recorder.origin,
            '--query.upstream',
            recorder.origin,
            '--auth.credentials-file',
            join(dir, 'credentials.yaml'),
            '--reload.min-interval',
            '0s',
            ...(https ? ['--tls.cert-file', tls.certFile, '--tls.key-file', tls.keyFile] : []),
          ],
        }),
      );
      const l = { name: https ? 'https' : 'http', port, tls: https };
      await eventually(async () =>
        expect((await rawRequest(l, 'GET', '/-/ready', {}, Buffer.alloc(0))).status).toBe(200),
      );
      listeners.push(l);
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // What the proxies passed on for a client. The read path also asks the query API, on its own, for
  // the metric names it knows: that is not a client's request.
  const forwarded = (): RecordedRequest[] =>
    recorder.requests.splice(0).filter((r) => r.url !== '/api/v1/label/__name__/values');

  const INGEST: [method: string, path: string, headers: Record<string, string>, body: Buffer][] = [
    ['POST', '/api/v1/write', REMOTE_WRITE, WRITE_BODY],
    ['POST', '/write', REMOTE_WRITE, WRITE_BODY],
    ['PUT', '/metrics/job/nightly/instance/a', TEXT, PUSH_BODY],
    ['POST', '/metrics/job@base64/bmlnaHRseQ', TEXT, PUSH_BODY],
    ['DELETE', '/metrics/job/nightly', {}, Buffer.alloc(0)],
  ];
  const ADMIN_PATHS: [method: string, path: string][] = [
    ['POST', '/-/reload'],
    ['GET', '/api/v1/status/config'],
    ['GET', '/api/v1/stats/top-offenders'],
    ['GET', '/api/v1/stats/limits'],
    ['GET', '/api/v1/stats/usage'],
  ];
  const READ_PATHS: [method: string, path: string][] = [
    ['GET', '/api/v1/query'],
    ['POST', '/api/v1/query_range'],
    ['GET', '/api/v1/label/job/values'],
    ['GET', '/federate'],
  ];

  it.each(['http', 'https'])(
    'over %s, no spelling of an ingest, admin or read target gets anything through without valid credentials',
    async (name) => {
      const l = listeners.find((x) => x.name === name) as Listener;
      const reloadsBefore = await reloads(l);
      const tries = [
        ...INGEST.flatMap(([method, path, headers, body]) =>
          spellings(path).map((t) => [method, t, headers, body] as const),
        ),
        ...[...ADMIN_PATHS, ...READ_PATHS].flatMap(([method, path]) =>
          spellings(path).map((t) => [method, t, {}, Buffer.alloc(0)] as const),
        ),
      ];
      for (const [method, target, headers, body] of tries) {
        for (const auth of [
          {},
          { Authorization: 'Bearer not-a-token' },
          { Authorization: 'Basic Zm9vOmJhcg==' },
        ]) {
          const res = await rawRequest(
            l,
            method,
            target,
            { ...headers, ...auth, 'X-Scope-OrgID': 'team-b' },
            body,
          );
          expect([400, 401, 403, 404, 405], `${method} ${target} ${JSON.stringify(auth)}`).toContain(
            res.status,
          );
        }
      }
      expect(forwarded()).toEqual([]);
      expect(await reloads(l)).toBe(reloadsBefore);
    },
  );

  it.each(['http', 'https'])(
    'over %s, a valid credential writes only where allowed, and always as its own tenant',
    async (name) => {
      const l = listeners.find((x) => x.name === name) as Listener;
      forwarded();
      for (const [method, path, headers, body] of INGEST) {
        const token = path.startsWith('/metrics/') ? PUSHER : WRITER;
        const other = token === PUSHER ? WRITER : PUSHER;
        const ok = await rawRequest(
          l,
          method,
          path,
          { ...headers, Authorization: `Bearer ${token}`, 'X-Scope-OrgID': 'team-b' },
          body,
        );
        expect(ok.status, `${method} ${path}`).toBeLessThan(300);
        // The other tenant's credential is valid but not for this path.
        const wrong = await rawRequest(
          l,
          method,
          path,
          { ...headers, Authorization: `Bearer ${other}` },
          body,
        );
        expect(wrong.status, `${method} ${path} with the other credential`).toBe(403);
        // The admin credential writes nothing.
        const admin = await rawRequest(
          l,
          method,
          path,
          { ...headers, Authorization: `Bearer ${ADMIN}` },
          body,
        );
        expect(admin.status).toBe(403);
      }
      const got = forwarded();
      expect(got.map((r) => r.method)).toEqual(INGEST.map(([m]) => m));
      for (const r of got.filter((x) => x.url === '/api/v1/write'))
        expect(r.headers['x-scope-orgid']).toBe('team-a');
      // The Pushgateway has no tenants: the sender's X-Scope-OrgID is not passed on to it.
      for (const r of got.filter((x) => x.url.startsWith('/metrics/')))
        expect(r.headers['x-scope-orgid']).toBeUndefined();

      // Admin routes answer the admin credential, and only it.
      const before = await reloads(l);
      for (const [method, path] of ADMIN_PATHS) {
        const res = await rawRequest(l, method, path, { Authorization: `Bearer ${ADMIN}` }, Buffer.alloc(0));
        expect(res.status, `${method} ${path}`).toBe(200);
        const writer = await rawRequest(
          l,
          method,
          path,
          { Authorization: `Bearer ${WRITER}` },
          Buffer.alloc(0),
        );
        expect(writer.status, `${method} ${path} as a writer`).toBe(403);
      }
      expect(await reloads(l)).toBe(before + 1);

      // Any valid credential reads, as its own tenant; the credential itself is not passed on.
      forwarded();
      for (const [token, tenant] of [
        [WRITER, 'team-a'],
        [ADMIN, 'ops'],
      ] as const) {
        for (const [method, path] of READ_PATHS) {
          const res = await rawRequest(
            l,
            method,
            `${path}?query=up&match[]=up`,
            { Authorization: `Bearer ${token}`, 'X-Scope-OrgID': 'team-b' },
            Buffer.alloc(0),
          );
          expect(res.status, `${method} ${path} as ${tenant}`).toBe(200);
          const [up] = forwarded();
          expect(up?.url, `${method} ${path}`).toBe(`${path}?query=up&match[]=up`);
          expect(up?.headers['x-scope-orgid']).toBe(tenant);
          expect(up?.headers.authorization).toBeUndefined();
        }
      }
    },
  );

  it('over generated request lines, nothing without credentials is forwarded or answered 2xx', async () => {
    const base = fc.constantFrom(
      ...INGEST.map(([, p]) => p),
      ...[...ADMIN_PATHS, ...READ_PATHS].map(([, p]) => p),
    );
    const mutate = fc.tuple(
      base,
      fc.constantFrom('', 'http://127.0.0.1', 'http://evil.example', 'https://x', '//', '/'),
      fc.array(fc.constantFrom('./', '../', 'x/../', '%2e/', '%2E%2e/', '/', '%2f'), { maxLength: 2 }),
      fc.constantFrom('', '#', '#x', '?a=1', '?a=1#b', '/', '%20'),
      fc.boolean(),
      fc.nat(),
    );
    forwarded();
    let answered2xx = 0;
    await fc.assert(
      fc.asyncProperty(mutate, async ([path, prefix, inserts, suffix, upper, at]) => {
        const cut = path.lastIndexOf('/') + 1;
        let p = path.slice(0, cut) + inserts.join('') + path.slice(cut);
        if (upper) {
          const i = at % p.length;
          p = p.slice(0, i) + p.charAt(i).toUpperCase() + p.slice(i + 1);
        }
        const target = `${prefix}${p}${suffix}`;
        const ingest = INGEST.find(([, q]) => q === path);
        const method =
          ingest?.[0] ?? [...ADMIN_PATHS, ...READ_PATHS].find(([, q]) => q === path)?.[0] ?? 'GET';
        const l = listeners[at % listeners.length] as Listener;
        const res = await rawRequest(l, method, target, ingest?.[2] ?? {}, ingest?.[3] ?? Buffer.alloc(0));
        if (res.status >= 200 && res.status < 300) answered2xx++;
      }),
      { numRuns: 300 },
    );
    expect(answered2xx).toBe(0);
    expect(forwarded()).toEqual([]);
  });

  it('the probes stay public, and /metrics too unless --metrics.auth', async () => {
    for (const l of listeners) {
      for (const path of ['/-/healthy', '/-/ready', '/metrics']) {
        expect((await rawRequest(l, 'GET', path, {}, Buffer.alloc(0))).status, `${l.name} ${path}`).toBe(200);
      }
    }
  });

  async function reloads(l: Listener): Promise<number> {
    const scheme = l.tls ? 'https' : 'http';
    if (l.tls) {
      // metricSum speaks plain HTTP; read the counter through the raw client instead.
      return readCounter(l);
    }
    return metricSum(`${scheme}://127.0.0.1:${l.port}/metrics`, 'cardinal_proxy_config_reloads_total');
  }

  async function readCounter(l: Listener): Promise<number> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: l.port, rejectUnauthorized: false }, () =>
        socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      );
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => {
        let sum = 0;
        for (const line of Buffer.concat(chunks).toString().split('\n')) {
          if (line.startsWith('cardinal_proxy_config_reloads_total')) sum += Number(line.split(' ').pop());
        }
        resolve(sum);
      });
    });
  }
});
