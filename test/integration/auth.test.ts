// Authenticated ingest with real programs: Prometheus 2 agents write through the proxy binary,
// started with --auth.credentials-file on a directory projected as the kubelet projects a Secret,
// into a Prometheus 2 receiver. The right token's data arrives; a wrong token's does not and the
// sender counts the failure; rotating the token file switches which token works, without a
// restart; and no token ever reaches the proxy's log.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  metricSum,
  type PrometheusAgent,
  type PrometheusReceiver,
  type ProxyProgram,
  projectConfigMap,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  useCleanup,
} from '../framework/index.js';

const TOKEN_1 = 'first-token-7Qm2xV9pL4';
const TOKEN_2 = 'second-token-Zr8nK3wB6';
const WRONG = 'wrong-token-Hd5tY1cJ0';

const ADMIN = 'admin-token-Qs4Wd8Lp2';
const CREDENTIALS = `- tenant: team-a\n  bearerTokenFile: team-a.token\n- { tenant: ops, bearerToken: ${ADMIN}, allowedPaths: [], roles: [admin] }\n`;

describe('authenticated remote-write through the proxy', () => {
  const track = useCleanup();
  let secretDir: string;
  let receiver: PrometheusReceiver;
  let proxy: ProxyProgram;

  async function agent(suite: string, remoteWrite: Record<string, unknown>): Promise<PrometheusAgent> {
    const target = track(await startTarget({ sequence: { labels: { suite } } }));
    return track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
        remoteWrite: { extra: remoteWrite },
      }),
    );
  }

  async function arrived(suite: string): Promise<number> {
    return (await receiver.query(`cardinal_test_seq_total{suite="${suite}"}`)).length;
  }

  /** Samples the agent gave up on or is retrying: what a 401 turns into for a sender. */
  async function refused(a: PrometheusAgent): Promise<number> {
    return (
      (await metricSum(a.metricsUrl, 'prometheus_remote_storage_samples_failed_total')) +
      (await metricSum(a.metricsUrl, 'prometheus_remote_storage_samples_retried_total'))
    );
  }

  beforeAll(async () => {
    secretDir = join(mkdtempSync(join(tmpdir(), 'cardinal-auth-')), 'secret');
    await projectConfigMap(secretDir, { 'credentials.yaml': CREDENTIALS, 'team-a.token': `${TOKEN_1}\n` });
    receiver = track(await startPrometheusReceiver({ version: 2 }));
    proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: () => ['--auth.credentials-file', secretDir],
      }),
    );
  });
  afterAll(() => {
    rmSync(join(secretDir, '..'), { recursive: true, force: true });
  });

  it('the right token writes; a wrong one is refused and nothing of it arrives', async () => {
    const good = await agent('auth-good', { authorization: { credentials: TOKEN_1 } });
    const bad = await agent('auth-wrong', { bearer_token: WRONG });

    await eventually(async () => expect(await arrived('auth-good')).toBe(1), { timeoutMs: 30_000 });
    await eventually(async () => expect(await refused(bad)).toBeGreaterThan(0), { timeoutMs: 30_000 });
    expect(await refused(good)).toBe(0);
    expect(await arrived('auth-wrong')).toBe(0);
    expect(await proxy.metric('cardinal_proxy_auth_failures_total', { reason: 'invalid' })).toBeGreaterThan(
      0,
    );
    await bad.close();
  });

  it('a rotated token file makes the new token valid and the old one invalid, without a restart', async () => {
    const pid = proxy.program.pid;
    const invalidBefore = await proxy.metric('cardinal_proxy_auth_failures_total', { reason: 'invalid' });
    await projectConfigMap(secretDir, { 'credentials.yaml': CREDENTIALS, 'team-a.token': `${TOKEN_2}\n` });

    // The agent still sending the old token is now refused.
    await eventually(
      async () =>
        expect(
          await proxy.metric('cardinal_proxy_auth_failures_total', { reason: 'invalid' }),
        ).toBeGreaterThan(invalidBefore),
      { timeoutMs: 15_000 },
    );
    await agent('auth-rotated', { authorization: { credentials: TOKEN_2 } });
    await eventually(async () => expect(await arrived('auth-rotated')).toBe(1), { timeoutMs: 30_000 });
    expect(proxy.program.pid).toBe(pid);
    expect(await proxy.metric('cardinal_proxy_auth_last_reload_successful')).toBe(1);

    const anonymous = await fetch(`${proxy.url}/api/v1/status/config`);
    expect(anonymous.status).toBe(401);
    await anonymous.body?.cancel();
    const admin = { headers: { authorization: `Bearer ${ADMIN}` } };
    const status = (await (await fetch(`${proxy.url}/api/v1/status/config`, admin)).json()) as {
      auth: { tenants: string[]; lastError: unknown };
    };
    expect(status.auth).toMatchObject({ tenants: ['ops', 'team-a'], lastError: null });
  });

  it('never writes a token to its log or its metrics', async () => {
    const log = readFileSync(proxy.program.logPath, 'utf8');
    expect(log).toContain('cardinal-proxy started');
    const metrics = await (await fetch(proxy.metricsUrl)).text();
    for (const token of [TOKEN_1, TOKEN_2, WRONG]) {
      expect(log).not.toContain(token);
      expect(metrics).not.toContain(token);
    }
  });
});
