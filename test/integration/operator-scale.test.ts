// The operator at scale, benchmark style: a thousand (in CI) or five thousand small MetricPolicies,
// one drop rule and one perMetric limit each, applied with one `kubectl apply` to a real API server
// with the real operator (default write limits, --status-interval 10s, four shards) and one real
// proxy fed by a kubelet-like sync of the four ConfigMaps. It prints what a user waits for and what
// the operator costs; it asserts no time, only what must hold whatever the machine: every policy
// converges, the edit reaches the proxy, and a steady state writes nothing.
//
// CARDINAL_OPERATOR_SCALE lists the sizes, default 1000; `npm run bench:operator` runs 1000,5000.
//
// Printed, per size:
//   applied       seconds kubectl took to create them all
//   proxy runs    seconds from the apply until the proxy runs every policy
//   converged     seconds from the apply until every policy is Accepted and Ready at its generation
//   edit          seconds from an edit (made once the proxy runs everything, while statuses are still
//                 being written) until the proxy runs it
//   writes        writes the API server counted from the operator: status patches, ConfigMap applies,
//                 Events (apiserver_request_total)
//   peak RSS      the operator's VmHWM
//   steady        writes over three status intervals once converged (asserted: 0)

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  type ControlPlane,
  eventually,
  installCrd,
  kubectlOrThrow,
  parseExposition,
  projectConfigMap,
  startControlPlane,
  startOperator,
  startProxy,
  startSink,
  syncConfigMap,
  useCleanup,
} from '../framework/index.js';

const SIZES = (process.env.CARDINAL_OPERATOR_SCALE ?? '1000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n > 0);
const SHARDS = 4;
const STATUS_INTERVAL_S = 10;
const CONFIG_MAP = 'cardinal-proxy-default-policies';

/** The operator's writes as the API server counted them, from its own /metrics. */
async function apiWrites(
  plane: ControlPlane,
): Promise<{ status: number; configMaps: number; events: number }> {
  const r = await plane.kubectl(['get', '--raw', '/metrics']);
  if (r.code !== 0) throw new Error(r.stderr);
  const out = { status: 0, configMaps: 0, events: 0 };
  for (const s of parseExposition(r.stdout)) {
    if (s.name !== 'apiserver_request_total') continue;
    const { verb, resource, subresource } = s.labels;
    if (resource === 'metricpolicies' && subresource === 'status' && verb === 'PATCH') out.status += s.value;
    // Nothing else writes ConfigMaps or Events here: the sync only reads.
    if (resource === 'configmaps' && ['APPLY', 'PATCH', 'POST', 'PUT'].includes(verb ?? ''))
      out.configMaps += s.value;
    if (resource === 'events' && ['PATCH', 'POST'].includes(verb ?? '')) out.events += s.value;
  }
  return out;
}

/** The API server's mean time to answer a status write, in ms: what bounds writes per worker. */
async function statusWriteLatencyMs(plane: ControlPlane): Promise<number> {
  const r = await plane.kubectl(['get', '--raw', '/metrics']);
  if (r.code !== 0) throw new Error(r.stderr);
  let sum = 0;
  let count = 0;
  for (const s of parseExposition(r.stdout)) {
    const { verb, resource, subresource } = s.labels;
    if (verb !== 'PATCH' || resource !== 'metricpolicies' || subresource !== 'status') continue;
    if (s.name === 'apiserver_request_duration_seconds_sum') sum += s.value;
    if (s.name === 'apiserver_request_duration_seconds_count') count += s.value;
  }
  return count === 0 ? Number.NaN : (1000 * sum) / count;
}

const total = (w: { status: number; configMaps: number; events: number }) =>
  w.status + w.configMaps + w.events;

describe.each(SIZES)('the operator with %i policies', (n) => {
  const track = useCleanup();

  it(
    'converges, lets an edit through during the fan-out, and writes nothing once converged',
    async () => {
      const suffix = randomBytes(4).toString('hex');
      const system = `cardinal-system-${suffix}`;
      const apps = `apps-${suffix}`;
      const plane = track(await startControlPlane());
      const kubectl = kubectlOrThrow(plane);
      await installCrd(plane);
      await kubectl(['create', 'namespace', system]);
      await kubectl(['create', 'namespace', apps]);
      const configDir = join(mkdtempSync(join(tmpdir(), 'cardinal-scale-')), 'policies');
      await projectConfigMap(configDir, {});
      track(
        syncConfigMap({
          kubectl: (args) => plane.kubectl(args),
          namespace: system,
          name: CONFIG_MAP,
          names: Array.from({ length: SHARDS - 1 }, (_, i) => `${CONFIG_MAP}-${i + 1}`),
          dir: configDir,
          intervalMs: 500,
        }),
      );
      const sink = track(await startSink());
      const proxy = track(await startProxy({ upstream: sink.url, args: () => ['--config', configDir] }));
      const operator = await startOperator({
        plane,
        namespace: system,
        args: [
          '--proxy-endpoints',
          proxy.url,
          '--proxy-config-path',
          configDir,
          '--status-interval',
          `${STATUS_INTERVAL_S}s`,
          '--config-shards',
          String(SHARDS),
          '--leader-elect=false',
        ],
      });
      track(operator.program);
      const pid = operator.program.pid;
      const proxyStatus = async () =>
        (await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as {
          hash: string;
          policies: number;
        };
      const policy = (i: number, drop = `team_${i}_debug_.*`) => ({
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        metadata: { name: `team-${i}`, namespace: apps },
        spec: { drop: [drop], limits: { perMetric: [{ metric: `team_${i}_.*`, maxSeries: 1000 }] } },
      });
      const statuses = async () => {
        const r = await plane.kubectl(['-n', apps, 'get', 'mp', '-o', 'json'], { timeoutMs: 120_000 });
        if (r.code !== 0) throw new Error(r.stderr);
        const items = (JSON.parse(r.stdout) as { items: { metadata: { name: string }; status?: unknown }[] })
          .items;
        return new Map(items.map((i) => [i.metadata.name, JSON.stringify(i.status ?? {})]));
      };
      const readiness = async () => {
        const r = await plane.kubectl(
          [
            '-n',
            apps,
            'get',
            'mp',
            '--no-headers',
            '-o',
            'custom-columns=G:.metadata.generation,A:.status.conditions[?(@.type=="Accepted")].status,R:.status.conditions[?(@.type=="Ready")].status,O:.status.conditions[?(@.type=="Ready")].observedGeneration',
          ],
          { timeoutMs: 120_000 },
        );
        const rows = r.stdout
          .trim()
          .split('\n')
          .filter((l) => l !== '');
        return rows.filter((l) => {
          const [g, a, ready, o] = l.trim().split(/\s+/);
          return a === 'True' && ready === 'True' && g === o;
        }).length;
      };

      const before = await apiWrites(plane);
      const t0 = performance.now();
      const epoch0 = Date.now();
      const list = { apiVersion: 'v1', kind: 'List', items: Array.from({ length: n }, (_, i) => policy(i)) };
      const applied = await plane.kubectl(['apply', '--server-side', '-f', '-'], {
        input: JSON.stringify(list),
        timeoutMs: 30 * 60_000,
      });
      expect(applied.code, applied.stderr).toBe(0);
      const appliedS = (performance.now() - t0) / 1000;

      // The proxy runs all of them; then an edit, while statuses are still being written.
      const runs = await eventually(
        async () => {
          const s = await proxyStatus();
          expect(s.policies).toBe(n);
          return s;
        },
        { timeoutMs: 20 * 60_000, intervalMs: 200 },
      );
      const proxyRunsS = (performance.now() - t0) / 1000;
      const readyAtEdit = await readiness();
      const e0 = performance.now();
      await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(policy(7, 'team_7_edited_.*')));
      const editAppliedS = (performance.now() - e0) / 1000;
      await eventually(
        async () => {
          const s = await proxyStatus();
          expect(s.hash).not.toBe(runs.hash);
          expect(s.policies).toBe(n);
        },
        { timeoutMs: 5 * 60_000, intervalMs: 100 },
      );
      const editS = (performance.now() - e0) / 1000;
      const editAt = (e0 - t0) / 1000;
      const files = readFileSync(join(configDir, 'policies.yaml'), 'utf8') + readShards(configDir);
      expect(files).toContain('team_7_edited_.*');

      await eventually(async () => expect(await readiness()).toBe(n), {
        timeoutMs: 30 * 60_000,
        intervalMs: 2_000,
      });
      const convergedS = (performance.now() - t0) / 1000;
      const atReady = await apiWrites(plane);
      const latencyMs = await statusWriteLatencyMs(plane);

      // Writes still queued when the last policy turned Ready (statistics, the hash status.proxies
      // names) drain within the write budget; the steady state starts once a whole status interval
      // passes without a write. An operator that never stops writing fails here.
      let converged = atReady;
      let quietS = 0;
      await eventually(
        async () => {
          await sleep(STATUS_INTERVAL_S * 1000 + 2_000);
          const now = await apiWrites(plane);
          const wrote = total(now) - total(converged);
          converged = now;
          expect(wrote, 'writes during one status interval after every policy was Ready').toBe(0);
          quietS = (performance.now() - t0) / 1000;
        },
        { timeoutMs: 10 * 60_000, intervalMs: 0 },
      );

      // A steady state: three status intervals with nothing changing write nothing.
      const before3 = await statuses();
      await sleep(3 * STATUS_INTERVAL_S * 1000 + 2_000);
      const steady = await apiWrites(plane);
      const changed = changedStatuses(before3, await statuses());
      const rss = pid === undefined ? Number.NaN : peakRssMiB(pid);
      const operatorMetrics = parseExposition(await (await fetch(operator.metricsUrl)).text());
      const byReason = operatorMetrics
        .filter((m) => m.name === 'cardinal_operator_events_total' && m.value > 0)
        .map((m) => `${m.labels.reason} ${m.value}`)
        .join(', ');
      // The profile of the writes: what each status write changed first (statusChange).
      const byChange = operatorMetrics
        .filter((m) => m.name === 'cardinal_operator_status_writes_total' && m.value > 0)
        .sort((a, b) => b.value - a.value)
        .map((m) => `${m.labels.change} ${m.value}`)
        .join(', ');
      const writes = {
        status: converged.status - before.status,
        configMaps: converged.configMaps - before.configMaps,
        events: converged.events - before.events,
      };
      // What the Warning Events said, by message without the endpoint: what a user would read.
      const warnings = (
        await plane.kubectl(
          [
            '-n',
            apps,
            'get',
            'events',
            '--field-selector',
            'type=Warning',
            '--no-headers',
            '-o',
            'custom-columns=C:.count,M:.message',
          ],
          {
            timeoutMs: 120_000,
          },
        )
      ).stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '')
        .reduce((m, l) => {
          const [count, ...words] = l.trim().split(/\s+/);
          const key = words
            .join(' ')
            .replace(/127\.0\.0\.1:\d+/g, 'PROXY')
            .slice(0, 120);
          m.set(key, (m.get(key) ?? 0) + Number(count));
          return m;
        }, new Map<string, number>());
      console.log(
        [
          `operator-scale ${n} policies (${SHARDS} shards, --status-interval ${STATUS_INTERVAL_S}s, default write limits):`,
          `  applied in ${appliedS.toFixed(1)} s; proxy runs all ${proxyRunsS.toFixed(1)} s after the apply; converged (all Accepted and Ready) ${convergedS.toFixed(1)} s after`,
          `  edit reached the proxy in ${editS.toFixed(2)} s (its kubectl apply returned after ${editAppliedS.toFixed(2)} s), made while ${readyAtEdit} of ${n} were Ready`,
          `  quiet (a status interval without a write) ${quietS.toFixed(1)} s after; ${total(converged) - total(atReady)} writes between the last Ready and quiet`,
          `  API writes until converged: ${total(writes)} (${writes.status} status, ${writes.configMaps} ConfigMap, ${writes.events} Event${byReason === '' ? '' : `: ${byReason}`})`,
          `  status writes by the first field they changed: ${byChange}; the API server took ${latencyMs.toFixed(0)} ms a status write on average`,
          `  operator peak RSS ${rss.toFixed(0)} MiB; writes over ${3 * STATUS_INTERVAL_S} s of steady state: ${total(steady) - total(converged)} (${steady.status - converged.status} status, ${steady.configMaps - converged.configMaps} ConfigMap, ${steady.events - converged.events} Event)`,
          `  the operator rendered (s after the apply began: policies/shards written): ${timeline(operator.program.logPath, 'rendered', epoch0, (l) => `${l.policies}/${l.applies}`)}`,
          `  the proxy loaded (s: policies/files parsed, the edit at ${editAt.toFixed(1)} s): ${timeline(proxy.program.logPath, 'configuration loaded', epoch0, (l) => `${l.policies}/${l.parsed}`)}`,
          ...[...warnings].map(([m, c]) => `  Warning x${c}: ${m}`),
          ...changed.slice(0, 5).map((c) => `  changed in the steady state: ${c}`),
        ].join('\n'),
      );
      expect(total(steady) - total(converged), changed.slice(0, 5).join('\n')).toBe(0);
    },
    60 * 60_000,
  );
});

/** Policies whose status differs between two snapshots, each with the first place the JSON differs. */
function changedStatuses(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [name, a] of after) {
    const b = before.get(name) ?? '';
    if (a === b) continue;
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    out.push(`${name}: ${b.slice(Math.max(0, i - 60), i + 100)} -> ${a.slice(Math.max(0, i - 60), i + 100)}`);
  }
  return out;
}

/** When a program logged `msg`, in seconds after `epoch0`, each with what `what` says of the line. */
function timeline(
  logPath: string,
  msg: string,
  epoch0: number,
  what: (line: Record<string, unknown>) => string,
): string {
  const out: string[] = [];
  for (const text of readFileSync(logPath, 'utf8').split('\n')) {
    if (!text.startsWith('{')) continue;
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (line.msg !== msg || typeof line.time !== 'number' || line.time < epoch0) continue;
    out.push(`${((line.time - epoch0) / 1000).toFixed(1)} ${what(line)}`);
  }
  // The first ones and the last ones, which are those around the edit.
  return out.length > 40
    ? `${out.slice(0, 25).join(', ')} ... ${out.slice(-15).join(', ')} (${out.length} in all)`
    : out.join(', ');
}

function readShards(dir: string): string {
  return Array.from({ length: SHARDS - 1 }, (_, i) =>
    readFileSync(join(dir, `policies-${i + 1}.yaml`), 'utf8'),
  ).join('');
}

/** The process's peak resident set (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}
