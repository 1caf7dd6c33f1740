#!/usr/bin/env node
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { readVersion } from '../lib/version.js';
import { MetricPolicyController } from './controller/metric-policy.js';
import { createOperatorMetrics } from './controller/metrics.js';
import { parseOperatorOptions, UsageError, usage } from './controller/options.js';
import { WorkQueue } from './controller/queue.js';
import { KubeClient, loadKubeConfig } from './kube/client.js';
import { candidateIdentity, LeaderElector, leaseApiFromKubeConfig } from './leader/lease.js';
import { type RunningWebhook, startWebhook } from './webhook/start.js';

async function main(): Promise<number> {
  let options: ReturnType<typeof parseOperatorOptions>;
  try {
    options = parseOperatorOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`cardinal-operator: ${err.message}\n\n${usage}`);
      return 2;
    }
    throw err;
  }
  if (options === 'help') {
    process.stdout.write(usage);
    return 0;
  }

  const version = readVersion();
  const logger = pino({ level: options.logLevel, base: { component: 'operator' } });
  let kube: KubeClient;
  try {
    // Told of every 429 a write got; metrics exist before the first write.
    kube = new KubeClient(loadKubeConfig(options.kubeconfig), {
      throttled: (verb, resource) => metrics.throttled(verb, resource),
    });
  } catch (err) {
    process.stderr.write(
      `cardinal-operator: cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 2;
  }
  // The controller is made after its metrics, which read its cache while it leads.
  let controller: MetricPolicyController | undefined;
  const metrics = createOperatorMetrics(version, () => queue.length, {
    policies: () => (controller?.leading === true ? controller.policies() : []),
  });
  const queue = new WorkQueue<string>({ metrics: metrics.queue });
  controller = new MetricPolicyController({
    kube,
    namespace: options.namespace,
    operatorVersion: version,
    logger,
    metrics,
    queue,
    proxies: options.proxies,
    proxyConfigPath: options.proxyConfigPath,
    proxyTimeoutMs: options.proxyTimeoutMs,
    proxyTls: options.proxyTls,
    proxyBearerTokenFile: options.proxyBearerTokenFile,
    statusIntervalMs: options.statusIntervalMs,
    statusWriteQps: options.statusWriteQps,
    statusWriteBurst: options.statusWriteBurst,
    statusWorkers: options.statusWorkers,
    configShards: options.configShards,
    identity: hostname(),
    usage: options.usage,
  });
  const identity = candidateIdentity(process.env.POD_NAME ?? hostname());
  let stopping = false;
  let exitCode: ((code: number) => void) | undefined;

  let live = true;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return reply(live ? 200 : 503, live ? 'ok\n' : 'stopping\n');
    if (path === '/readyz') {
      return controller.ready ? reply(200, 'ok\n') : reply(503, 'caches not synced\n');
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => reply(200, text, metrics.registry.contentType),
        (err: unknown) => reply(500, `${String(err)}\n`),
      );
      return;
    }
    reply(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.metricsPort, options.metricsHost, () => resolve());
  });
  logger.info(
    {
      version,
      namespace: options.namespace,
      proxies: options.proxies.kind,
      metrics: `${options.metricsHost}:${options.metricsPort}`,
      server: kube.config.getCurrentCluster()?.server,
    },
    'cardinal-operator starting',
  );

  // Every replica serves the webhook, leader or not: the Service sends reviews to any ready pod.
  let webhook: RunningWebhook | undefined;
  if (options.webhook !== undefined) {
    try {
      webhook = await startWebhook(options.webhook, kube, options.namespace, logger);
    } catch (err) {
      logger.fatal({ err }, err instanceof Error ? err.message : String(err));
      return 1;
    }
  }

  const le = options.leaderElection;
  const elector = le.enabled
    ? new LeaderElector({
        namespace: le.namespace,
        name: 'cardinal-operator',
        identity,
        leaseDurationMs: le.leaseDurationMs,
        renewDeadlineMs: le.renewDeadlineMs,
        retryPeriodMs: le.retryPeriodMs,
        client: leaseApiFromKubeConfig(kube.config, {
          throttled: (verb, resource) => metrics.throttled(verb, resource),
          deadlineMs: le.renewDeadlineMs,
        }),
        onError: (err) => logger.warn({ err }, 'leader election'),
        onStartedLeading: () => {
          logger.info({ identity }, 'acquired the lease; reconciling');
          metrics.leader(true);
          controller.lead();
        },
        onStoppedLeading: async () => {
          metrics.leader(false);
          if (stopping) return;
          // As controller-runtime does: a replica that lost the Lease may still have writes in
          // flight, so it stops and exits; Kubernetes restarts it as a standby.
          logger.error({ identity }, 'lost the lease; exiting');
          await controller.stop();
          exitCode?.(1);
        },
      })
    : undefined;

  return new Promise<number>((resolve) => {
    exitCode = resolve;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: stopping watches, finishing queued reconciles');
      const timer = setTimeout(() => {
        logger.warn({ timeoutMs: options.shutdownTimeoutMs }, 'shutdown timed out');
        resolve(1);
      }, options.shutdownTimeoutMs);
      timer.unref();
      // Workers finish first, then the Lease is handed over, so a standby takes over at once
      // and never overlaps with our last writes.
      controller
        .stop()
        .then(() => elector?.release())
        .then(() => webhook?.close())
        .then(() => {
          live = false;
          return new Promise<void>((done) => server.close(() => done()));
        })
        .then(
          () => {
            clearTimeout(timer);
            logger.info('stopped');
            resolve(0);
          },
          (err: unknown) => {
            logger.error({ err }, 'error while shutting down');
            resolve(1);
          },
        );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    const started = elector
      ? controller.startCaches().then(() => {
          logger.info(
            { identity, lease: `${le.namespace}/cardinal-operator` },
            'caches synced; campaigning for the lease',
          );
          elector.start();
        })
      : controller.start().then(() => metrics.leader(true));
    started.catch((err: unknown) => {
      logger.fatal({ err }, 'controller failed to start');
      resolve(1);
    });
  });
}

main().then(
  (code) => {
    // Watches keep sockets open; exit explicitly once shutdown is done.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(
      `cardinal-operator: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
