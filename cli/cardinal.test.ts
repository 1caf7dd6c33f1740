import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from './cardinal.js';

async function cardinal(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    readLine: async () => undefined,
  });
  return { code, out, err };
}

const policy = (name: string, spec: string) =>
  `apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata:\n  name: ${name}\n  namespace: team\nspec:\n${spec}`;

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'cardinal-cli-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(d, name, '..'), { recursive: true });
    writeFileSync(join(d, name), text);
  }
  return d;
}

const POLICIES = {
  'policies/drops.yaml': policy('drops', '  priority: 1\n  drop:\n    - debug_.*\n'),
  'policies/tidy.yaml': policy(
    'tidy',
    '  priority: 2\n  relabel:\n    - action: labeldrop\n      regex: pod\n  limits:\n    perMetric:\n      - name: http-cap\n        metric: http_.*\n        maxSeries: 1\n',
  ),
};

describe('cardinal check', () => {
  it('lists every problem of every file at its line and column, and exits 1', async () => {
    const d = dir({
      'a.yaml': policy('a', '  mode: dryrun\n  drop:\n    - "(debug"\n'),
      'b.yaml': 'apiVersion: [\n',
      'c.yaml': policy('c', '  limits:\n    perMetric:\n      - metric: x\n        maxSerie: 1\n'),
    });
    const r = await cardinal('check', d);
    expect(r.code).toBe(1);
    expect(r.out.split('\n').filter(Boolean)).toEqual([
      `${join(d, 'a.yaml')}:7:9: spec.mode: must be one of enforce, dryRun, got "dryrun"; did you mean "dryRun"?`,
      `${join(d, 'b.yaml')}:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]`,
      `${join(d, 'c.yaml')}:9:9: spec.limits.perMetric[0].maxSeries: is required`,
      `${join(d, 'c.yaml')}:10:9: spec.limits.perMetric[0].maxSerie: unknown field; did you mean "maxSeries"?`,
    ]);
    expect(r.err).toBe('3 files, 2 policies, 0 usage documents: 4 problems\n');
  });

  it('a clean configuration exits 0; the same policy in two paths clashes', async () => {
    const d = dir(POLICIES);
    expect(await cardinal('check', join(d, 'policies'))).toMatchObject({ code: 0, out: '' });
    const r = await cardinal('check', join(d, 'policies'), join(d, 'policies/drops.yaml'));
    expect(r.code).toBe(1);
    expect(r.out).toContain('MetricPolicy team/drops is also defined at');
  });

  it('a mistyped command or flag gets a suggestion', async () => {
    expect(await cardinal('chek')).toMatchObject({
      code: 2,
      err: expect.stringContaining('did you mean "check"?'),
    });
    expect(await cardinal('test', '--confg', 'x')).toMatchObject({
      code: 2,
      err: 'cardinal test: unknown flag --confg; did you mean --config?\n',
    });
  });
});

describe('cardinal test', () => {
  it('prints a verdict per series: kept, rewritten, dropped by which rule, over a limit', async () => {
    const d = dir({
      ...POLICIES,
      'series.txt':
        '# a comment\ndebug_x{job="a"} 1\nhttp_requests_total{job="a",pod="p1"} 3\nhttp_requests_total{job="b"}\nup{job="a"}\n',
    });
    const r = await cardinal('test', '--config', join(d, 'policies'), join(d, 'series.txt'));
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      [
        'SERIES                                 VERDICT',
        'debug_x{job="a"}                       dropped by team/drops drop[0]',
        'http_requests_total{job="a",pod="p1"}  rewritten → http_requests_total{job="a"}',
        'http_requests_total{job="b"}           over limit team/tidy http-cap',
        'up{job="a"}                            kept',
        '',
      ].join('\n'),
    );
    expect(r.err).toBe('4 series: 1 kept, 1 rewritten, 2 dropped\n');
  });

  const FIXTURE = `config: policies
tests:
  - name: debug metrics are dropped and pods are dropped from http
    input:
      - debug_x{job="a"}
      - http_requests_total{job="a",pod="p1"}
      - up
    expect:
      - series: debug_x{job="a"}
        verdict: dropped
        policy: team/drops
        rule: drop[0]
      - series: http_requests_total{job="a",pod="p1"}
        verdict: rewritten
        output: http_requests_total{job="a"}
    output:
      - http_requests_total{job="a"}
      - up
`;

  it('runs fixture files and passes when everything matches', async () => {
    const d = dir({ ...POLICIES, 'policies.test.yaml': FIXTURE });
    const r = await cardinal('test', join(d, 'policies.test.yaml'));
    expect(r).toMatchObject({ code: 0 });
    expect(r.out).toContain('  ok      debug metrics are dropped');
    expect(r.out).toContain('1 test, 0 failed');
  });

  it('names every difference and exits 1', async () => {
    const wrong = FIXTURE.replace('verdict: dropped', 'verdict: kept')
      .replace('output: http_requests_total{job="a"}', 'output: http_requests_total{job="b"}')
      .replace('      - up\n', '      - upp\n'); // the input's, not the output's
    const d = dir({ ...POLICIES, 'policies.test.yaml': wrong });
    const r = await cardinal('test', join(d, 'policies.test.yaml'));
    expect(r.code).toBe(1);
    expect(r.out).toContain('  FAILED  debug metrics are dropped');
    expect(r.out).toContain('debug_x{job="a"}: expected kept, got dropped by team/drops drop[0]');
    expect(r.out).toContain(
      'http_requests_total{job="a",pod="p1"}: expected output http_requests_total{job="b"}, got rewritten → http_requests_total{job="a"}',
    );
    expect(r.out).toContain('output: expected up, not forwarded');
    expect(r.out).toContain('output: forwarded upp, not expected');
    expect(r.out).toContain('1 test, 1 failed');
  });

  it('a malformed test file names its problems', async () => {
    const d = dir({
      't.yaml': 'tests:\n  - input: [up]\n    expect:\n      - series: up\n        verdict: gone\n',
    });
    const r = await cardinal('test', join(d, 't.yaml'));
    expect(r.code).toBe(2);
    expect(r.err).toContain('config: is required');
    expect(r.err).toContain('tests[0].name: is required');
    expect(r.err).toContain('tests[0].expect[0].verdict: must be kept, rewritten or dropped, got "gone"');
  });
});
