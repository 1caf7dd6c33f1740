// Self-managed webhook certificates, for clusters without cert-manager: a CA and a serving
// certificate signed by it, kept in one Secret so that every replica serves the same pair, with
// the CA written into the ValidatingWebhookConfiguration's caBundle so the API server trusts it.
//
// Every replica syncs on a timer: it reads the Secret, issues what is missing or due (the serving
// certificate once two thirds of its life have passed, the CA likewise), writes the Secret with
// optimistic concurrency (a replica that loses the race reads the winner's), serves the pair, and
// puts the CA into the caBundle. A renewed CA is appended to the bundle beside the old one until
// the old one expires, so API servers that cached either keep trusting the serving certificate.

import { createPrivateKey as createKey, X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { statusCode } from '../kube/client.js';
import { issueCa, issueServing, type KeyPairPem } from './x509.js';

const CA_NAME = 'cardinal-operator-webhook-ca';

export interface Certificates {
  readonly caBundle: string;
  readonly ca: KeyPairPem;
  readonly serving: KeyPairPem;
}

export interface RotationOptions {
  readonly now: Date;
  readonly hosts: readonly string[];
  readonly servingValidityMs: number;
  readonly caValidityMs: number;
}

/** Whether a certificate is past two thirds of its validity at `now`, or expired, or unreadable. */
export function due(pem: string | undefined, now: Date): boolean {
  if (pem === undefined || pem === '') return true;
  try {
    const c = new X509Certificate(pem);
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    return now.getTime() >= from + ((to - from) * 2) / 3;
  } catch {
    return true;
  }
}

/** Whether the serving certificate names exactly `hosts`, is signed by `ca`, and its key matches. */
function fits(current: Certificates, hosts: readonly string[]): boolean {
  try {
    const leaf = new X509Certificate(current.serving.cert);
    if (!leaf.checkIssued(new X509Certificate(current.ca.cert))) return false;
    if (!leaf.checkPrivateKey(createKey(current.serving.key))) return false;
    const names = (leaf.subjectAltName ?? '').split(', ').map((n) => n.replace(/^(DNS|IP Address):/, ''));
    return hosts.every((h) => names.includes(h.includes(':') ? expandIpv6(h) : h));
  } catch {
    return false;
  }
}

function expandIpv6(ip: string): string {
  const [head = '', tail] = ip.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => Number.parseInt(g, 16).toString(16)).join(':');
}

/**
 * The certificates to serve from now on, given what the Secret holds (undefined: nothing usable).
 * Pure: the same input gives a pair that needs no write.
 */
export function rotate(current: Certificates | undefined, o: RotationOptions): Certificates {
  const validity = (ms: number) =>
    [new Date(o.now.getTime() - 60_000), new Date(o.now.getTime() + ms)] as const;
  let ca = current?.ca;
  let bundle = current?.caBundle ?? '';
  if (ca === undefined || due(ca.cert, o.now)) {
    ca = issueCa(CA_NAME, ...validity(o.caValidityMs));
    bundle = ca.cert;
    // The old CA stays trusted while it is valid: the serving certificate it signed is still served.
    if (current !== undefined && current.ca.cert !== '' && !expired(current.ca.cert, o.now))
      bundle += current.ca.cert;
  } else {
    bundle = keepValid(bundle, o.now) || ca.cert;
  }
  let serving = current?.serving;
  if (
    serving === undefined ||
    ca !== current?.ca ||
    due(serving.cert, o.now) ||
    outlives(serving.cert, o.servingValidityMs) ||
    !fits({ ca, serving, caBundle: bundle }, o.hosts)
  ) {
    serving = issueServing(ca, CA_NAME, o.hosts, ...validity(o.servingValidityMs));
  }
  return { ca, serving, caBundle: bundle };
}

/** Whether a certificate is valid for longer than `validityMs` (plus the minute it is backdated): the flag was shortened. */
function outlives(pem: string, validityMs: number): boolean {
  try {
    const c = new X509Certificate(pem);
    return Date.parse(c.validTo) - Date.parse(c.validFrom) > validityMs + 60_000;
  } catch {
    return true;
  }
}

function expired(pem: string, now: Date): boolean {
  try {
    return now.getTime() >= Date.parse(new X509Certificate(pem).validTo);
  } catch {
    return true;
  }
}

/** The certificates of a PEM bundle that have not expired, in order. */
function keepValid(bundle: string, now: Date): string {
  const certs = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  return certs.filter((c) => !expired(c, now)).join('');
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));

function fromSecret(secret: V1Secret | undefined): Certificates | undefined {
  const d = secret?.data;
  if (d === undefined) return undefined;
  const certs = {
    ca: { cert: unb64(d['ca.crt']), key: unb64(d['ca.key']) },
    serving: { cert: unb64(d['tls.crt']), key: unb64(d['tls.key']) },
    caBundle: unb64(d['ca-bundle.crt']),
  };
  return certs.ca.cert === '' || certs.ca.key === '' ? undefined : certs;
}

function secretData(c: Certificates): Record<string, string> {
  return {
    'ca.crt': b64(c.ca.cert),
    'ca.key': b64(c.ca.key),
    'tls.crt': b64(c.serving.cert),
    'tls.key': b64(c.serving.key),
    'ca-bundle.crt': b64(c.caBundle),
  };
}

export interface SelfManagedOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly secretName: string;
  /** The ValidatingWebhookConfiguration whose webhooks get the caBundle. */
  readonly webhookConfiguration: string;
  readonly hosts: readonly string[];
  readonly servingValidityMs: number;
  readonly caValidityMs: number;
  readonly logger: Logger;
  /** Called with the pair to serve whenever it changes. */
  readonly serve: (serving: KeyPairPem) => void;
  readonly now?: () => Date;
}

export class SelfManagedCertificates {
  readonly #o: SelfManagedOptions;
  readonly #core: CoreV1Api;
  readonly #admission: AdmissionregistrationV1Api;
  #served = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(options: SelfManagedOptions) {
    this.#o = options;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#admission = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  }

  /** One round: read, rotate if due, write, serve, and update the caBundle. Throws on API errors. */
  async sync(): Promise<Certificates> {
    const { namespace, secretName: name } = this.#o;
    const now = (this.#o.now ?? (() => new Date()))();
    for (let attempt = 0; ; attempt++) {
      let secret: V1Secret | undefined;
      try {
        secret = await this.#core.readNamespacedSecret({ name, namespace });
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
      }
      const current = fromSecret(secret);
      const next = rotate(current, {
        now,
        hosts: this.#o.hosts,
        servingValidityMs: this.#o.servingValidityMs,
        caValidityMs: this.#o.caValidityMs,
      });
      const changed =
        current === undefined ||
        next.serving.cert !== current.serving.cert ||
        next.caBundle !== current.caBundle;
      try {
        if (secret === undefined) {
          await this.#core.createNamespacedSecret({
            namespace,
            body: { metadata: { name, namespace }, type: 'Opaque', data: secretData(next) },
          });
        } else if (changed) {
          await this.#core.replaceNamespacedSecret({
            name,
            namespace,
            body: { ...secret, data: secretData(next) },
          });
        }
      } catch (err) {
        // Another replica wrote first: serve what it wrote.
        if ((statusCode(err) === 409 || statusCode(err) === 422) && attempt < 3) continue;
        throw err;
      }
      if (changed) this.#o.logger.info({ secret: `${namespace}/${name}` }, 'webhook: issued certificates');
      if (next.serving.cert !== this.#served) {
        this.#o.serve(next.serving);
        this.#served = next.serving.cert;
      }
      await this.#injectCaBundle(next.caBundle);
      return next;
    }
  }

  async #injectCaBundle(bundle: string): Promise<void> {
    const name = this.#o.webhookConfiguration;
    const vwc = await this.#admission.readValidatingWebhookConfiguration({ name });
    const want = b64(bundle);
    if ((vwc.webhooks ?? []).every((w) => w.clientConfig.caBundle === want)) return;
    for (const w of vwc.webhooks ?? []) w.clientConfig.caBundle = want;
    await this.#admission.replaceValidatingWebhookConfiguration({ name, body: vwc });
    this.#o.logger.info({ webhookConfiguration: name }, 'webhook: wrote the caBundle');
  }

  /** Syncs now and then every `intervalMs`; errors are logged and retried on the next round. */
  async start(intervalMs: number): Promise<void> {
    await this.sync();
    this.#timer = setInterval(() => {
      this.sync().catch((err: unknown) => this.#o.logger.warn({ err }, 'webhook: certificate sync failed'));
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
