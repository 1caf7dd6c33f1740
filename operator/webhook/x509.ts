// Just enough X.509 (RFC 5280) to issue the webhook's own certificates without a library: a CA
// and a serving certificate signed by it, both ECDSA P-256 with SHA-256, DER-encoded by hand
// (ITU-T X.690) and returned as PEM. Node can parse and verify certificates (X509Certificate) but
// not write them; the tests check what is written here with that parser, with openssl, and with
// the API server's TLS client.

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const tlv = (tag: number, ...content: Buffer[]): Buffer => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
};
const seq = (...items: Buffer[]) => tlv(0x30, ...items);
const set = (...items: Buffer[]) => tlv(0x31, ...items);
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer, unused = 0) => tlv(0x03, Buffer.from([unused]), b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const explicit = (n: number, inner: Buffer) => tlv(0xa0 | n, inner);

function integer(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  return tlv(0x02, (b[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const n of rest) {
    const groups: number[] = [];
    for (let v = n; ; v = Math.floor(v / 128)) {
      groups.unshift(v & 0x7f);
      if (v < 128) break;
    }
    out.push(...groups.map((g, i) => (i < groups.length - 1 ? g | 0x80 : g)));
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${iso}Z`));
}

const name = (cn: string) => seq(set(seq(oid(OID.commonName), tlv(0x0c, Buffer.from(cn, 'utf8')))));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // Expand :: and read eight groups.
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head === '' || head === undefined ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

/** The key identifier RFC 5280 4.2.1.2 (1) suggests: SHA-1 of the subjectPublicKey bits. */
function keyId(spki: Buffer): Buffer {
  // SPKI = SEQUENCE { AlgorithmIdentifier, BIT STRING }; for P-256 the point is the last 65 bytes.
  return createHash('sha1')
    .update(spki.subarray(spki.length - 65))
    .digest();
}

export interface KeyPairPem {
  readonly cert: string;
  readonly key: string;
}

interface IssueOptions {
  readonly commonName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly ca: boolean;
  /** DNS names and IP addresses, for a serving certificate. */
  readonly hosts?: readonly string[];
  /** The signer: its name and key; absent: self-signed. */
  readonly issuer?: { readonly commonName: string; readonly key: KeyObject; readonly spki: Buffer };
}

function issue(options: IssueOptions): { pem: KeyPairPem; key: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const signer = options.issuer ?? { commonName: options.commonName, key: privateKey, spki };
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const extensions = [
    extension(OID.basicConstraints, true, options.ca ? seq(bool(true)) : seq()),
    // keyCertSign and cRLSign for a CA (bits 5 and 6), digitalSignature for a leaf (bit 0).
    extension(OID.keyUsage, true, options.ca ? bits(Buffer.from([0x06]), 1) : bits(Buffer.from([0x80]), 7)),
    extension(OID.subjectKeyIdentifier, false, octets(keyId(spki))),
  ];
  if (options.issuer !== undefined)
    extensions.push(extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyId(signer.spki)))));
  if (!options.ca) {
    extensions.push(extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))));
    const names = (options.hosts ?? []).map((h) =>
      isIPv4(h) || isIPv6(h) ? tlv(0x87, ipBytes(h)) : tlv(0x82, Buffer.from(h, 'ascii')),
    );
    extensions.push(extension(OID.subjectAltName, false, seq(...names)));
  }
  const algorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    algorithm,
    name(signer.commonName),
    seq(time(options.notBefore), time(options.notAfter)),
    name(options.commonName),
    spki,
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, signer.key);
  const der = seq(tbs, algorithm, bits(signature));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return {
    pem: {
      cert: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    key: privateKey,
    spki,
  };
}

/** A self-signed CA valid from `notBefore` to `notAfter`. */
export function issueCa(commonName: string, notBefore: Date, notAfter: Date): KeyPairPem {
  return issue({ commonName, notBefore, notAfter, ca: true }).pem;
}

/** A serving certificate for `hosts` (DNS names or IPs), signed by the CA `ca`. */
export function issueServing(
  ca: KeyPairPem,
  caCommonName: string,
  hosts: readonly string[],
  notBefore: Date,
  notAfter: Date,
): KeyPairPem {
  const key = createPrivateKey(ca.key);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return issue({
    commonName: hosts[0] ?? 'cardinal-operator-webhook',
    notBefore,
    notAfter,
    ca: false,
    hosts,
    issuer: { commonName: caCommonName, key, spki },
  }).pem;
}
