import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerAccess } from './http.js';
import { targetProblem } from './target.js';

describe('targetProblem', () => {
  it.each([
    '/api/v1/write',
    '/write',
    '/api/v1/write?x=1&y=%2F',
    '/metrics/job/nightly/instance/a%20b',
    '/metrics/job@base64/bmlnaHRseQ',
    '/metrics/job/x/',
    '/-/ready',
    '/',
    '/api/v1/%77rite',
    '/a%2eb',
  ])('accepts %j', (target) => {
    expect(targetProblem(target)).toBeUndefined();
  });

  it.each([
    ['/api/v1/write#x', 'fragment'],
    ['/api/v1/write?a=b#x', 'fragment'],
    ['http://127.0.0.1/api/v1/write', 'origin-form'],
    ['http://evil.example/write', 'origin-form'],
    ['HTTP://127.0.0.1/api/v1/write', 'origin-form'],
    ['127.0.0.1:8080', 'origin-form'],
    ['*', 'origin-form'],
    ['', 'origin-form'],
    ['//api/v1/write', 'empty segment'],
    ['/api//v1/write', 'empty segment'],
    ['/api/v1/./write', 'dot segment'],
    ['/api/v1/x/../write', 'dot segment'],
    ['/api/v1/write/..', 'dot segment'],
    ['/api/v1/%2e%2E/write', 'dot segment'],
    ['/api/v1/%2e/write', 'dot segment'],
    ['/api%2Fv1/write', 'percent-encode a slash'],
    ['/api/v1%2fwrite', 'percent-encode a slash'],
    ['/api/v1%5cwrite', 'percent-encode a slash'],
    ['/api/v1/write%00', 'percent-encode a slash'],
    ['/api\\v1/write', 'backslash'],
    ['/api/v1/write\t', 'control character'],
    ['/api/v1/wr%ite', 'malformed percent-encoding'],
    ['/api/v1/write%', 'malformed percent-encoding'],
  ])('refuses %j (%s)', (target, reason) => {
    expect(targetProblem(target)).toContain(reason);
  });

  it('accepts only targets whose path the URL parser leaves as it is, and never throws', () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'api',
        'v1',
        'write',
        'metrics',
        'job',
        '.',
        '..',
        '',
        '%2e',
        '%2E%2e',
        '%2f',
        '%5C',
        '%77',
      ),
      fc.string({ maxLength: 4 }),
    );
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 6 }),
        fc.constantFrom('', '?q=1', '#f', '?a#b'),
        (segs, tail) => {
          const target = `/${segs.join('/')}${tail}`;
          const problem = targetProblem(target);
          if (problem === undefined) {
            // What is accepted has no fragment, and resolving it as a URL keeps every segment: no
            // dot segment, no encoded separator that the router and a path check might read
            // differently.
            expect(target.includes('#')).toBe(false);
            const path = target.split('?')[0] as string;
            expect(new URL(path, 'http://h').pathname.split('/')).toHaveLength(path.split('/').length);
            expect(/%(2f|5c)/i.test(path)).toBe(false);
          }
        },
      ),
    );
  });
});

describe('registerAccess', () => {
  it('refuses to register a route that does not declare its access', async () => {
    const app = Fastify();
    registerAccess(app, { auth: undefined, metricsAuth: false, refused: () => {} });
    expect(() => app.get('/new', async () => 'x')).toThrow('route GET /new must declare config.access');
    app.get('/ok', { config: { access: 'public' } }, async () => 'x');
    await app.ready();
    expect((await app.inject('/ok')).statusCode).toBe(200);
    await app.close();
  });

  it('answers 400 to a target that is not origin-form, before any route runs', async () => {
    const app = Fastify();
    registerAccess(app, { auth: undefined, metricsAuth: false, refused: () => {} });
    let ran = 0;
    app.post('/api/v1/write', { config: { access: 'ingest' } }, async () => {
      ran++;
      return 'x';
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    // Raw request lines: an HTTP client library would normalise these targets before sending.
    for (const target of ['/api/v1/./write', '/api/v1/write#x', 'http://127.0.0.1/api/v1/write']) {
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: target }, (r) => {
          let body = '';
          r.on('data', (c: Buffer) => {
            body += c.toString();
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end('x');
      });
      expect(res.status, target).toBe(400);
      expect(res.body).toMatch(/^bad request target: /);
    }
    expect(ran).toBe(0);
    await app.close();
  });
});
