// Reads decide what is safe to drop, end to end: the proxy serves the read path in front of a real
// Prometheus and starts from a usage state file saying one metric was read yesterday (the state
// file is how "yesterday" is made without waiting a day); the operator on a real API server polls
// the proxy's usage report, renders the reads into usage.yaml, and a policy with
// spec.unused.readWindow drops only what nothing referenced and nothing read within the window. A
// metric read through the proxy by Debian's promtool during the test comes back.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageRecorder } from '../../proxy/query/recorder.js';
import {
  applyPolicy,
  binaryPath,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  type PrometheusReceiver,
  type ProxyProgram,
  startPolicyPlane,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';
import { DEFAULT_CONFIG_MAP, startGovernedStack } from '../framework/stack.js';

const run = promisify(execFile);
const DAY_MS = 86_400_000;

/** A usage state as the proxy writes it: reads recorded since two days ago, one metric read yesterday. */
function stateFile(): string {
  const now = Date.now();
  const recorder = new UsageRecorder(
    { maxMetrics: 100, maxReaders: 10, readersPerMetric: 5 },
    now - 2 * DAY_MS,
  );
  recorder.record(['app_read_yesterday'], [], 'dashboard:capacity panel:1 org:1', now - DAY_MS);
  const file = join(mkdtempSync(join(tmpdir(), 'cardinal-e2e-usage-')), 'usage-state.json');
  writeFileSync(file, JSON.stringify({ recorder: recorder.toState(now - DAY_MS) }));
  return file;
}

interface UsageStatus {
  readsKnown: boolean;
  since?: string;
  metricsRead: number;
  leastRead?: { metric: string; series: number; reads30d: number; lastRead?: string }[];
  missingMetrics?: number;
  missing?: { metric: string; reads30d: number }[];
}

describe('reads through the proxy decide what spec.unused drops', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let receiver: PrometheusReceiver;
  let proxy: ProxyProgram;
  let kubectl: ReturnType<typeof kubectlOrThrow>;

  const recent = async (metric: string, seconds = 2) => {
    const [r] = await receiver.query(`sum(count_over_time(${metric}[${seconds}s]))`);
    return r?.value ?? 0;
  };
  const usageYaml = async () => {
    const cm = JSON.parse(
      await kubectl(['-n', system, 'get', 'configmap', DEFAULT_CONFIG_MAP, '-o', 'json']),
    ) as { data: Record<string, string> };
    return cm.data['usage.yaml'] ?? '';
  };
  const usageStatus = async () => {
    const p = JSON.parse(await kubectl(['-n', apps, 'get', 'metricpolicy', 'reads', '-o', 'json'])) as {
      status?: { usage?: UsageStatus };
    };
    return p.status?.usage;
  };

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    const state = stateFile();
    ({ receiver, proxy } = await startGovernedStack({
      plane,
      namespace: system,
      track,
      proxyArgs: (receiverUrl) => [
        '--query.upstream',
        receiverUrl,
        '--query.usage.state-file',
        state,
        '--query.names-refresh',
        '1s',
      ],
    }));
    const target = track(await startTarget());
    target.setSeries([
      { name: 'app_read_yesterday', labels: { job: 'app' }, value: 1 },
      { name: 'app_read_today', labels: { job: 'app' }, value: 2 },
      { name: 'app_unread', labels: { shard: 'a' }, value: 3 },
      { name: 'app_unread', labels: { shard: 'b' }, value: 3 },
    ]);
    track(await startVmagent({ remoteWriteUrl: proxy.writeUrl, scrapeTargets: [target.address] }));
    await eventually(async () => expect(await recent('app_unread')).toBeGreaterThan(0), {
      timeoutMs: 30_000,
    });
  }, 300_000);

  it('keeps a metric read yesterday, drops an unread one, and brings back one read now', async () => {
    await applyPolicy(plane, apps, 'reads', { unused: { action: 'drop', readWindow: '7d', keep: ['up'] } });

    // The operator rendered the proxy's reads, rounded up to the hour, next to the (empty) references.
    await eventually(
      async () => {
        const text = await usageYaml();
        expect(text).toContain('reads:');
        expect(text).toContain('"name":"app_read_yesterday"');
        expect(text).not.toContain('app_unread');
      },
      { timeoutMs: 30_000 },
    );

    // Nothing references any of them; only the one read within the window keeps flowing, and it
    // never stopped: a policy that judges by reads waits for them before anything is dropped.
    await eventually(
      async () => {
        expect(await recent('app_unread')).toBe(0);
        expect(await recent('app_read_today')).toBe(0);
      },
      { timeoutMs: 30_000 },
    );
    const [kept] = await receiver.query(
      'sum(count_over_time(app_read_yesterday[1m])) / sum(count_over_time(up[1m]))',
    );
    expect(kept?.value).toBe(1);

    // A client no one here wrote reads a dropped metric through the proxy: it is read, so it is kept.
    await run(binaryPath('promtool'), ['query', 'instant', proxy.url, 'app_read_today']);
    await eventually(async () => expect(await recent('app_read_today')).toBeGreaterThan(0), {
      timeoutMs: 30_000,
    });
    expect(await recent('app_unread')).toBe(0);
    expect(await recent('app_read_yesterday')).toBeGreaterThan(0);

    // The status says what is read and what the unread cost; a query of a metric that does not exist is missing.
    await run(binaryPath('promtool'), ['query', 'instant', proxy.url, 'app_nowhere_total']);
    await eventually(
      async () => {
        const u = await usageStatus();
        expect(u).toMatchObject({ readsKnown: true, metricsRead: 3, missingMetrics: 1 });
        expect(u?.missing).toEqual([expect.objectContaining({ metric: 'app_nowhere_total', reads30d: 1 })]);
        expect(u?.leastRead).toContainEqual(
          expect.objectContaining({ metric: 'app_read_yesterday', series: 1, reads30d: 1 }),
        );
        expect(Date.parse(u?.since ?? '')).toBeLessThan(Date.now() - DAY_MS);
      },
      { timeoutMs: 30_000 },
    );
  });
});
