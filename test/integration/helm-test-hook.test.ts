// The chart's `helm test` hook, run as its Pod runs it: the command and arguments of the rendered
// hook (templates/tests/write-sample.yaml), with the proxy Service's address replaced by a real
// proxy on loopback, writing through the proxy into a real Prometheus.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR } from '../../charts/values.js';
import {
  eventually,
  helmPath,
  type PrometheusReceiver,
  type ProxyProgram,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The hook container's command line, from `helm template`. */
function hookCommand(set: string[]): string[] {
  const r = spawnSync(
    helmPath(),
    [
      'template',
      'r',
      join(ROOT, CHART_DIR),
      '-n',
      'obs',
      '--set',
      'upstream=http://x/api/v1/write',
      ...set.flatMap((s) => ['--set', s]),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  const pod = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .find((d) => d?.kind === 'Pod' && d.metadata?.name === 'r-cardinal-test-write') as unknown as {
    spec: { containers: { command: string[]; args: string[] }[] };
  };
  const c = pod.spec.containers[0]!;
  return [...c.command, ...c.args];
}

/** Runs the hook's command here: /app is the image's WORKDIR, this checkout here. */
function runHook(command: string[], proxyUrl: string): { code: number; out: string } {
  const [, script, url, ...rest] = command;
  const local = script!.replace('/app/', `${ROOT}/`);
  const target = url!.replace('http://r-cardinal-proxy.obs.svc:8080', proxyUrl);
  const r = spawnSync(process.execPath, [local, target, ...rest], { encoding: 'utf8' });
  return { code: r.status ?? 1, out: r.stdout + r.stderr };
}

describe('the chart\u2019s helm test hook', () => {
  const track = useCleanup();
  let prometheus: PrometheusReceiver;
  let proxy: ProxyProgram;

  beforeAll(async () => {
    prometheus = track(await startPrometheusReceiver({ version: 2 }));
    proxy = track(await startProxy({ upstream: prometheus.remoteWriteUrl }));
  });

  it('writes one sample through the proxy, which reaches the receiver', async () => {
    const command = hookCommand([]);
    expect(command[0]).toBe('node');
    const r = runHook(command, proxy.url);
    expect(r.out).toContain('HTTP 204');
    expect(r.code).toBe(0);
    await eventually(async () => {
      const [sample] = await prometheus.query('cardinal_helm_test_sample{source="helm-test"}');
      expect(sample?.value).toBe(1);
    });
  });

  it('fails when the proxy does not take the sample, and expects 401 when ingest needs credentials', async () => {
    const auth = hookCommand(['proxy.auth.secretName=ingest']);
    expect(auth).toContain('--expect-status=401');
    // This proxy is open, so the hook that expects a refusal fails, saying what it got.
    const r = runHook(auth, proxy.url);
    expect(r.code).toBe(1);
    expect(r.out).toContain('wanted 401');
    await proxy.stop();
    const down = runHook(hookCommand([]), proxy.url);
    expect(down.code).toBe(1);
    expect(down.out).toMatch(/ECONNREFUSED/);
  });
});
