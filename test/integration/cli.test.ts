// The `cardinal` command against real Prometheus 2 and 3: data is written through the real proxy
// (no policies yet), then `preview` says what a new policy would drop from what is stored and who
// reads it, and `retro` deletes exactly that with the admin API, keeping what is read: confirmed
// with PromQL afterwards.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import {
  eventually,
  freePort,
  runCardinal,
  startProgram,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const cardinal = runCardinal;

const POLICY = `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: retro
  namespace: team
spec:
  drop:
    - debug_.*
    - read_but_dropped_total
  relabel:
    # Only app_info{env="dev"} without an extra label: the one with extra="x" stays.
    - action: drop
      source_labels: [__name__, env, extra]
      regex: 'app_info;dev;'
  limits:
    perMetric:
      - name: http-cap
        metric: http_requests_total
        maxSeries: 1
`;

const USAGE = `apiVersion: cardinal.dev/v1alpha1
kind: MetricUsage
metadata:
  name: cluster
spec:
  metrics:
    - name: read_but_dropped_total
      sources: [PrometheusRule monitoring/alerts]
`;

const SERIES: Record<string, string>[] = [
  ...[0, 1, 2, 3, 4].map((i) => ({ __name__: 'debug_requests_total', job: 'a', i: String(i) })),
  { __name__: 'http_requests_total', job: 'a', code: '200' },
  { __name__: 'http_requests_total', job: 'a', code: '500' },
  { __name__: 'read_but_dropped_total', job: 'a' },
  { __name__: 'app_info', job: 'a', env: 'dev' },
  { __name__: 'app_info', job: 'a', env: 'dev', extra: 'x' },
  { __name__: 'app_info', job: 'a', env: 'prod' },
  { __name__: 'kept_total', job: 'a' },
];

async function writeThrough(writeUrl: string): Promise<void> {
  const now = Date.now();
  const body = encodeWriteRequestV1({
    timeseries: SERIES.map((s) => ({
      labels: Object.entries(s)
        .map(([name, value]) => ({ name, value }))
        .sort((a, b) => (a.name < b.name ? -1 : 1)),
      samples: [{ value: 1, timestamp: now }],
      exemplars: [],
      histograms: [],
    })),
    metadata: [],
  });
  const res = await fetch(writeUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    body: snappyEncode(body),
  });
  expect(res.status).toBe(204);
}

function configDir(): string {
  const config = mkdtempSync(join(tmpdir(), 'cardinal-retro-'));
  writeFileSync(join(config, 'policy.yaml'), POLICY);
  writeFileSync(join(config, 'usage.yaml'), USAGE);
  return config;
}

describe('cardinal retro against VictoriaMetrics', () => {
  const track = useCleanup();

  it('deletes exactly the dropped series with its delete API', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    track(
      await startProgram({
        name: 'victoria-metrics',
        command: '/usr/bin/victoria-metrics',
        args: (dir) => [
          `-storageDataPath=${join(dir, 'data')}`,
          `-httpListenAddr=127.0.0.1:${port}`,
          '-search.latencyOffset=0s',
        ],
        readyUrl: `${url}/health`,
      }),
    );
    const proxy = track(await startProxy({ upstream: `${url}/api/v1/write` }));
    await writeThrough(proxy.writeUrl);
    // VictoriaMetrics makes new data searchable after a flush.
    expect((await fetch(`${url}/internal/force_flush`)).status).toBe(200);
    const count = async (selector: string) => {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: `count(${selector})` })}`);
      const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return Number(body.data.result[0]?.value[1] ?? 0);
    };
    await eventually(async () => expect(await count('{job="a"}')).toBe(SERIES.length), {
      timeoutMs: 30_000,
      intervalMs: 500,
    });
    const common = ['--config', configDir(), '--prometheus', url, '--flavor', 'victoriametrics'];
    const dry = await cardinal(['retro', ...common]);
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toContain('dry run: 6 series of 2 metrics would be deleted');
    const applied = await cardinal(['retro', ...common, '--apply'], '6\n');
    expect(applied.code, applied.err).toBe(0);
    expect(applied.out).toContain('deleted 6 series of 2 metrics\n');
    expect(await count('{__name__="debug_requests_total"}')).toBe(0);
    expect(await count('{__name__="app_info"}')).toBe(2);
    expect(await count('{__name__="read_but_dropped_total"}')).toBe(1);
    expect(await count('{job="a"}')).toBe(SERIES.length - 6);
  });
});

describe.each([2, 3] as const)('cardinal preview and retro against Prometheus %i', (version) => {
  const track = useCleanup();

  it('previews, refuses what is read, dry-runs, asks for the count, and deletes exactly the dropped series', async () => {
    const prom = track(await startPrometheusReceiver({ version, extraArgs: ['--web.enable-admin-api'] }));
    const proxy = track(await startProxy({ upstream: prom.remoteWriteUrl }));
    await writeThrough(proxy.writeUrl);
    const count = async (selector: string) => {
      const r = await prom.query(`count(${selector})`);
      return r[0]?.value ?? 0;
    };
    expect(await count('{job="a"}')).toBe(SERIES.length);

    const common = ['--config', configDir(), '--prometheus', prom.url];

    const preview = await cardinal(['preview', ...common]);
    expect(preview.code, preview.err).toBe(0);
    const rows = preview.out.split('\n').map((l) => l.split(/\s{2,}/));
    expect(preview.out).toContain(`${prom.url}: ${SERIES.length} series of 5 of 5 metrics listed`);
    expect(rows).toContainEqual([
      'team/retro',
      'drop[0]',
      'enforce',
      'debug_requests_total',
      'dropped',
      '5',
      '5',
      '-',
    ]);
    expect(rows).toContainEqual(['team/retro', 'relabel', 'enforce', 'app_info', 'dropped', '1', '3', '-']);
    expect(rows).toContainEqual([
      'team/retro',
      'drop[1]',
      'enforce',
      'read_but_dropped_total',
      'dropped',
      '1',
      '1',
      'PrometheusRule monitoring/alerts',
    ]);
    expect(rows).toContainEqual([
      'team/retro',
      'http-cap',
      'enforce',
      'http_requests_total',
      'over limit',
      '1',
      '2',
      '-',
    ]);
    expect(preview.out).toContain('warning: 1 metric(s) that would be dropped are read (READ BY)');

    const dry = await cardinal(['retro', ...common]);
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toContain(
      'refused: read_but_dropped_total: 1 series would be dropped, but it is read by PrometheusRule monitoring/alerts',
    );
    expect(dry.out).toContain('dry run: 6 series of 2 metrics would be deleted');
    expect(await count('{job="a"}')).toBe(SERIES.length);

    const wrong = await cardinal(['retro', ...common, '--apply'], '5\n');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('Type 6 to confirm');
    expect(wrong.out).toContain('not confirmed; nothing was deleted');
    expect(await count('{job="a"}')).toBe(SERIES.length);

    const applied = await cardinal(['retro', ...common, '--apply'], '6\n');
    expect(applied.code, applied.err).toBe(0);
    expect(applied.out).toContain('deleted 6 series of 2 metrics; tombstones cleaned');

    // Only what the policy named is gone; what is read, kept, limited or not matched stays.
    expect(await count('{__name__="debug_requests_total"}')).toBe(0);
    const apps = (await prom.query('app_info')).map((x) => JSON.stringify(x.labels)).sort();
    expect(apps).toEqual([
      JSON.stringify({ __name__: 'app_info', env: 'dev', extra: 'x', job: 'a' }),
      JSON.stringify({ __name__: 'app_info', env: 'prod', job: 'a' }),
    ]);
    expect(await count('{__name__="read_but_dropped_total"}')).toBe(1);
    expect(await count('{__name__="http_requests_total"}')).toBe(2);
    expect(await count('{__name__="kept_total"}')).toBe(1);
    expect(await count('{job="a"}')).toBe(SERIES.length - 6);

    // Run again: nothing is left to delete.
    const again = await cardinal(['retro', ...common]);
    expect(again.out).toContain('nothing to delete');
  });
});
