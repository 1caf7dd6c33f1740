// The Pushgateway path with real programs: Python's prometheus_client (push_to_gateway,
// pushadd_to_gateway, delete_from_gateway, with a handler that adds the bearer token) pushes
// through the proxy binary into Debian's prometheus-pushgateway. The Pushgateway's /metrics and
// /api/v1/metrics must show exactly what the proxy accepted, and nothing of a refused push.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollProxy } from '../../operator/proxies/poll.js';
import { PROXY_MAIN } from '../framework/cardinal.js';
import {
  type ExpositionSample,
  eventually,
  freePort,
  type ProxyProgram,
  projectConfigMap,
  selfSignedCertificate,
  startProgram,
  startProxy,
  useCleanup,
} from '../framework/index.js';
import { type PushgatewayProgram, runPython, startPushgateway } from '../framework/pushgateway.js';

const TOKEN_1 = 'push-token-Xw4Lp9Qa2';
const TOKEN_2 = 'push-token-rotated-Mb7Ts1Ke';
const WRONG = 'push-token-wrong-Hc3Vn8Jd';
const RW_ONLY = 'remote-write-only-Gf6Rq2Wy';
const ADMIN = 'push-admin-Lk2Pv7Xs';

const CREDENTIALS = [
  '- tenant: batch',
  '  bearerTokenFile: batch.token',
  '- tenant: agents',
  `  bearerToken: ${RW_ONLY}`,
  '  allowedPaths: [/api/v1/write]',
  `- { tenant: ops, bearerToken: ${ADMIN}, allowedPaths: [], roles: [admin] }`,
  '',
].join('\n');

const policy = (name: string, spec: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: ${name}\n  namespace: platform\nspec:\n${spec}`;
const POLICIES = [
  policy('drop-debug', '  drop:\n    - batch_debug_.*\n'),
  policy('standards', '  standards:\n    forbiddenLabels: [user_id]\n    onViolation: drop\n'),
  policy('cap-items', '  limits:\n    perMetric:\n      - metric: batch_items\n        maxSeries: 2\n'),
].join('---\n');

// One prometheus_client program for every push: argv[1] is the action, argv[2] the job, argv[3]
// a JSON grouping key, argv[4] a JSON list of metrics to register. The token comes from $TOKEN.
const CLIENT = `
import json, os, sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import push_to_gateway, pushadd_to_gateway, delete_from_gateway
from prometheus_client.exposition import default_handler

def handler(url, method, timeout, headers, data):
    token = os.environ.get("TOKEN")
    if token:
        headers = list(headers) + [("Authorization", "Bearer " + token)]
    return default_handler(url, method, timeout, headers, data)

action, job, grouping, metrics = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
registry = CollectorRegistry()
created = {}
for m in metrics:
    names = sorted(m.get("labels", {}).keys())
    kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[m["kind"]]
    extra = {"buckets": m["buckets"]} if "buckets" in m else {}
    if m["name"] not in created:
        created[m["name"]] = kind(m["name"], m["help"], names, registry=registry, **extra)
    metric = created[m["name"]]
    child = metric.labels(**m["labels"]) if names else metric
    for v in m["values"]:
        if m["kind"] == "counter":
            child.inc(v)
        elif m["kind"] == "gauge":
            child.set(v)
        else:
            child.observe(v)
gateway = os.environ["GATEWAY"]
if action == "push":
    push_to_gateway(gateway, job=job, registry=registry, grouping_key=grouping, handler=handler)
elif action == "pushadd":
    pushadd_to_gateway(gateway, job=job, registry=registry, grouping_key=grouping, handler=handler)
else:
    delete_from_gateway(gateway, job=job, grouping_key=grouping, handler=handler)
print("ok")
`;

interface Metric {
  kind: 'counter' | 'gauge' | 'histogram';
  name: string;
  help: string;
  labels?: Record<string, string>;
  values: number[];
  buckets?: number[];
}

/** The pushed series without the `_created` gauges, whose values are the client's clock. */
function comparable(samples: ExpositionSample[]): string[] {
  return samples
    .filter((s) => !s.name.endsWith('_created'))
    .map((s) => {
      const labels = Object.entries(s.labels)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}="${v}"`)
        .join(',');
      return `${s.name}{${labels}} ${s.value}`;
    })
    .sort();
}

describe('Pushgateway-protocol pushes through the proxy', () => {
  const track = useCleanup();
  let gateway: PushgatewayProgram;
  let proxy: ProxyProgram;
  let dir: string;
  let secretDir: string;

  const client = (
    action: 'push' | 'pushadd' | 'delete',
    job: string,
    grouping: Record<string, string>,
    metrics: Metric[],
    env: Record<string, string> = { TOKEN: TOKEN_1 },
    target = proxy.url,
  ) =>
    runPython(CLIENT, [action, job, JSON.stringify(grouping), JSON.stringify(metrics)], {
      GATEWAY: target,
      ...env,
    });

  const rawPush = (
    path: string,
    body: string,
    init: { method?: string; token?: string; type?: string } = {},
  ) =>
    fetch(`${proxy.url}${path}`, {
      method: init.method ?? 'PUT',
      headers: {
        authorization: `Bearer ${init.token ?? TOKEN_1}`,
        'content-type': init.type ?? 'text/plain; version=0.0.4; charset=utf-8',
      },
      body,
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-push-'));
    secretDir = join(dir, 'secret');
    await projectConfigMap(secretDir, { 'credentials.yaml': CREDENTIALS, 'batch.token': `${TOKEN_1}\n` });
    writeFileSync(join(dir, 'policies.yaml'), POLICIES);
    gateway = track(await startPushgateway());
    proxy = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: () => [
          '--pushgateway',
          gateway.url,
          '--config',
          join(dir, 'policies.yaml'),
          '--auth.credentials-file',
          secretDir,
        ],
      }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const JOBS: Metric = {
    kind: 'counter',
    name: 'batch_jobs',
    help: 'Jobs processed.',
    labels: { kind: 'import' },
    values: [3],
  };
  const LAST: Metric = {
    kind: 'gauge',
    name: 'batch_last_success_timestamp_seconds',
    help: 'Last success.',
    values: [1700000000],
  };
  const DURATION: Metric = {
    kind: 'histogram',
    name: 'batch_duration_seconds',
    help: 'Run time.',
    values: [0.5, 2],
    buckets: [1, 5],
  };

  it('push, pushadd and delete keep their semantics and land exactly as accepted', async () => {
    const grouping = { instance: 'host/1' };
    expect((await client('push', 'nightly', grouping, [JOBS, LAST, DURATION])).stdout).toContain('ok');
    const group = 'instance="host/1",job="nightly"';
    expect(comparable(await gateway.pushed())).toEqual([
      `batch_duration_seconds_bucket{${group},le="+Inf"} 2`,
      `batch_duration_seconds_bucket{${group},le="1"} 1`,
      `batch_duration_seconds_bucket{${group},le="5"} 2`,
      `batch_duration_seconds_count{${group}} 2`,
      `batch_duration_seconds_sum{${group}} 2.5`,
      `batch_jobs_total{${group},kind="import"} 3`,
      `batch_last_success_timestamp_seconds{${group}} 1700000000`,
    ]);
    const [g] = await gateway.groups();
    expect(g?.labels).toEqual({ instance: 'host/1', job: 'nightly' });
    expect(g?.families.batch_jobs_total?.type).toBe('COUNTER');
    expect(g?.families.batch_duration_seconds?.type).toBe('HISTOGRAM');
    expect(g?.families.batch_jobs_total?.help).toBe('Jobs processed.');

    // POST replaces only the metric names it carries.
    const later: Metric = { ...LAST, values: [1700000600] };
    expect((await client('pushadd', 'nightly', grouping, [later])).code).toBe(0);
    const afterAdd = comparable(await gateway.pushed());
    expect(afterAdd).toContain(`batch_last_success_timestamp_seconds{${group}} 1700000600`);
    expect(afterAdd).toContain(`batch_jobs_total{${group},kind="import"} 3`);

    // PUT replaces the whole group.
    expect((await client('push', 'nightly', grouping, [later])).code).toBe(0);
    expect(comparable(await gateway.pushed())).toEqual([
      `batch_last_success_timestamp_seconds{${group}} 1700000600`,
    ]);

    // DELETE deletes the group.
    expect((await client('delete', 'nightly', grouping, [])).code).toBe(0);
    expect(await gateway.pushed()).toEqual([]);
    expect(await gateway.groups()).toEqual([]);
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { protocol: 'pushgateway', reason: 'ok' }),
    ).toBe(4);
  });

  it('takes a delimited protobuf push as Go writes it, checked and forwarded like text', async () => {
    expect((await client('push', 'source', {}, [JOBS, LAST, DURATION])).code).toBe(0);
    // The Pushgateway's own exposition in protobuf is a body written by Go's expfmt.
    const type =
      'application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited';
    const exposed = await fetch(`${gateway.url}/metrics`, { headers: { accept: type } });
    expect(exposed.headers.get('content-type')).toBe(type);
    const copy = await fetch(`${proxy.url}/metrics/job/copy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN_1}`, 'content-type': type },
      body: Buffer.from(await exposed.arrayBuffer()),
    });
    expect(await copy.text()).toBe('');
    expect(copy.status).toBe(200);
    const all = comparable(await gateway.pushed()).filter((s) => s.startsWith('batch_'));
    const of = (job: string) =>
      all.filter((s) => s.includes(`job="${job}"`)).map((s) => s.replace(`job="${job}"`, 'job=J'));
    expect(of('copy')).toEqual(of('source'));
    expect(of('copy')).toHaveLength(7);
    expect((await client('delete', 'source', {}, [])).code).toBe(0);
    expect((await client('delete', 'copy', {}, [])).code).toBe(0);
  });

  it('refuses a push with problems, listing each with its line, and forwards nothing of it', async () => {
    const body = [
      '# TYPE batch_rows counter', // 1: a counter without _total
      'batch_rows 5',
      '# HELP batch_queue_total Rows queued.',
      '# TYPE batch_queue_total gauge', // a gauge with _total, reported where its family starts
      'batch_queue_total 1',
      'batch_ok{a="1" 2', // 6: syntax
      'batch_stamp 1 1700000000000', // 7: a timestamp
      '',
    ].join('\n');
    const res = await rawPush('/metrics/job/refused', body);
    expect(res.status).toBe(400);
    expect(await res.text()).toBe(
      [
        'push rejected, nothing was forwarded: 6 problems',
        'line 1: counter metrics should have "_total" suffix (counter-total-suffix)',
        'line 1: no help text (help-missing)',
        'line 3: non-counter metrics should not have "_total" suffix (non-counter-total-suffix)',
        'line 6: expected "," or "}" after label value, found "2" (invalid-syntax)',
        'line 7: pushed metrics must not have timestamps; the Pushgateway refuses them (timestamp)',
        'line 7: no help text (help-missing)',
        '',
      ].join('\n'),
    );
    expect(await gateway.pushed()).toEqual([]);

    // The reference client gets an error too (a gauge named like a counter).
    const bad = await client('push', 'refused', {}, [
      { kind: 'gauge', name: 'batch_items_total', help: 'Items.', values: [1] },
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('400');
    expect(await gateway.pushed()).toEqual([]);
    expect(
      await proxy.metric('cardinal_proxy_push_problems_total', { rule: 'timestamp', outcome: 'rejected' }),
    ).toBe(1);
  });

  it('applies the policies: drops and limits remove series, standards refuse the push with the line', async () => {
    const items = (k: number): Metric => ({
      kind: 'gauge',
      name: 'batch_items',
      help: 'Items.',
      labels: { shard: `s${k}` },
      values: [k],
    });
    const debug: Metric = { kind: 'gauge', name: 'batch_debug_queue', help: 'Debug.', values: [7] };
    const res = await client('push', 'governed', {}, [items(1), items(2), items(3), debug, JOBS]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const pushed = comparable(await gateway.pushed());
    expect(pushed.filter((s) => s.startsWith('batch_items{'))).toHaveLength(2);
    expect(pushed.some((s) => s.startsWith('batch_debug_queue'))).toBe(false);
    expect(pushed).toContain('batch_jobs_total{instance="",job="governed",kind="import"} 3');
    expect(
      await proxy.metric('cardinal_proxy_policy_samples_total', {
        policy: 'platform/drop-debug',
        reason: 'metric_dropped',
      }),
    ).toBe(1);
    expect(
      await proxy.metric('cardinal_proxy_policy_samples_total', {
        policy: 'platform/cap-items',
        reason: 'series_limit',
      }),
    ).toBe(1);

    const admin = { headers: { authorization: `Bearer ${ADMIN}` } };
    const offenders = (await (
      await fetch(`${proxy.url}/api/v1/stats/top-offenders?limit=50`, admin)
    ).json()) as {
      drops: { metric: string; policy: string; reason: string }[];
      metrics: { metric: string; activeSeries: number }[];
    };
    expect(offenders.drops).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ metric: 'batch_debug_queue', policy: 'platform/drop-debug' }),
        expect.objectContaining({ metric: 'batch_items', policy: 'platform/cap-items' }),
      ]),
    );

    expect(offenders.metrics).toContainEqual({ metric: 'batch_items', activeSeries: 2 });

    const refused = await rawPush(
      '/metrics/job/governed',
      '# HELP batch_logins_total Logins.\n# TYPE batch_logins_total counter\nbatch_logins_total{user_id="42"} 1\n',
      { method: 'POST' },
    );
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain(
      'line 3: series batch_logins_total violates the standards of policy platform/standards: it carries a forbidden label (standards/forbidden_label)',
    );
    expect(comparable(await gateway.pushed())).toEqual(pushed);
  });

  it('requires credentials on the push path and follows a rotated token without a restart', async () => {
    const m: Metric = { kind: 'gauge', name: 'batch_auth_probe', help: 'Probe.', values: [1] };
    const none = await client('push', 'auth', {}, [m], {});
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('401');
    const wrong = await client('push', 'auth', {}, [m], { TOKEN: WRONG });
    expect(wrong.stderr).toContain('401');
    const elsewhere = await client('push', 'auth', {}, [m], { TOKEN: RW_ONLY });
    expect(elsewhere.stderr).toContain('403');
    expect(comparable(await gateway.pushed()).some((s) => s.startsWith('batch_auth_probe'))).toBe(false);
    expect((await client('push', 'auth', {}, [m])).code).toBe(0);
    expect(comparable(await gateway.pushed())).toContain('batch_auth_probe{instance="",job="auth"} 1');

    const pid = proxy.program.pid;
    await projectConfigMap(secretDir, { 'credentials.yaml': CREDENTIALS, 'batch.token': `${TOKEN_2}\n` });
    await eventually(
      async () => expect((await client('push', 'auth', {}, [m], { TOKEN: TOKEN_2 })).code).toBe(0),
      {
        timeoutMs: 15_000,
      },
    );
    expect((await client('push', 'auth', {}, [m], { TOKEN: TOKEN_1 })).stderr).toContain('401');
    expect(proxy.program.pid).toBe(pid);
    await projectConfigMap(secretDir, { 'credentials.yaml': CREDENTIALS, 'batch.token': `${TOKEN_1}\n` });
    await eventually(async () => expect((await client('push', 'auth', {}, [m])).code).toBe(0), {
      timeoutMs: 15_000,
    });

    const log = readFileSync(proxy.program.logPath, 'utf8');
    const metrics = await (await fetch(proxy.metricsUrl)).text();
    for (const token of [TOKEN_1, TOKEN_2, WRONG, RW_ONLY]) {
      expect(log).not.toContain(token);
      expect(metrics).not.toContain(token);
    }
  });

  it('in lint warn mode forwards a push with lint problems and reports them', async () => {
    const warn = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: () => ['--pushgateway', gateway.url, '--push.lint', 'warn'],
      }),
    );
    const res = await fetch(`${warn.url}/metrics/job/warned`, {
      method: 'PUT',
      body: '# TYPE batch_rows counter\nbatch_rows 5\nbatch_stamp{a="1"} 2\n',
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      [
        'warning: line 1: counter metrics should have "_total" suffix (counter-total-suffix)',
        'warning: line 1: no help text (help-missing)',
        'warning: line 3: no help text (help-missing)',
        '',
      ].join('\n'),
    );
    expect(comparable(await gateway.pushed())).toEqual(
      expect.arrayContaining([
        'batch_rows{instance="",job="warned"} 5',
        'batch_stamp{a="1",instance="",job="warned"} 2',
      ]),
    );
    expect(await warn.metric('cardinal_proxy_push_problems_total', { outcome: 'warned' })).toBe(3);

    // A timestamp is refused even in warn mode: the Pushgateway would refuse the push itself.
    const stamped = await fetch(`${warn.url}/metrics/job/warned`, {
      method: 'PUT',
      body: 'batch_rows 5 1700000000000\n',
    });
    expect(stamped.status).toBe(400);
  });
});

describe('pushes with the durable queue', () => {
  const track = useCleanup();

  it('answers pushes while the Pushgateway is down and delivers them in order after a SIGKILL and restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-push-queue-'));
    const gateway = track(await startPushgateway());
    const proxy = track(
      await startProxy({
        upstream: 'http://127.0.0.1:9/api/v1/write',
        args: () => ['--pushgateway', gateway.url, '--queue.dir', dir, '--forward.retry-budget', '1s'],
      }),
    );
    const push = (action: 'push' | 'pushadd' | 'delete', job: string, metrics: Metric[]) =>
      runPython(CLIENT, [action, job, '{}', JSON.stringify(metrics)], { GATEWAY: proxy.url });
    const gauge = (name: string, value: number): Metric => ({
      kind: 'gauge',
      name,
      help: 'Probe.',
      values: [value],
    });

    // Delivered at once while the Pushgateway is up.
    expect((await push('push', 'queued', [gauge('batch_first', 1)])).stderr).toBe('');
    await eventually(async () =>
      expect(comparable(await gateway.pushed())).toEqual(['batch_first{instance="",job="queued"} 1']),
    );

    // Down: pushes are still answered (queued on disk), in an order whose end state is known.
    await gateway.stop();
    expect((await push('push', 'queued', [gauge('batch_second', 2)])).stderr).toBe('');
    expect((await push('pushadd', 'queued', [gauge('batch_third', 3)])).stderr).toBe('');
    expect((await push('push', 'gone', [gauge('batch_gone', 4)])).stderr).toBe('');
    expect((await push('delete', 'gone', [])).stderr).toBe('');
    expect(await proxy.metric('cardinal_proxy_queue_appended_samples_total', { queue: 'pushgateway' })).toBe(
      4,
    );

    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await proxy.start();
    await gateway.start();
    await eventually(
      async () =>
        expect(comparable(await gateway.pushed())).toEqual([
          'batch_second{instance="",job="queued"} 2',
          'batch_third{instance="",job="queued"} 3',
        ]),
      { timeoutMs: 30_000 },
    );
    expect((await gateway.groups()).map((g) => g.labels.job)).toEqual(['queued']);
    await eventually(async () =>
      expect(await proxy.metric('cardinal_proxy_queue_sent_records_total', { queue: 'pushgateway' })).toBe(4),
    );
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('TLS on the listener', () => {
  const track = useCleanup();
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-tls-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A self-signed certificate for 127.0.0.1 with its own subject. */
  function certificate(cn: string): { cert: string; key: string } {
    return selfSignedCertificate(dir, cn);
  }

  /** The subject CN of the certificate the listener presents now. */
  function servedCn(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        const cn = socket.getPeerCertificate().subject?.CN;
        socket.end();
        resolve(String(cn));
      });
      socket.on('error', reject);
    });
  }

  it('serves HTTPS from the cert and key files, and a rotated pair without a restart', async () => {
    const first = certificate('cardinal-first');
    const certs = join(dir, 'certs');
    await projectConfigMap(certs, { 'tls.crt': first.cert, 'tls.key': first.key });
    const gateway = track(await startPushgateway());
    const port = await freePort();
    const proxy = track(
      await startProgram({
        name: 'cardinal-proxy-tls',
        command: process.execPath,
        args: () => [
          PROXY_MAIN,
          '--listen',
          `127.0.0.1:${port}`,
          '--upstream',
          'http://127.0.0.1:9/api/v1/write',
          '--pushgateway',
          gateway.url,
          '--tls.cert-file',
          join(certs, 'tls.crt'),
          '--tls.key-file',
          join(certs, 'tls.key'),
        ],
      }),
    );
    const trusting = (ca: string) => new Agent({ connect: { ca } });
    await eventually(
      async () => {
        const res = await undiciFetch(`https://127.0.0.1:${port}/-/ready`, {
          dispatcher: trusting(first.cert),
        });
        expect(res.status).toBe(200);
      },
      { timeoutMs: 15_000 },
    );
    expect(await servedCn(port)).toBe('cardinal-first');

    // The reference client pushes over HTTPS, trusting the certificate through SSL_CERT_FILE.
    writeFileSync(join(dir, 'ca-first.pem'), first.cert);
    const m: Metric = { kind: 'gauge', name: 'batch_tls_probe', help: 'Probe.', values: [1] };
    const pushed = await runPython(CLIENT, ['push', 'tls', '{}', JSON.stringify([m])], {
      GATEWAY: `https://127.0.0.1:${port}`,
      SSL_CERT_FILE: join(dir, 'ca-first.pem'),
    });
    expect(pushed.stderr).toBe('');
    expect(comparable(await gateway.pushed())).toEqual(['batch_tls_probe{instance="",job="tls"} 1']);

    // The operator polls such proxies over HTTPS, trusting only the given CA and checking the name.
    const caFile = join(dir, 'ca-first.pem');
    const poll = (tls: { caFile: string; serverName?: string }) =>
      pollProxy(`http://127.0.0.1:${port}`, { timeoutMs: 5000, topLimit: 10, tls });
    const polled = await poll({ caFile });
    expect(polled.reachable).toBe(true);
    expect(polled.configHash).toMatch(/^[0-9a-f]+$/);
    writeFileSync(join(dir, 'other-ca.pem'), certificate('cardinal-other').cert);
    expect(await poll({ caFile: join(dir, 'other-ca.pem') })).toMatchObject({ reachable: false });
    const misnamed = await poll({ caFile, serverName: 'cardinal-proxy.monitoring.svc' });
    expect(misnamed.reachable).toBe(false);
    expect(misnamed.reason).toContain('cardinal-proxy.monitoring.svc');

    const second = certificate('cardinal-second');
    await projectConfigMap(certs, { 'tls.crt': second.cert, 'tls.key': second.key });
    await eventually(async () => expect(await servedCn(port)).toBe('cardinal-second'), { timeoutMs: 15_000 });
    const res = await undiciFetch(`https://127.0.0.1:${port}/-/healthy`, {
      dispatcher: trusting(second.cert),
    });
    expect(res.status).toBe(200);
    expect(proxy.running).toBe(true);

    // A key that does not match keeps the running pair.
    await projectConfigMap(certs, { 'tls.crt': first.cert, 'tls.key': second.key });
    await eventually(
      () => expect(readFileSync(proxy.logPath, 'utf8')).toContain('TLS certificate not reloaded'),
      { timeoutMs: 15_000 },
    );
    expect(await servedCn(port)).toBe('cardinal-second');
  });
});
