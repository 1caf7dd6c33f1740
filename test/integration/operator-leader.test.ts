// Two operator replicas against one API server: only the Lease holder writes, and the other takes
// over when the leader dies.

import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyPolicy,
  type ControlPlane,
  eventually,
  type kubectlOrThrow,
  metricSum,
  type Program,
  startOperator,
  startPolicyPlane,
  useCleanup,
} from '../framework/index.js';

const CONFIG_MAP = 'cardinal-proxy-default-policies';

describe('two operator replicas', () => {
  const track = useCleanup();
  const suffix = randomBytes(4).toString('hex');
  const system = `cardinal-system-${suffix}`;
  const apps = `apps-${suffix}`;
  let plane: ControlPlane;
  let kubectl: ReturnType<typeof kubectlOrThrow>;
  const replicas: { name: string; program: Program; metricsUrl: string }[] = [];

  const drop = (name: string, pattern: string) => applyPolicy(plane, apps, name, { drop: [pattern] });
  const holder = async () =>
    (
      JSON.parse(await kubectl(['-n', system, 'get', 'lease', 'cardinal-operator', '-o', 'json'])) as {
        spec: { holderIdentity?: string };
      }
    ).spec.holderIdentity ?? '';
  const writes = (url: string) =>
    metricSum(url, 'cardinal_operator_configmap_applies_total', { outcome: 'written' }).then(
      async (n) => n + (await metricSum(url, 'cardinal_operator_status_writes_total')),
    );
  const rendered = async () =>
    (
      JSON.parse(await kubectl(['-n', system, 'get', 'configmap', CONFIG_MAP, '-o', 'json'])) as {
        data: Record<string, string>;
      }
    ).data['policies.yaml'] ?? '';

  beforeAll(async () => {
    ({ plane, kubectl } = await startPolicyPlane(track, [system, apps]));
    for (const name of ['replica-a', 'replica-b']) {
      const { program, metricsUrl } = await startOperator({
        plane,
        namespace: system,
        name: `cardinal-operator-${name}`,
        env: { POD_NAME: name },
        args: [
          '--leader-elect-lease-duration',
          '2s',
          '--leader-elect-renew-deadline',
          '1500ms',
          '--leader-elect-retry-period',
          '300ms',
        ],
      });
      track(program);
      replicas.push({ name, program, metricsUrl });
    }
  });

  it('only the leader writes; the standby takes over when the leader dies', async () => {
    const leaderName = await eventually(async () => {
      const h = await holder();
      expect(h).toMatch(/^replica-(a|b)_/);
      return h.startsWith('replica-a') ? 'replica-a' : 'replica-b';
    });
    const leader = replicas.find((r) => r.name === leaderName)!;
    const standby = replicas.find((r) => r.name !== leaderName)!;

    await drop('first', 'debug_.*');
    await eventually(async () => expect(await rendered()).toContain('name: first'));
    await eventually(async () => expect(await writes(leader.metricsUrl)).toBeGreaterThan(0));
    expect(await writes(standby.metricsUrl)).toBe(0);
    expect(await metricSum(leader.metricsUrl, 'cardinal_operator_leader')).toBe(1);
    expect(await metricSum(standby.metricsUrl, 'cardinal_operator_leader')).toBe(0);

    // The leader dies without releasing the Lease: the standby waits for it to expire, then leads.
    leader.program.kill('SIGKILL');
    await leader.program.exited();
    await eventually(async () => expect(await holder()).toMatch(new RegExp(`^${standby.name}_`)), {
      timeoutMs: 20_000,
    });
    await drop('second', 'trace_.*');
    await eventually(async () => expect(await rendered()).toContain('name: second'), { timeoutMs: 20_000 });
    await eventually(async () => expect(await writes(standby.metricsUrl)).toBeGreaterThan(0));
  });
});
