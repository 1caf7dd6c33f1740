// The governance loop on a real node: the chart installed with helm in gateway mode from images
// built here from the project's Dockerfiles, real senders in pods writing through the proxy
// Service by its DNS name into a receiving Prometheus pod, MetricPolicies applied with kubectl,
// the kubelet projecting the operator's ConfigMap into the proxies, the operator finding the
// proxies through the Service's real EndpointSlices, leader failover, a rolling update and a
// deleted proxy pod with no failed write, and the chart's sidecar example; then prometheus-operator's
// Prometheus scraping the chart's ServiceMonitors, real failures injected (Pushgateway pushes, one
// refused; an upstream that refuses, then rejects; a full queue; the in-flight limit; a series
// without a name), and every query of the shipped dashboard answered with data from it.
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
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { Label } from '../../proxy/codec/types.js';
import {
  type Cluster,
  eventually,
  prometheusOperatorDir,
  secondsSince,
  startCluster,
} from '../framework/index.js';
import {
  list,
  MONITORING,
  prometheusOperator,
  pushgateway,
  receiver,
  receiverUsageMonitor,
  SCRAPE_INTERVAL_S,
  senders,
} from './manifests.js';

const RELEASE = 'cardinal';
const SYSTEM = 'cardinal-system';
const PROXY_SERVICE = `${RELEASE}-proxy`;
const WRITE_URL = `http://${PROXY_SERVICE}.${SYSTEM}.svc.cluster.local:8080/api/v1/write`;
const RECEIVER = `http://receiver.${MONITORING}.svc.cluster.local:9090`;
const UPSTREAM = `${RECEIVER}/api/v1/write`;
const PUSHGATEWAY = `http://pushgateway.${MONITORING}.svc.cluster.local:9091`;

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
  /** GET from the Prometheus that prometheus-operator runs (once the test that installs it ran). */
  const prometheusGet = (path: string) => cluster.serviceGet('default', 'prometheus-operated', 'web', path);
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
      'pushgateway',
      'promoperator',
      'reloader',
    ]);
    const t = performance.now();
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: MONITORING } }),
    );
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      list([
        ...receiver({ prometheus: cluster.images.prometheus ?? '', proxy: cluster.images.proxy ?? '' }),
        ...pushgateway(cluster.images.pushgateway ?? ''),
      ]),
    );
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
      // Pushgateway-protocol pushes, checked and forwarded to the Pushgateway.
      '--set',
      `proxy.pushgateway.url=${PUSHGATEWAY}`,
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
    // The standby, or the pod the Deployment starts in the leader's place if it wins the race
    // (the deleted leader gives the Lease up as it stops): a live operator pod other than the leader.
    const next = await eventually(
      async () => {
        const h = await holder();
        expect(h).not.toBe(leader);
        const live = (await podsOf(SYSTEM, 'app.kubernetes.io/component=operator')).map(
          (p) => p.metadata.name,
        );
        expect(live).toContain(h);
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

  /**
   * Runs `disrupt` (which says what it did), lets the senders flush, and checks that they saw no
   * failed or retried remote-write request and that no sample was lost meanwhile.
   */
  const withoutLoss = async (disrupt: () => Promise<string>) => {
    const before = await failures();
    const start = Date.now();
    const t = performance.now();
    const what = await disrupt();
    console.log(`cluster: ${what} in ${secondsSince(t)}s`);
    // Let the senders flush what they hold.
    await new Promise((r) => setTimeout(r, 3 * SCRAPE_INTERVAL_S * 1000));
    const after = await failures();
    console.log(
      `cluster: sender failure counters before ${JSON.stringify(before)} after ${JSON.stringify(after)}`,
    );
    expect(after).toEqual(before);
    await expectNoGaps(start);
  };

  it('a rolling update of the proxies fails no remote-write request and loses no sample', async () => {
    await withoutLoss(async () => {
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
      return 'rolling update of the proxies done';
    });
  });

  it('a proxy pod deleted mid-stream, with the durable queue on, fails no request and loses no sample', async () => {
    await withoutLoss(async () => {
      const [victim] = await podsOf(SYSTEM, 'app.kubernetes.io/component=proxy');
      expect(victim).toBeDefined();
      await cluster.kubectlOrThrow(
        ['-n', SYSTEM, 'delete', 'pod', victim?.metadata.name ?? '', '--wait=true'],
        undefined,
        120_000,
      );
      await waitReady(SYSTEM);
      return `proxy pod ${victim?.metadata.name} deleted and replaced`;
    });
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
    // kubectl wait fails, instead of waiting, on a CRD whose status has no conditions yet (just
    // created, on a busy API server): it is asked again.
    await eventually(
      () =>
        cluster.kubectlOrThrow(
          [
            'wait',
            '--for=condition=Established',
            'crd/servicemonitors.monitoring.coreos.com',
            'crd/prometheuses.monitoring.coreos.com',
            '--timeout=60s',
          ],
          undefined,
          70_000,
        ),
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    await cluster.kubectlOrThrow(
      ['apply', '-f', '-'],
      list([
        ...prometheusOperator(dir, {
          operator: cluster.images.promoperator ?? '',
          reloader: cluster.images.reloader ?? '',
          prometheus3: cluster.images.prometheus3 ?? '',
        }),
        receiverUsageMonitor(),
      ]),
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
      // Limits the next test hits for real: a queue that an outage fills within seconds (the
      // chart's smallest), and one remote-write request at a time per proxy.
      '--set',
      'proxy.queue.maxBytes=65536',
      '--set',
      'proxy.extraArgs[0]=--max-inflight-requests=1',
      '--wait',
      '--timeout',
      '10m',
    ]);
    const monitors = await cluster.kubectlOrThrow(['-n', SYSTEM, 'get', 'servicemonitors', '-o', 'name']);
    expect(monitors.trim().split('\n').sort()).toEqual([
      `servicemonitor.monitoring.coreos.com/${RELEASE}-operator`,
      `servicemonitor.monitoring.coreos.com/${RELEASE}-proxy`,
    ]);
    await eventually(
      async () => {
        const body = JSON.parse(await prometheusGet('/api/v1/targets?state=active')) as {
          data: { activeTargets: { scrapePool: string; health: string; labels: Record<string, string> }[] };
        };
        const up = (pool: string) =>
          body.data.activeTargets.filter((x) => x.scrapePool.startsWith(pool) && x.health === 'up').length;
        expect(up(`serviceMonitor/${SYSTEM}/${RELEASE}-proxy/`)).toBe(2);
        expect(up(`serviceMonitor/${SYSTEM}/${RELEASE}-operator/`)).toBe(2);
        expect(up(`serviceMonitor/${MONITORING}/receiver-usage/`)).toBe(1);
      },
      { timeoutMs: 420_000, intervalMs: 2_000 },
    );
    console.log(
      `cluster: prometheus-operator's Prometheus scrapes 2 proxies, 2 operators and the receiver's query-log proxy after ${secondsSince(t)}s`,
    );
  });

  /** A remote-write 1.0 request to the proxy Service, as a sender sends it; status and body. */
  const write = async (timeseries: Label[][]) => {
    const now = Date.now();
    const res = await cluster.serviceFetch(SYSTEM, PROXY_SERVICE, 'http', '/api/v1/write', {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: snappyEncode(
        encodeWriteRequestV1({
          timeseries: timeseries.map((labels, i) => ({
            labels,
            samples: [{ value: i, timestamp: now }],
            exemplars: [],
            histograms: [],
          })),
          metadata: [],
        }),
      ),
    });
    return { status: res.status, text: await res.text() };
  };
  /** A batch of valid series, as a busy sender's. */
  const batch = (n: number) =>
    Array.from({ length: n }, (_, i) => [
      { name: '__name__', value: 'cluster_burst_value' },
      { name: 'series', value: String(i) },
    ]);
  /** A sum over the in-cluster Prometheus that prometheus-operator runs. */
  const operated = async (expr: string) =>
    Number(
      (
        JSON.parse(await prometheusGet(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as {
          data: { result: Sample[] };
        }
      ).data.result[0]?.value?.[1] ?? 0,
    );
  const setReceiverSelector = (app: string) =>
    cluster.kubectlOrThrow([
      '-n',
      MONITORING,
      'patch',
      'service',
      'receiver',
      '-p',
      JSON.stringify({ spec: { selector: { app } } }),
    ]);

  it('real failures move the counters of the failure panels: pushes, an upstream that refuses then rejects, a full queue, the in-flight limit', async () => {
    const t = performance.now();
    // Pushgateway-protocol pushes through the proxy Service, as a batch job's: one the
    // Pushgateway takes, and one with a timestamp, which it would refuse (so the proxy does).
    const push = async (body: string) => {
      const res = await cluster.serviceFetch(
        SYSTEM,
        PROXY_SERVICE,
        'http',
        '/metrics/job/backup/instance/db-1',
        {
          method: 'PUT',
          headers: { 'content-type': 'text/plain; version=0.0.4' },
          body,
        },
      );
      return { status: res.status, text: await res.text() };
    };
    const family = (name: string, sample: string) =>
      `# HELP ${name} When the last backup finished.\n# TYPE ${name} gauge\n${sample}\n`;
    const good = await push(
      family('backup_last_success_timestamp_seconds', 'backup_last_success_timestamp_seconds 1.7e9'),
    );
    expect(good.status, good.text).toBeLessThan(300);
    const stamped = await push(
      family(
        'backup_last_success_timestamp_seconds',
        `backup_last_success_timestamp_seconds 1.7e9 ${Date.now()}`,
      ),
    );
    expect(stamped.status, stamped.text).toBe(400);
    expect(stamped.text).toContain('timestamp');
    await eventually(
      async () => {
        const groups = await cluster.serviceGet(MONITORING, 'pushgateway', 'http', '/api/v1/metrics');
        expect(groups).toContain('backup_last_success_timestamp_seconds');
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );

    // The upstream goes away: the receiver is scaled to zero, so its Service has no endpoint and
    // every connection is refused. The proxies keep acknowledging into their queues and retry;
    // the queues fill (65536 bytes) and refuse; bursts of parallel requests meet the in-flight
    // limit of one.
    await cluster.kubectlOrThrow(['-n', MONITORING, 'scale', 'deployment/receiver', '--replicas=0']);
    await eventually(
      async () =>
        expect(
          await cluster.kubectlOrThrow(['-n', MONITORING, 'get', 'pods', '-l', 'app=receiver', '-o', 'name']),
        ).toBe(''),
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    const answers = new Map<number, number>();
    await eventually(
      async () => {
        const burst = await Promise.all(Array.from({ length: 8 }, () => write(batch(300))));
        for (const r of burst) answers.set(r.status, (answers.get(r.status) ?? 0) + 1);
        expect(await operated('sum(cardinal_proxy_forward_retries_total)')).toBeGreaterThan(0);
        expect(await operated('sum(cardinal_proxy_queue_refused_samples_total)')).toBeGreaterThan(0);
        expect(await operated('sum(cardinal_proxy_requests_total{reason="OVERLOADED"})')).toBeGreaterThan(0);
      },
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    console.log(
      `cluster: upstream refusing; the bursts were answered ${JSON.stringify(Object.fromEntries(answers))}`,
    );
    // Then it answers, but refuses the data for good: the Service is pointed at the Prometheus
    // agent, which has no remote-write receiver (4xx). The queues drop what they hold, counted.
    await setReceiverSelector('prometheus-agent');
    await eventually(
      async () =>
        expect(await operated('max(cardinal_proxy_queue_dropped_samples_total)')).toBeGreaterThan(0),
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    await setReceiverSelector('receiver');
    await cluster.kubectlOrThrow(['-n', MONITORING, 'scale', 'deployment/receiver', '--replicas=1']);
    await waitReady(MONITORING);
    console.log(`cluster: failures injected and the receiver back in ${secondsSince(t)}s`);
  });

  it('every query of the shipped dashboard returns data from that Prometheus', async () => {
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
    // A sender whose series has no metric name, which a receiver would refuse: the door check
    // refuses its requests (400). It writes every 2 s while the queries run (the panel shows a rate).
    let refused = 0;
    let sending = true;
    let senderError: unknown;
    const badSender = (async () => {
      while (sending) {
        // A batch job pushes too, each round (the push panels show rates; a proxy that restarts
        // starts its counters again).
        await cluster
          .serviceFetch(SYSTEM, PROXY_SERVICE, 'http', '/metrics/job/backup/instance/db-1', {
            method: 'PUT',
            headers: { 'content-type': 'text/plain; version=0.0.4' },
            body: `# HELP backup_size_bytes The size of the last backup.\n# TYPE backup_size_bytes gauge\nbackup_size_bytes 1024 ${Date.now()}\n`,
          })
          .then((res) => res.text());
        const r = await write([[{ name: 'job', value: 'nameless' }]]);
        // 503: the in-flight limit of one was met (another request was being handled); a
        // sender tries again, as this one does two seconds later.
        if (r.status === 400) refused++;
        else if (r.status !== 503) throw new Error(`a nameless series was answered ${r.status}: ${r.text}`);
        await new Promise((res) => setTimeout(res, 2_000));
      }
    })().catch((err: unknown) => {
      senderError = err;
    });
    const t = performance.now();
    try {
      await eventually(
        async () => {
          await read();
          const e = await empty();
          expect(e.map((q) => `${q.title}: ${q.expr}`)).toEqual([]);
        },
        { timeoutMs: 180_000, intervalMs: 5_000 },
      );
    } finally {
      sending = false;
      await badSender;
    }
    if (senderError !== undefined) throw senderError;
    expect(refused).toBeGreaterThan(0);
    console.log(`cluster: all ${queries.length} dashboard queries return data, after ${secondsSince(t)}s`);
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
