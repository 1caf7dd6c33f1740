import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { issueCa, issueServing } from './x509.js';

const from = new Date('2026-01-01T00:00:00Z');
const to = new Date('2027-01-01T00:00:00Z');

describe('webhook certificates', () => {
  const ca = issueCa('cardinal-webhook-ca', from, to);
  const serving = issueServing(ca, 'cardinal-webhook-ca', ['op.ns.svc', '127.0.0.1', '::1'], from, to);

  it('issues a CA that signs a serving certificate for the given names', () => {
    const caCert = new X509Certificate(ca.cert);
    const leaf = new X509Certificate(serving.cert);
    expect(caCert.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe('DNS:op.ns.svc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(leaf.checkHost('op.ns.svc')).toBe('op.ns.svc');
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new Date(leaf.validFrom).toISOString()).toBe(from.toISOString());
    expect(new Date(leaf.validTo).toISOString()).toBe(to.toISOString());
    expect(leaf.issuer).toBe('CN=cardinal-webhook-ca');
  });

  it('passes openssl verify as a TLS server certificate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-x509-'));
    writeFileSync(join(dir, 'ca.crt'), ca.cert);
    writeFileSync(join(dir, 'tls.crt'), serving.cert);
    const out = execFileSync(
      'openssl',
      [
        'verify',
        '-purpose',
        'sslserver',
        '-attime',
        String(from.getTime() / 1000 + 3600),
        '-CAfile',
        'ca.crt',
        'tls.crt',
      ],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(out.trim()).toBe('tls.crt: OK');
  });

  it('serves TLS that a client trusting only the CA accepts for the name', async () => {
    const now = new Date();
    const liveCa = issueCa('ca', new Date(now.getTime() - 60_000), new Date(now.getTime() + 3_600_000));
    const live = issueServing(
      liveCa,
      'ca',
      ['127.0.0.1'],
      new Date(now.getTime() - 60_000),
      new Date(now.getTime() + 3_600_000),
    );
    const server = createServer({ cert: live.cert, key: live.key }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca: liveCa.cert }, () => undefined);
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    server.close();
    expect(answer).toBe('ok');
  });
});
