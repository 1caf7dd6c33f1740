// Starts the webhook as --webhook-* configure it: the serving certificate from a mounted directory
// (cert-manager), re-read on change, or self-managed in a Secret (certs.ts).

import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadTlsPair, watchTlsPair } from '../../lib/tls.js';
import type { WebhookOptions } from '../controller/options.js';
import type { KubeClient } from '../kube/client.js';
import { SelfManagedCertificates } from './certs.js';
import { WebhookServer } from './server.js';

export interface RunningWebhook {
  close(): Promise<void>;
}

export async function startWebhook(
  options: WebhookOptions,
  kube: KubeClient,
  namespace: string,
  logger: Logger,
): Promise<RunningWebhook> {
  const { certs } = options;
  if (certs.kind === 'dir') {
    const files = { certFile: join(certs.dir, 'tls.crt'), keyFile: join(certs.dir, 'tls.key') };
    const pair = loadTlsPair(files);
    const server = new WebhookServer({ host: options.host, port: options.port, ...pair, logger });
    await server.listen();
    const watch = watchTlsPair(
      files,
      (next) => {
        server.setCertificate(next.cert, next.key);
        logger.info({ dir: certs.dir }, 'webhook: serving the renewed certificate');
      },
      (err) =>
        logger.warn({ err, dir: certs.dir }, 'webhook: the new certificate does not load; keeping the old'),
    );
    logger.info({ listen: `${options.host}:${options.port}`, dir: certs.dir }, 'webhook: serving');
    return {
      close: async () => {
        watch.close();
        await server.close();
      },
    };
  }
  let server: WebhookServer | undefined;
  const managed = new SelfManagedCertificates({
    kubeConfig: kube.config,
    namespace,
    secretName: certs.secretName,
    webhookConfiguration: certs.webhookConfiguration,
    hosts: certs.hosts,
    servingValidityMs: certs.servingValidityMs,
    caValidityMs: certs.caValidityMs,
    logger,
    serve: (pair) => server?.setCertificate(pair.cert, pair.key),
  });
  let first: Awaited<ReturnType<SelfManagedCertificates['sync']>>;
  try {
    first = await managed.sync();
  } catch (err) {
    throw new Error(
      `webhook: cannot keep certificates in Secret ${namespace}/${certs.secretName} and the caBundle of ` +
        `ValidatingWebhookConfiguration ${certs.webhookConfiguration}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  server = new WebhookServer({ host: options.host, port: options.port, ...first.serving, logger });
  await server.listen();
  await managed.start(certs.syncIntervalMs);
  logger.info(
    { listen: `${options.host}:${options.port}`, secret: `${namespace}/${certs.secretName}` },
    'webhook: serving a self-managed certificate',
  );
  return {
    close: async () => {
      managed.stop();
      await server?.close();
    },
  };
}
