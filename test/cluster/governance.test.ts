// The governance loop on a real node: the chart installed with helm in gateway mode from images
// built here from the project's Dockerfiles, real senders in pods writing through the proxy
// Service by its DNS name into a receiving Prometheus pod, MetricPolicies applied with kubectl,
// the kubelet projecting the operator's ConfigMap into the proxies, the operator finding the
// proxies through the Service's real EndpointSlices, leader failover, a rolling update and a
// deleted proxy pod with no failed write, and the chart's sidecar example.
//
// SLOW: the node comes up in about 20 s on a warm machine, importing the images takes about 90 s,
// and a first run builds the images (hack/cluster-images.sh). The times of each phase are printed.
//
// The tests run in order and build on each other (one cluster for the file); the last one takes
// the cluster down and compares the machine with what it was before `up`.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  type Cluster,
  eventually,
  prometheusOperatorDir,
  secondsSince,
  startCluster,
} from '../framework/index.js';
import { list, MONITORING, prometheusOperator, receiver, SCRAPE_INTERVAL_S, senders } from './manifests.js';

const RELEASE = 'cardinal';
const SYSTEM = 'cardinal-system';
const PROXY_SERVICE = `${RELEASE}-proxy`;
const WRITE_URL = `http://${PROXY_SERVICE}.${SYSTEM}.svc.cluster.local:8080/api/v1/write`;
const RECEIVER = `http://receiver.${MONITORING}.svc.cluster.local:9090`;
const UPSTREAM = `${RECEIVER}/api/v1/write`;

interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

interface PolicyStatus {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; observedGeneration: number }[];
    proxies?: { ready: number; total: number; configHash: string };
  };
}

/**
 * kubectl's table by row name, each row by column header. A column starts where its header does
 * (headers may hold a space, LIMITS %; cells may be empty, REASON).
 */
function columns(table: string): Map<string, Record<string, string>> {
  const [header = '', ...rows] = table.trimEnd().split('\n');
  const starts = [...header.matchAll(/\S+(?: \S+)*/g)].map((m) => ({ name: m[0], at: m.index }));
  const out = new Map<string, Record<string, string>>();
  for (const line of rows) {
    const cells: Record<string, string> = {};
    starts.forEach((c, i) => {
      cells[c.name] = line.slice(c.at, starts[i + 1]?.at ?? line.length).trim();
    });
    out.set(cells.NAME ?? '', cells);
  }
  return out;
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
/** Every panel, rows and the panels of collapsed rows included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/**
 * The dashboard's queries that have no data on this suite's cluster, by panel title and a part of
 * the query, each for its reason: they chart failures that a healthy run never has, or the
 * Pushgateway routes, which this install does not turn on. Every other query must return data.
 */
const WITHOUT_DATA_HERE: readonly { title: string; query: string; why: string }[] = [
  {
    title: 'Forward retries',
    query: 'cardinal_proxy_forward_retries_total',
    why: 'no write to the receiver fails',
  },
  {
    title: 'Queued samples',
    query: 'cardinal_proxy_queue_refused_samples_total',
    why: 'the durable queue never fills',
  },
  {
    title: 'Acknowledged, not delivered (kept across restarts)',
    query: 'cardinal_proxy_queue_dropped_samples_total',
    why: 'the queue drops nothing (the query keeps values above 0)',
  },
  {
    title: 'Refused at the door',
    query: 'cardinal_proxy_invalid_series_total',
    why: 'the senders send valid series only (the query keeps values above 0)',
  },
  {
    title: 'Queue disk full, overload',
    query: 'OVERLOADED|SENDER_GONE|QUEUE_DISK_FULL',
    why: 'no request is refused for overload',
  },
  { title: 'Pushes answered', query: 'protocol="pushgateway"', why: 'proxy.pushgateway.url is not set' },
  {
    title: 'Query log',
    query: 'cardinal_proxy_usage_query_log_lines_total',
    why: 'no query log is tailed (--query.log-file)',
  },
  { title: 'Push problems by rule', query: 'cardinal_proxy_push_problems_total', why: 'no Pushgateway' },
];

describe('the chart on a real node', () => {
  let cluster: Cluster;
  /** An image reference as the chart's values take it: registry/repository:tag. */
  const imageValues = (component: 'proxy' | 'operator', ref: string | undefined) => {
    const m = /^([^/]+)\/(.+):([^:/]+)$/.exec(ref ?? '');
    if (m === null) throw new Error(`${component} image ${ref} is not registry/repository:tag`);
    return `${component}.image.registry=${m[1]},${component}.image.repository=${m[2]},${component}.image.tag=${m[3]}`;
  };

  const query = async (expr: string): Promise<Sample[]> => {
    const body = await cluster.serviceGet(
      MONITORING,
      'receiver',
      'http',
      `/api/v1/query?query=${encodeURIComponent(expr)}`,
    );
    const parsed = JSON.parse(body) as { status: string; data: { result: Sample[] } };
    expect(parsed.status).toBe('success');
    return parsed.data.result;
  };
  const scalar = async (expr: string): Promise<number> => Number((await query(expr))[0]?.value?.[1] ?? 0);
  /** A metric of a sender, read from the sender itself. */
  const senderMetric = async (service: string, name: string): Promise<number> => {
    const text = await cluster.serviceGet(MONITORING, service, 'http', '/metrics');
    let sum = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(' ').at(-1));
    }
    return sum;
  };
  const policy = async (name: string): Promise<PolicyStatus> =>
    JSON.parse(await cluster.kubectlOrThrow(['-n', MONITORING, 'get', 'metricpolicy', name, '-o', 'json']));
  const apply = (name: string, spec: Record<string, unknown>) =>
    cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'cardinal.dev/v1alpha1',
        kind: 'MetricPolicy',
        metadata: { name, namespace: MONITORING },
        spec,
      }),
    );
  const podsOf = async (namespace: string, selector: string) =>
    (
      JSON.parse(
        await cluster.kubectlOrThrow(['-n', namespace, 'get', 'pods', '-l', selector, '-o', 'json']),
      ) as {
        items: {
          metadata: { name: string; deletionTimestamp?: string };
          status: { podIP?: string; conditions?: { type: string; status: string }[] };
          spec: {
            containers: { name: string; securityContext?: Record<string, unknown> }[];
            securityContext?: Record<string, unknown>;
          };
        }[];
      }
    ).items;
  /** Every Deployment of the namespace rolled out, with all its pods Ready. */
  const waitReady = async (namespace: string) => {
    const names = (await cluster.kubectlOrThrow(['-n', namespace, 'get', 'deployments', '-o', 'name']))
      .split('\n')
      .filter((n) => n !== '');
    for (const name of names) {
      await cluster.kubectlOrThrow(
        ['-n', namespace, 'rollout', 'status', name, '--timeout=300s'],
        undefined,
        320_000,
      );
    }
  };

  beforeAll(async () => {
    cluster = await startCluster([
      'proxy',
      'operator',
      'prometheus',
      'prometheus3',
      'vmagent',
      'promoperator',
      'reloader',
    ]);
    const t = performance.now();
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: MONITORING } }),
    );
    await cluster.kubectlOrThrow(['apply', '-f', '-'], list(receiver(cluster.images.prometheus ?? '')));
    await cluster.helm([
      'install',
      RELEASE,
      'charts/cardinal',
      '--namespace',
      SYSTEM,
      '--create-namespace',
      '--set',
      `upstream=${UPSTREAM}`,
      '--set',
      imageValues('proxy', cluster.images.proxy),
      '--set',
      imageValues('operator', cluster.images.operator),
      '--set',
      'proxy.image.pullPolicy=Never,operator.image.pullPolicy=Never',
      // The proxies keep a durable queue on their emptyDir, under the read-only root file system.
      '--set',
      'proxy.queue.enabled=true,proxy.queue.maxBytes=268435456,proxy.queue.sizeLimit=512Mi',
      // Two cores are shared by everything on this machine.
      '--set',
      'proxy.resources.requests.cpu=50m,operator.resources.requests.cpu=20m',
      '--set',
      'operator.statusInterval=5s',
      // The read path, for the receiver's query API (its dashboard row is checked below).
      '--set',
      `proxy.query.upstream=${RECEIVER}`,
      // serviceMonitor.enabled is left at its default: ServiceMonitors once the cluster serves
      // their API (the prometheus-operator test installs it).
      '--wait',
      '--timeout',
      '10m',
    ]);
    await waitReady(MONITORING);
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      list(
        senders(
          { prometheus: cluster.images.prometheus ?? '', vmagent: cluster.images.vmagent ?? '' },
          WRITE_URL,
        ),
      ),
    );
    await waitReady(MONITORING);
    console.log(`cluster: chart and workloads ready in ${secondsSince(t)}s`);
  }, 60 * 60_000);

  afterAll(async () => {
    await cluster?.down();
  }, 10 * 60_000);

  it("every pod of the chart is Ready under the chart's security contexts", async () => {
    const pods = await podsOf(SYSTEM, `app.kubernetes.io/instance=${RELEASE}`);
    expect(pods.length).toBe(4);
    for (const pod of pods) {
      expect(pod.status.conditions?.find((c) => c.type === 'Ready')?.status, pod.metadata.name).toBe('True');
      expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true });
      for (const c of pod.spec.containers) {
        expect(c.securityContext, `${pod.metadata.name}/${c.name}`).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
        });
      }
    }
    // The proxies run their durable queue on the emptyDir.
    const metrics = await cluster.serviceGet(SYSTEM, PROXY_SERVICE, 'http', '/metrics');
    expect(metrics).toMatch(/cardinal_proxy_queue_\w+\{[^}]*queue="remote_write"/);
  });

  it('real senders write through the proxy Service, by its DNS name, into the receiving Prometheus', async () => {
    const t = performance.now();
    await eventually(
      async () => {
        const bySender = await query('count by (sender) (up)');
        expect(bySender.map((s) => s.metric.sender).sort()).toEqual(['prometheus-agent', 'vmagent']);
      },
      { timeoutMs: 180_000, intervalMs: 2_000 },
    );
    console.log(`cluster: first samples of both senders in the receiver after ${secondsSince(t)}s`);
    // Each sender scrapes the other pod through its Service, across the bridge (the pods started
    // together, so a first scrape may have found the other one not yet listening).
    await eventually(
      async () => {
        expect(await scalar('count(up{sender="vmagent", job="agent"} == 1)')).toBe(1);
        expect(await scalar('count(up{sender="prometheus-agent", job="receiver"} == 1)')).toBe(1);
      },
      { timeoutMs: 120_000, intervalMs: 2_000 },
    );
  });

  it('a MetricPolicy applied with kubectl is enforced by both proxies, and its status counts them', async () => {
    const metric = 'go_goroutines';
    expect(await scalar(`count(${metric})`)).toBeGreaterThan(0);
    const t = performance.now();
    const appliedAt = Date.now();
    await apply('drop-goroutines', { drop: [metric] });
    const ready = await eventually(
      async () => {
        const p = await policy('drop-goroutines');
        const c = p.status?.conditions?.find((x) => x.type === 'Ready');
        expect(c).toMatchObject({ status: 'True', observedGeneration: 1 });
        // The real pod count: both proxy replicas run this generation.
        expect(p.status?.proxies).toMatchObject({ ready: 2, total: 2 });
        return Date.now();
      },
      { timeoutMs: 180_000, intervalMs: 500 },
    );
    console.log(
      `cluster: MetricPolicy applied -> Ready on both proxies in ${secondsSince(t)}s ` +
        '(operator -> ConfigMap -> kubelet projection -> hot reload -> operator poll)',
    );
    // Enforced: after Ready, no sample of the metric scraped later than that arrives, from either
    // sender, while the rest keeps flowing. Samples are timestamped by the senders at scrape time.
    await new Promise((r) => setTimeout(r, 4 * SCRAPE_INTERVAL_S * 1000));
    const newest = await scalar(`max(timestamp(${metric}))`);
    expect(newest * 1000).toBeLessThan(ready + 1000);
    expect(newest * 1000).toBeGreaterThan(appliedAt - 120_000);
    expect(await scalar(`count(timestamp(up) > ${ready / 1000})`)).toBeGreaterThanOrEqual(2);

    const table = await cluster.kubectlOrThrow(['-n', MONITORING, 'get', 'mp', '-o', 'wide']);
    console.log(`cluster: kubectl get mp -o wide\n${table}`);
    const row = columns(table).get('drop-goroutines');
    expect(row).toMatchObject({ MODE: 'enforce', READY: 'True', REASON: '', PROXIES: '2' });
    expect(row?.['DROPPED/S']).toMatch(/^\d+(\.\d+)?$/);
  });

  it('the operator finds the proxies through the real EndpointSlices of their Service', async () => {
    const slices = JSON.parse(
      await cluster.kubectlOrThrow([
        '-n',
        SYSTEM,
        'get',
        'endpointslices',
        '-l',
        `kubernetes.io/service-name=${PROXY_SERVICE}`,
        '-o',
        'json',
      ]),
    ) as { items: { endpoints: { addresses: string[] }[] }[] };
    const addresses = slices.items.flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort();
    const podIps = (await podsOf(SYSTEM, 'app.kubernetes.io/component=proxy'))
      .map((p) => p.status.podIP)
      .sort();
    expect(addresses).toEqual(podIps);
    // The pod range of hack/cluster.sh; another cluster has its own.
    if (!cluster.existing) expect(addresses.every((a) => a.startsWith('10.244.0.'))).toBe(true);
  });

  it('operator failover: the other replica takes the Lease when the leader pod is deleted, and reconciles an edit', async () => {
    // The holder identity is <pod name>_<random>, the pod name coming from POD_NAME.
    const holder = async () => {
      const lease = JSON.parse(
        await cluster.kubectlOrThrow(['-n', SYSTEM, 'get', 'lease', 'cardinal-operator', '-o', 'json']),
      ) as { spec: { holderIdentity?: string } };
      return (lease.spec.holderIdentity ?? '').replace(/_[0-9a-f]+$/, '');
    };
    const leader = await holder();
    const operators = (await podsOf(SYSTEM, 'app.kubernetes.io/component=operator')).map(
      (p) => p.metadata.name,
    );
    expect(operators).toContain(leader);
    const t = performance.now();
    await cluster.kubectlOrThrow(['-n', SYSTEM, 'delete', 'pod', leader, '--wait=false']);
    const next = await eventually(
      async () => {
        const h = await holder();
        expect(h).not.toBe(leader);
        expect(operators).toContain(h);
        return h;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    console.log(`cluster: leader ${leader} deleted; ${next} took the Lease after ${secondsSince(t)}s`);
    await apply('drop-goroutines', { drop: ['go_goroutines', 'go_threads'] });
    await eventually(
      async () => {
        const p = await policy('drop-goroutines');
        expect(p.metadata.generation).toBe(2);
        expect(p.status?.conditions?.find((x) => x.type === 'Ready')).toMatchObject({
          status: 'True',
          observedGeneration: 2,
        });
      },
      { timeoutMs: 180_000, intervalMs: 500 },
    );
    console.log(`cluster: the new leader reconciled the edit ${secondsSince(t)}s after the deletion`);
    await waitReady(SYSTEM);
  });

  /** What the senders count as failed or retried remote-write requests and samples. */
  const failures = async () => ({
    agentFailed: await senderMetric('prometheus-agent', 'prometheus_remote_storage_samples_failed_total'),
    agentRetried: await senderMetric('prometheus-agent', 'prometheus_remote_storage_samples_retried_total'),
    vmagentErrors: await senderMetric('vmagent', 'vmagent_remotewrite_errors_total'),
    vmagentRetries: await senderMetric('vmagent', 'vmagent_remotewrite_retries_count_total'),
  });
  /**
   * No sample lost since `start`: both senders' scrapes of themselves arrive one interval apart
   * (a lost one would leave a gap of two intervals).
   */
  const expectNoGaps = async (start: number) => {
    const seconds = Math.ceil((Date.now() - start) / 1000) + 2 * SCRAPE_INTERVAL_S;
    for (const sender of ['prometheus-agent', 'vmagent']) {
      const [series] = await query(`up{sender="${sender}", job="self"}[${seconds}s]`);
      const times = (series?.values ?? []).map(([ts]) => ts);
      expect(times.length).toBeGreaterThan(seconds / SCRAPE_INTERVAL_S - 3);
      const gaps = times.slice(1).map((ts, i) => ts - (times[i] ?? ts));
      expect(Math.max(...gaps), `${sender}: scrape gaps ${gaps.join(',')}`).toBeLessThan(
        1.5 * SCRAPE_INTERVAL_S,
      );
    }
  };

  it('a rolling update of the proxies fails no remote-write request and loses no sample', async () => {
    const before = await failures();
    const start = Date.now();
    const t = performance.now();
    // Changing an argument rolls the proxies one at a time (the PDB and the rollout allow one down).
    await cluster.helm([
      'upgrade',
      RELEASE,
      'charts/cardinal',
      '--namespace',
      SYSTEM,
      '--reuse-values',
      '--set',
      'proxy.logLevel=debug',
      '--wait',
      '--timeout',
      '10m',
    ]);
    await cluster.kubectlOrThrow(
      ['-n', SYSTEM, 'rollout', 'status', `deployment/${PROXY_SERVICE}`, '--timeout=300s'],
      undefined,
      320_000,
    );
    console.log(`cluster: rolling update of the proxies done in ${secondsSince(t)}s`);
    // Let the senders flush what they hold.
    await new Promise((r) => setTimeout(r, 3 * SCRAPE_INTERVAL_S * 1000));
    const after = await failures();
    console.log(
      `cluster: sender failure counters before ${JSON.stringify(before)} after ${JSON.stringify(after)}`,
    );
    expect(after).toEqual(before);
    await expectNoGaps(start);
  });

  it('a proxy pod deleted mid-stream, with the durable queue on, fails no request and loses no sample', async () => {
    const before = await failures();
    const start = Date.now();
    const t = performance.now();
    const [victim] = await podsOf(SYSTEM, 'app.kubernetes.io/component=proxy');
    expect(victim).toBeDefined();
    await cluster.kubectlOrThrow(
      ['-n', SYSTEM, 'delete', 'pod', victim?.metadata.name ?? '', '--wait=true'],
      undefined,
      120_000,
    );
    await waitReady(SYSTEM);
    console.log(`cluster: proxy pod ${victim?.metadata.name} deleted and replaced in ${secondsSince(t)}s`);
    await new Promise((r) => setTimeout(r, 3 * SCRAPE_INTERVAL_S * 1000));
    const after = await failures();
    console.log(
      `cluster: sender failure counters before ${JSON.stringify(before)} after ${JSON.stringify(after)}`,
    );
    expect(after).toEqual(before);
    await expectNoGaps(start);
  });

  it("sidecar mode: the chart's example, a Prometheus agent with the proxy beside it, is governed by the MetricPolicy", async () => {
    // The example as shipped, with the images built here and the receiver of this test as the
    // proxy's upstream; nothing else is changed.
    const example = readFileSync(
      new URL('../../charts/cardinal/examples/sidecar-prometheus-agent.yaml', import.meta.url),
      'utf8',
    );
    interface Container {
      name: string;
      image: string;
      args: string[];
      imagePullPolicy?: string;
    }
    const docs = parseAllDocuments(example).map(
      (d) =>
        d.toJS() as { kind: string; metadata: { namespace: string }; spec?: { containers?: Container[] } },
    );
    const pod = docs.find((d) => d.kind === 'Pod');
    expect(pod?.metadata.namespace).toBe(SYSTEM);
    for (const c of pod?.spec?.containers ?? []) {
      c.imagePullPolicy = 'Never';
      if (c.name === 'prometheus') c.image = cluster.images.prometheus3 ?? '';
      if (c.name === 'cardinal-proxy') {
        c.image = cluster.images.proxy ?? '';
        c.args = c.args.map((a) => (a.startsWith('--upstream=') ? `--upstream=${UPSTREAM}` : a));
      }
    }
    await cluster.kubectlOrThrow(['apply', '-f', '-'], list(docs as unknown as Record<string, unknown>[]));
    await cluster.kubectlOrThrow(
      ['-n', SYSTEM, 'wait', '--for=condition=Ready', 'pod/prometheus-agent', '--timeout=300s'],
      undefined,
      320_000,
    );
    // Its own scrapes (job "prometheus") arrive through the sidecar; the metrics the policy drops
    // do not, though Prometheus 3 exports them.
    await eventually(async () => expect(await scalar('count(up{job="prometheus"} == 1)')).toBe(1), {
      timeoutMs: 180_000,
      intervalMs: 2_000,
    });
    await eventually(
      async () => expect(await scalar('count(prometheus_build_info{job="prometheus"})')).toBe(1),
      { timeoutMs: 120_000, intervalMs: 2_000 },
    );
    expect(await scalar('count(go_goroutines{job="prometheus"})')).toBe(0);
    expect(await scalar('count(go_threads{job="prometheus"})')).toBe(0);
    const local = await cluster.kubectlOrThrow([
      'get',
      '--raw',
      `/api/v1/namespaces/${SYSTEM}/pods/prometheus-agent:9090/proxy/metrics`,
    ]);
    expect(local).toMatch(/^go_goroutines /m);
  });

  it("prometheus-operator's Prometheus finds the proxies and the operators through the chart's ServiceMonitors, and the dashboard's queries answer from it", async () => {
    const dir = prometheusOperatorDir();
    const t = performance.now();
    // The module's CRDs; server-side, since the Prometheus CRD is larger than the annotation
    // client-side apply keeps.
    const crds = readdirSync(join(dir, 'crds'))
      .filter((f) => f.endsWith('.yaml'))
      .sort();
    for (const f of crds)
      await cluster.kubectlOrThrow(
        ['apply', '--server-side', '-f', join(dir, 'crds', f)],
        undefined,
        120_000,
      );
    await cluster.kubectlOrThrow(
      [
        'wait',
        '--for=condition=Established',
        'crd/servicemonitors.monitoring.coreos.com',
        'crd/prometheuses.monitoring.coreos.com',
        '--timeout=120s',
      ],
      undefined,
      130_000,
    );
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      list(
        prometheusOperator(dir, {
          operator: cluster.images.promoperator ?? '',
          reloader: cluster.images.reloader ?? '',
          prometheus3: cluster.images.prometheus3 ?? '',
        }),
      ),
    );
    // serviceMonitor.enabled is at its default (null): the chart renders its ServiceMonitors
    // now that the cluster serves monitoring.coreos.com/v1.
    await cluster.helm([
      'upgrade',
      RELEASE,
      'charts/cardinal',
      '--namespace',
      SYSTEM,
      '--reuse-values',
      '--set',
      `serviceMonitor.interval=${SCRAPE_INTERVAL_S}s`,
      '--wait',
      '--timeout',
      '10m',
    ]);
    const monitors = await cluster.kubectlOrThrow(['-n', SYSTEM, 'get', 'servicemonitors', '-o', 'name']);
    expect(monitors.trim().split('\n').sort()).toEqual([
      `servicemonitor.monitoring.coreos.com/${RELEASE}-operator`,
      `servicemonitor.monitoring.coreos.com/${RELEASE}-proxy`,
    ]);
    const prometheusGet = (path: string) => cluster.serviceGet('default', 'prometheus-operated', 'web', path);
    await eventually(
      async () => {
        const body = JSON.parse(await prometheusGet('/api/v1/targets?state=active')) as {
          data: { activeTargets: { scrapePool: string; health: string; labels: Record<string, string> }[] };
        };
        const up = (pool: string) =>
          body.data.activeTargets.filter((x) => x.scrapePool.startsWith(pool) && x.health === 'up').length;
        expect(up(`serviceMonitor/${SYSTEM}/${RELEASE}-proxy/`)).toBe(2);
        expect(up(`serviceMonitor/${SYSTEM}/${RELEASE}-operator/`)).toBe(2);
      },
      { timeoutMs: 420_000, intervalMs: 2_000 },
    );
    console.log(
      `cluster: prometheus-operator's Prometheus scrapes 2 proxies and 2 operators after ${secondsSince(t)}s`,
    );

    // Every query of the dashboard as Grafana sends it with its defaults: each variable All (.*),
    // a rate interval of four scrape intervals, the last 10 minutes as the range.
    const dashboard = JSON.parse(
      readFileSync(new URL('../../charts/cardinal/dashboards/cardinal.json', import.meta.url), 'utf8'),
    ) as { panels: Panel[] };
    const queries = allPanels(dashboard.panels).flatMap((p) =>
      (p.targets ?? [])
        .filter((x) => x.expr !== undefined)
        .map((x) => ({ title: p.title ?? '', expr: x.expr ?? '' })),
    );
    expect(queries.length).toBeGreaterThan(40);
    const grafana = (expr: string) =>
      expr
        .replaceAll('$__rate_interval', `${4 * SCRAPE_INTERVAL_S}s`)
        .replaceAll('$__range', '10m')
        .replace(/\$\{?(cluster|namespace|job|pod|operator_job)\}?/g, '.*');
    // The dry-run panel charts what a policy in dryRun mode would drop.
    await apply('dry-run-scrape-samples', { mode: 'dryRun', drop: ['scrape_samples_scraped'] });
    const expected = (q: { title: string; expr: string }) =>
      !WITHOUT_DATA_HERE.some((x) => x.title === q.title && q.expr.includes(x.query));
    const empty = async () => {
      const out: { title: string; expr: string }[] = [];
      for (const q of queries) {
        const body = JSON.parse(
          await prometheusGet(`/api/v1/query?query=${encodeURIComponent(grafana(q.expr))}`),
        ) as { status: string; data: { result: unknown[] } };
        expect(body.status, q.expr).toBe('success');
        if (body.data.result.length === 0) out.push(q);
      }
      return out;
    };
    // Reads through the proxies' read path, for its row: a query of a metric, a selector that
    // names none, and one that does not parse (passed through; the receiver answers 400).
    const read = async () => {
      for (const expr of ['sum(rate(up[1m]))', '{job="self"}', 'sum(']) {
        await cluster.kubectl([
          'get',
          '--raw',
          `/api/v1/namespaces/${SYSTEM}/services/${PROXY_SERVICE}:query/proxy/api/v1/query?query=${encodeURIComponent(expr)}`,
        ]);
      }
    };
    const missing = await eventually(
      async () => {
        await read();
        const e = await empty();
        expect(e.filter(expected).map((q) => `${q.title}: ${q.expr}`)).toEqual([]);
        return e;
      },
      { timeoutMs: 180_000, intervalMs: 5_000 },
    );
    console.log(
      `cluster: ${queries.length - missing.length} of ${queries.length} dashboard queries return data; ` +
        `the others, as expected here:\n  ${missing.map((q) => `${q.title}: ${q.expr}`).join('\n  ')}`,
    );
  });

  // An existing cluster (USE_EXISTING_CLUSTER=true) is not ours to take down.
  it.skipIf(process.env.USE_EXISTING_CLUSTER === 'true')(
    'down removes everything the cluster made, and the machine is as it was before up',
    async () => {
      const before = cluster.snapshotBefore();
      const t = performance.now();
      const after = await cluster.down();
      console.log(`cluster: down in ${secondsSince(t)}s`);
      expect(before).toMatch(/# sysctls\nvm.overcommit_memory = \d/);
      expect(after).toBe(before);
    },
  );
});
