// The operator's validating admission webhook against a real kube-apiserver: the chart's
// ValidatingWebhookConfiguration registered (its Service reference swapped for a loopback URL, as
// no Service routes here), the API server calling the real operator over TLS, `kubectl apply` of
// a bad policy refused with the proxy validator's own message, certificates self-managed and
// rotated or read from a directory as cert-manager writes them, and what failurePolicy and
// timeoutSeconds do when the webhook cannot answer.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR } from '../../charts/values.js';
import type { MetricPolicy } from '../../operator/api/types.js';
import { validatePolicy } from '../../operator/controller/reconcile.js';
import { issueCa, issueServing } from '../../operator/webhook/x509.js';
import {
  type ControlPlane,
  eventually,
  freePort,
  helmPath,
  installChartRbac,
  installCrd,
  type OperatorProgram,
  startControlPlane,
  startOperator,
  useCleanup,
} from '../framework/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NS = 'cardinal-system';
const WEBHOOK = 'validate.metricpolicies.cardinal.dev';
const BAD_REGEX = { drop: ['(?<name>a)++'] };

interface WebhookConfiguration {
  metadata: { name: string };
  webhooks: {
    failurePolicy: string;
    timeoutSeconds: number;
    clientConfig: { url?: string; service?: unknown; caBundle?: string };
  }[];
}

/** The chart's ValidatingWebhookConfiguration, pointed at `url` instead of the operator Service. */
function chartWebhookConfiguration(url: string, set: string[] = []): WebhookConfiguration {
  const r = spawnSync(
    helmPath(),
    [
      'template',
      'r',
      join(ROOT, CHART_DIR),
      '-n',
      NS,
      '--set',
      'mode=sidecar',
      '--set',
      'operator.webhook.enabled=true',
      '--set',
      'operator.webhook.certManager=false',
      ...set.flatMap((s) => ['--set', s]),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`helm template: ${r.stderr}`);
  const vwc = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as { kind?: string } | null)
    .find((d) => d?.kind === 'ValidatingWebhookConfiguration') as unknown as WebhookConfiguration;
  for (const w of vwc.webhooks) w.clientConfig = { url };
  return vwc;
}

const policy = (name: string, spec: Record<string, unknown>) =>
  JSON.stringify({
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { name, namespace: 'team-a' },
    spec,
  });

/** What the operator's reconcile, and so the proxy's validator, says of `spec`. */
function validatorMessage(spec: Record<string, unknown>): string {
  const verdict = validatePolicy({
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: { name: 'x', namespace: 'team-a', generation: 1 },
    spec: spec as MetricPolicy['spec'],
  });
  if (verdict.ok) throw new Error('the validator accepts it');
  return verdict.message;
}

/** The serial number of the certificate served at 127.0.0.1:port. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

describe('the MetricPolicy validating webhook on a real API server', () => {
  const track = useCleanup();
  let plane: ControlPlane;
  let port: number;
  let operator: OperatorProgram | undefined;
  /** The chart's ServiceAccount with the webhook's RBAC: the operator runs with nothing more. */
  let kubeconfig: string;
  const vwcName = 'r-cardinal-metricpolicies';

  const apply = (yaml: string) => plane.kubectl(['apply', '-f', '-'], { input: yaml });
  const startSelfManaged = async (extra: string[] = []) => {
    operator = await startOperator({
      plane,
      kubeconfig,
      namespace: NS,
      args: [
        '--leader-elect=false',
        `--webhook-listen=127.0.0.1:${port}`,
        '--webhook-secret=r-cardinal-webhook-tls',
        `--webhook-configuration=${vwcName}`,
        '--webhook-hosts=127.0.0.1',
        ...extra,
      ],
    });
    track(operator.program);
  };
  const caBundle = async () =>
    (
      await plane.kubectl([
        'get',
        'validatingwebhookconfiguration',
        vwcName,
        '-o',
        'jsonpath={.webhooks[0].clientConfig.caBundle}',
      ])
    ).stdout;
  const secretField = async (key: string) =>
    (
      await plane.kubectl([
        '-n',
        NS,
        'get',
        'secret',
        'r-cardinal-webhook-tls',
        '-o',
        `jsonpath={.data.${key.replace('.', '\\.')}}`,
      ])
    ).stdout;

  beforeAll(async () => {
    plane = track(await startControlPlane());
    await installCrd(plane);
    for (const ns of [NS, 'team-a'])
      await plane.apply(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"${ns}"}}`);
    port = await freePort();
    await plane.apply(
      JSON.stringify(chartWebhookConfiguration(`https://127.0.0.1:${port}/validate-metricpolicy`)),
    );
    ({ kubeconfig } = await installChartRbac(plane, 'r', NS, [
      'mode=sidecar',
      'operator.webhook.enabled=true',
      'operator.webhook.certManager=false',
    ]));
    await startSelfManaged();
  });

  it('registers with the CA the operator made, written into the caBundle', async () => {
    await eventually(async () => expect(await caBundle()).not.toBe(''));
    expect(await caBundle()).toBe(await secretField('ca-bundle.crt'));
  });

  it('needs no more than the chart grants: other Secrets and webhook configurations stay out of reach', async () => {
    const can = async (args: string[]) =>
      (await plane.kubectl(['--kubeconfig', kubeconfig, 'auth', 'can-i', ...args])).stdout.trim();
    expect(await can(['get', 'secret/r-cardinal-webhook-tls', '-n', NS])).toBe('yes');
    expect(await can(['get', 'secret/other', '-n', NS])).toBe('no');
    expect(await can(['update', `validatingwebhookconfiguration/${vwcName}`])).toBe('yes');
    expect(await can(['update', 'validatingwebhookconfiguration/someone-elses'])).toBe('no');
  });

  it('admits a valid policy', async () => {
    const r = await apply(policy('good', { drop: ['debug_.*'] }));
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/metricpolicy.cardinal.dev\/good (created|configured|unchanged)/);
  });

  it.each([
    ['a regex RE2 refuses', BAD_REGEX],
    ['a bad selector', { match: { selector: '{job="a"' } }],
    [
      'a limit on a metric pattern RE2 refuses',
      { limits: { perMetric: [{ metric: 'a(?=b)', maxSeries: 10 }] } },
    ],
  ])('refuses %s at kubectl apply, with the proxy validator\u2019s message', async (_n, spec) => {
    const name = `bad-${randomBytes(3).toString('hex')}`;
    const r = await apply(policy(name, spec));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`admission webhook "${WEBHOOK}" denied the request: `);
    expect(r.stderr).toContain(validatorMessage(spec).split('\n')[0]);
    const get = await plane.kubectl(['-n', 'team-a', 'get', 'mp', name]);
    expect(get.stderr).toMatch(/NotFound/);
  });

  it('keeps serving while the operator rotates its certificates', async () => {
    await operator?.program.stop();
    await startSelfManaged(['--webhook-cert-validity=10s', '--webhook-cert-sync=1s']);
    const first = await secretField('tls.crt');
    await eventually(async () => expect(await secretField('tls.crt')).not.toBe(first), { timeoutMs: 30_000 });
    const second = await secretField('tls.crt');
    await eventually(async () => expect(await secretField('tls.crt')).not.toBe(second), {
      timeoutMs: 30_000,
    });
    const r = await apply(policy('bad-after-rotation', BAD_REGEX));
    expect(r.stderr).toContain(`admission webhook "${WEBHOOK}" denied the request: `);
    expect((await apply(policy('good-after-rotation', { drop: ['x_.*'] }))).code).toBe(0);
  });

  it('with failurePolicy Fail refuses changes while the webhook is down, and with Ignore lets them through', async () => {
    await operator?.program.stop();
    const down = await apply(policy('while-down', { drop: ['y_.*'] }));
    expect(down.code).not.toBe(0);
    expect(down.stderr).toContain(`failed calling webhook "${WEBHOOK}"`);
    const vwc = chartWebhookConfiguration(`https://127.0.0.1:${port}/validate-metricpolicy`, [
      'operator.webhook.failurePolicy=Ignore',
    ]);
    vwc.webhooks[0]!.clientConfig.caBundle = await caBundle();
    await plane.apply(JSON.stringify(vwc));
    const r = await apply(policy('while-down', { drop: ['y_.*'] }));
    expect(r.code, r.stderr).toBe(0);
  });

  it('with failurePolicy Fail refuses changes the webhook does not answer within timeoutSeconds, and an untrusted certificate', async () => {
    // A listener that accepts and never answers.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    track({
      dirs: [],
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          silent.close(() => resolve());
        }),
    });
    const silentPort = (silent.address() as { port: number }).port;
    const vwc = chartWebhookConfiguration(`https://127.0.0.1:${silentPort}/validate-metricpolicy`, [
      'operator.webhook.timeoutSeconds=1',
    ]);
    vwc.webhooks[0]!.clientConfig.caBundle = await caBundle();
    await plane.apply(JSON.stringify(vwc));
    const slow = await apply(policy('too-slow', { drop: ['z_.*'] }));
    expect(slow.code).not.toBe(0);
    expect(slow.stderr).toContain(`failed calling webhook "${WEBHOOK}"`);
    expect(slow.stderr).toMatch(/context deadline exceeded|Timeout|timeout/);

    // The operator again, but the configuration trusts another CA.
    await startSelfManaged();
    const other = issueCa('someone-else', new Date(Date.now() - 60_000), new Date(Date.now() + 3_600_000));
    const untrusted = chartWebhookConfiguration(`https://127.0.0.1:${port}/validate-metricpolicy`);
    untrusted.webhooks[0]!.clientConfig.caBundle = Buffer.from(other.cert).toString('base64');
    await plane.apply(JSON.stringify(untrusted));
    // The operator puts its own CA back on its next sync (1 minute); until then the API server refuses.
    const r = await apply(policy('untrusted', { drop: ['w_.*'] }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/x509|certificate/);
  });
});

describe('the webhook with a certificate directory, as cert-manager mounts it', () => {
  const track = useCleanup();

  it('serves the files\u2019 certificate, refuses bad policies, and serves a renewed pair without a restart', async () => {
    const plane = track(await startControlPlane());
    await installCrd(plane);
    for (const ns of [NS, 'team-a'])
      await plane.apply(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"${ns}"}}`);
    const now = Date.now();
    const ca = issueCa('cert-manager-like-ca', new Date(now - 60_000), new Date(now + 86_400_000));
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-webhook-certs-'));
    const write = () => {
      const pair = issueServing(
        ca,
        'cert-manager-like-ca',
        ['127.0.0.1'],
        new Date(now - 60_000),
        new Date(now + 86_400_000),
      );
      writeFileSync(join(dir, 'tls.key'), pair.key);
      writeFileSync(join(dir, 'tls.crt'), pair.cert);
    };
    write();
    const port = await freePort();
    const vwc = chartWebhookConfiguration(`https://127.0.0.1:${port}/validate-metricpolicy`);
    vwc.webhooks[0]!.clientConfig.caBundle = Buffer.from(ca.cert).toString('base64');
    await plane.apply(JSON.stringify(vwc));
    const op = await startOperator({
      plane,
      namespace: NS,
      args: ['--leader-elect=false', `--webhook-listen=127.0.0.1:${port}`, `--webhook-cert-dir=${dir}`],
    });
    track(op.program);
    const bad = await plane.kubectl(['apply', '-f', '-'], { input: policy('bad', BAD_REGEX) });
    expect(bad.stderr).toContain(`admission webhook "${WEBHOOK}" denied the request: `);
    const before = await servedSerial(port);
    write();
    await eventually(async () => expect(await servedSerial(port)).not.toBe(before), { timeoutMs: 30_000 });
    const good = await plane.kubectl(['apply', '-f', '-'], { input: policy('good', { drop: ['a_.*'] }) });
    expect(good.code, good.stderr).toBe(0);
  });
});
