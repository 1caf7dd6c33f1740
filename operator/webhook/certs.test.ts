import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { due, rotate } from './certs.js';

const DAY = 86_400_000;
const o = (now: Date) => ({
  now,
  hosts: ['op.ns.svc', '127.0.0.1'],
  servingValidityMs: 90 * DAY,
  caValidityMs: 365 * DAY,
});

describe('self-managed webhook certificates', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const first = rotate(undefined, o(t0));

  it('issue a CA and a serving certificate for the hosts, and the CA as the bundle', () => {
    const leaf = new X509Certificate(first.serving.cert);
    expect(leaf.checkIssued(new X509Certificate(first.ca.cert))).toBe(true);
    expect(leaf.subjectAltName).toBe('DNS:op.ns.svc, IP Address:127.0.0.1');
    expect(first.caBundle).toBe(first.ca.cert);
  });

  it('keep everything while nothing is due, so a sync writes nothing', () => {
    const later = rotate(first, o(new Date(t0.getTime() + 30 * DAY)));
    expect(later).toEqual(first);
  });

  it('renew the serving certificate after two thirds of its life, with the same CA', () => {
    const renewed = rotate(first, o(new Date(t0.getTime() + 61 * DAY)));
    expect(renewed.ca).toEqual(first.ca);
    expect(renewed.serving.cert).not.toBe(first.serving.cert);
    expect(new X509Certificate(renewed.serving.cert).checkIssued(new X509Certificate(first.ca.cert))).toBe(
      true,
    );
  });

  it('reissue a serving certificate that lives longer than the validity now asked for', () => {
    const shorter = rotate(first, { ...o(t0), servingValidityMs: DAY });
    expect(shorter.ca).toEqual(first.ca);
    expect(Date.parse(new X509Certificate(shorter.serving.cert).validTo)).toBe(t0.getTime() + DAY);
    expect(rotate(shorter, { ...o(t0), servingValidityMs: DAY })).toEqual(shorter);
  });

  it('reissue the serving certificate when the hosts change', () => {
    const moved = rotate(first, { ...o(t0), hosts: ['other.ns.svc'] });
    expect(new X509Certificate(moved.serving.cert).subjectAltName).toBe('DNS:other.ns.svc');
  });

  it('renew the CA after two thirds of its life, trusting old and new until the old expires', () => {
    const at = new Date(t0.getTime() + 250 * DAY);
    const renewed = rotate(first, o(at));
    expect(renewed.ca.cert).not.toBe(first.ca.cert);
    expect(renewed.caBundle).toBe(renewed.ca.cert + first.ca.cert);
    expect(new X509Certificate(renewed.serving.cert).checkIssued(new X509Certificate(renewed.ca.cert))).toBe(
      true,
    );
    // Past the old CA's expiry, only the new one stays in the bundle.
    const after = rotate(renewed, o(new Date(t0.getTime() + 370 * DAY)));
    expect(after.caBundle).toBe(renewed.ca.cert);
  });

  it('judge unreadable or missing certificates due', () => {
    expect(due(undefined, t0)).toBe(true);
    expect(due('garbage', t0)).toBe(true);
    expect(due(first.serving.cert, t0)).toBe(false);
  });
});
