// Stage plugins outside the proxy's traffic: `cardinal check`, `cardinal test` and `cardinal
// preview` (the built CLI) load `--stage.plugin PATH` with the proxy's loader, and the proxy's
// playground page runs the plugins the proxy loaded. A plugin config its schema refuses gets the
// message the proxy gives when it rejects the configuration; a plugin that does not load is a
// usage error naming the file; the verdicts are the plugins' own (the example plugins' functions
// say which series they keep and which bucket a value lands in).

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bucketOf } from '../../examples/stages/hash-bucket.js';
import { kept } from '../../examples/stages/sample.js';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import { runCardinal, startPrometheusReceiver, startProxy, useCleanup } from '../framework/index.js';

const HASH_BUCKET = fileURLToPath(new URL('../../dist/examples/stages/hash-bucket.js', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../../dist/examples/stages/sample.js', import.meta.url));
const THROWING = fileURLToPath(new URL('../fixtures/stages/throwing.mjs', import.meta.url));

const cardinal = runCardinal;

const policy = (stages: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: plugins\n  namespace: platform\nspec:\n  stages:\n${stages}`;
const BUCKETS = (buckets: string) =>
  `    - name: hash-bucket\n      config: { label: user, buckets: ${buckets}, metrics: [requests_total] }\n`;
const SAMPLING = '    - name: sample\n      config: { metric: sampled_total, keepOneIn: 3 }\n';
/** The message the proxy's configuration status shows for BUCKETS('"many"') (stage-plugins.test.ts). */
const BAD_CONFIG = 'policy platform/plugins: stages[0].config.buckets: Expected integer (plugin hash-bucket)';

function configDir(text: string): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'cardinal-cli-plugins-')), 'config');
  mkdirSync(dir);
  writeFileSync(join(dir, 'policy.yaml'), text);
  return dir;
}

function file(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'cardinal-cli-plugins-')), name);
  writeFileSync(path, text);
  return path;
}

/** Buckets enough that the users below land in different ones (asserted), so none are aggregated. */
const N = 64;
const USERS = Array.from({ length: 6 }, (_, k) => `u${k}`);
const SAMPLED = Array.from({ length: 12 }, (_, k) => String(k));
const labelsOf = (name: string, extra: Record<string, string>) =>
  [
    { name: '__name__', value: name },
    ...Object.entries(extra).map(([n, value]) => ({ name: n, value })),
  ].sort((a, b) => (a.name < b.name ? -1 : 1));
/** How many of the sampled series the sample plugin drops (keepOneIn 3). */
const SAMPLED_DROPPED = SAMPLED.filter((i) => !kept(labelsOf('sampled_total', { i }), 3)).length;

describe('cardinal with stage plugins', () => {
  it('check: plugin configs are checked by the plugins, with the proxy message', async () => {
    const bad = configDir(policy(BUCKETS('"many"')));
    const checked = await cardinal(['check', '--stage.plugin', HASH_BUCKET, bad]);
    expect(checked.code, checked.err).toBe(1);
    expect(checked.out).toBe(`${join(bad, 'policy.yaml')}:1: ${BAD_CONFIG}\n`);
    expect(checked.err).toBe('1 file, 1 policy, 0 usage documents: 1 problem\n');

    const good = configDir(policy(BUCKETS(String(N)) + SAMPLING));
    const ok = await cardinal(['check', '--stage.plugin', HASH_BUCKET, '--stage.plugin', SAMPLE, good]);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.err).toBe('1 file, 1 policy, 0 usage documents: ok\n');

    // A stage whose plugin is not given: the proxy would reject it, and check says so.
    const missing = await cardinal(['check', '--stage.plugin', HASH_BUCKET, good]);
    expect(missing.code).toBe(1);
    expect(missing.out).toContain(
      'policy platform/plugins: stages[1].name: no stage plugin named sample is loaded (--stage.plugin PATH loads one); loaded: hash-bucket',
    );

    // Without --stage.plugin only the shape is checked, and check says what it did not check.
    const shape = await cardinal(['check', bad]);
    expect(shape.code, shape.out).toBe(0);
    expect(shape.err).toContain(
      'note: 1 policy names stage plugins; give them with --stage.plugin PATH to check their configs',
    );
  });

  it('a plugin that does not load is a usage error naming the file', async () => {
    const notStage = file(
      'not-a-stage.mjs',
      "export default { apiVersion: 1, kind: 'series', name: 'x' };\n",
    );
    const r = await cardinal(['check', '--stage.plugin', notStage, configDir(policy(BUCKETS(String(N))))]);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `cardinal check: --stage.plugin ${notStage}: kind "series": plugins are label stages (kind 'label')\n`,
    );
    const gone = await cardinal(['test', '--stage.plugin', '/nonexistent/plugin.mjs', 'x.yaml']);
    expect(gone.code).toBe(2);
    expect(gone.err).toContain('cardinal test: --stage.plugin /nonexistent/plugin.mjs: cannot be imported');
  });

  it('test: the plugins act on the series, in tables and in test files', async () => {
    const config = configDir(policy(BUCKETS(String(N)) + SAMPLING));
    const series = file(
      'series.txt',
      `${USERS.map((u) => `requests_total{user="${u}"}`).join('\n')}\n${SAMPLED.map((i) => `sampled_total{i="${i}"}`).join('\n')}\n`,
    );
    const r = await cardinal([
      'test',
      '--config',
      config,
      '--stage.plugin',
      HASH_BUCKET,
      '--stage.plugin',
      SAMPLE,
      series,
    ]);
    expect(r.code, r.err).toBe(0);
    const rows = r.out.split('\n').map((l) => l.split(/\s{2,}/));
    expect(new Set(USERS.map((u) => bucketOf(u, N))).size).toBe(USERS.length);
    for (const u of USERS)
      expect(rows).toContainEqual([
        `requests_total{user="${u}"}`,
        `rewritten → requests_total{user="${bucketOf(u, N)}"}`,
      ]);
    expect(SAMPLED_DROPPED).toBeGreaterThan(0);
    expect(r.err).toContain(
      `${USERS.length + SAMPLED.length} series: ${SAMPLED.length - SAMPLED_DROPPED} kept`,
    );
    expect(r.err).toContain(`${SAMPLED_DROPPED} dropped`);

    // A test file: expectations against a plugin's verdict, and a plugin that throws (the series
    // goes on as the stages before it left it, as in the proxy).
    const dir = configDir(policy(`${BUCKETS(String(N))}    - name: thrower\n`));
    const u0 = bucketOf('u0', N);
    const testFile = file(
      'plugins.test.yaml',
      `config: ${dir}\ntests:\n  - name: buckets and checks\n    input:\n      - requests_total{user="u0"}\n      - cardinal_test_boom{user="u0"}\n    output:\n      - requests_total{checked="yes",user="${u0}"}\n      - cardinal_test_boom{user="u0"}\n`,
    );
    const t = await cardinal(['test', '--stage.plugin', HASH_BUCKET, '--stage.plugin', THROWING, testFile]);
    expect(t.out, t.err).toContain('  ok      buckets and checks\n');
    expect(t.out).toContain('1 test, 0 failed\n');
    expect(t.err).toContain('stage plugin thrower threw (this plugin does not like booms)');
    expect(t.code).toBe(0);

    // A config the plugin refuses: the proxy's message, exit 1.
    const bad = await cardinal([
      'test',
      '--config',
      configDir(policy(BUCKETS('"many"'))),
      '--stage.plugin',
      HASH_BUCKET,
      series,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`the configuration has problems:\n`);
    expect(bad.err).toContain(BAD_CONFIG);
    // Without the plugin the policy cannot run: the same problem the proxy would report.
    const without = await cardinal(['test', '--config', config, series]);
    expect(without.code).toBe(1);
    expect(without.err).toContain('stages[0].name: no stage plugin named hash-bucket is loaded');
  });

  describe('against a real Prometheus', () => {
    const track = useCleanup();

    it('preview: what a plugin would drop from what is stored', async () => {
      const prom = track(await startPrometheusReceiver({ version: 2 }));
      const now = Date.now();
      const res = await fetch(prom.remoteWriteUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
        body: snappyEncode(
          encodeWriteRequestV1({
            timeseries: [
              ...SAMPLED.map((i) => labelsOf('sampled_total', { i })),
              ...USERS.map((user) => labelsOf('requests_total', { user })),
            ].map((labels) => ({
              labels,
              samples: [{ value: 1, timestamp: now }],
              exemplars: [],
              histograms: [],
            })),
            metadata: [],
          }),
        ),
      });
      expect(res.status).toBe(204);
      const config = configDir(policy(BUCKETS(String(N)) + SAMPLING));
      const args = ['preview', '--config', config, '--prometheus', prom.url];
      const p = await cardinal([...args, '--stage.plugin', HASH_BUCKET, '--stage.plugin', SAMPLE]);
      expect(p.code, p.err).toBe(0);
      const rows = p.out.split('\n').map((l) => l.split(/\s{2,}/));
      expect(rows).toContainEqual([
        'platform/plugins',
        'stages.sample sampled_total',
        'enforce',
        'sampled_total',
        'dropped',
        String(SAMPLED_DROPPED),
        String(SAMPLED.length),
        '-',
      ]);
      const bad = await cardinal([
        'preview',
        '--config',
        configDir(policy(BUCKETS('"many"'))),
        '--prometheus',
        prom.url,
        '--stage.plugin',
        HASH_BUCKET,
      ]);
      expect(bad.code).toBe(1);
      expect(bad.err).toContain(BAD_CONFIG);
    });

    it("playground: the proxy's plugins run on the series given, and their config problems are shown", async () => {
      const prom = track(await startPrometheusReceiver({ version: 2 }));
      const proxy = track(
        await startProxy({
          upstream: prom.remoteWriteUrl,
          args: () => ['--stage.plugin', HASH_BUCKET, '--stage.plugin', SAMPLE, '--stage.plugin', THROWING],
        }),
      );
      const play = async (policies: string, extra = ''): Promise<string> => {
        const r = await fetch(`${proxy.url}/playground`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            series: USERS.map((u) => `requests_total{user="${u}"}`).join('\n') + extra,
            policies,
            tenant: '',
          }),
        });
        expect(r.status).toBe(200);
        return r.text();
      };
      const ok = await play(policy(BUCKETS(String(N))));
      expect(ok).not.toContain('id="problems"');
      for (const u of USERS) expect(ok).toContain(`requests_total{user=&quot;${bucketOf(u, N)}&quot;}`);
      const bad = await play(policy(BUCKETS('"many"')));
      expect(bad).toContain('id="problems"');
      expect(bad).toContain(`policies:1: ${BAD_CONFIG}`);
      const unknown = await play(policy('    - name: tagger\n'));
      expect(unknown).toContain(
        'no stage plugin named tagger is loaded (--stage.plugin PATH loads one); loaded: hash-bucket, sample, thrower',
      );
      // A plugin that throws: the series goes on as the stages before it left it, and the
      // playground's tries are not counted as the traffic's plugin failures.
      const thrown = await play(policy('    - name: thrower\n'), '\ncardinal_test_boom{room="lab"}');
      expect(thrown).toContain('requests_total{checked=&quot;yes&quot;,user=&quot;u0&quot;}');
      expect(thrown).toContain('cardinal_test_boom{room=&quot;lab&quot;}');
      expect(thrown).not.toContain('cardinal_test_boom{checked');
      expect(await proxy.metric('cardinal_proxy_stage_plugin_failures_total')).toBe(0);
    });
  });
});
