// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${name}` is Go template syntax here.
// The differential proof of policy/relabel.ts: a real Prometheus agent scrapes a target
// with many generated metric_relabel_configs lists, one scrape job per list, and remote-writes the
// result to a capture receiver in this process. The same series, with the `job` and `instance`
// labels the scrape adds, go through `relabel()`; the label sets must be exactly the same. Prometheus
// 2.42 (Debian) runs against the prometheus2 dialect and Prometheus 3 against prometheus3.
//
// Every list ends with a rule that writes the list's number into `cardinal_case`, so each captured
// series names the list that made it; series without it (up, scrape_*) are the scrape's own.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { RelabelConfigT } from '../../crds/metric-policy.js';
import { RELABEL_ACTIONS } from '../../crds/metric-policy.js';
import {
  compileRelabel,
  isLegacyLabelName,
  isUtf8LabelName,
  type Label,
  type RelabelDialect,
  relabel,
} from '../../policy/relabel.js';
import { decodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyDecode } from '../../proxy/codec/snappy.js';
import {
  binaryPath,
  type Closable,
  eventually,
  type Labels,
  startPrometheusAgent,
  startTarget,
  type TargetSeries,
  useCleanup,
} from '../framework/index.js';

const CASES = 64;
const SEED = 0x5eed_2a42;
const CASE_LABEL = 'cardinal_case';

// ---------------------------------------------------------------------------------------------
// Seeded generation

type Rng = () => number;

/** mulberry32: small, fast and good enough to pick test inputs reproducibly. */
function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(r: Rng, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

function some<T>(r: Rng, items: readonly T[], min: number, max: number): T[] {
  const n = min + Math.floor(r() * (max - min + 1));
  return Array.from({ length: n }, () => pick(r, items));
}

const METRIC_NAMES = [
  'http_requests_total',
  'node_cpu_seconds',
  'Mixed_Case_Metric',
  'app:ratio:rate5m',
  'a',
  'queue_depth',
  'process_open_fds',
];

// Values that test escaping, separators, case mapping beyond ASCII (Go maps code point by code
// point with the simple case mapping), newlines (`.` differs between Prometheus 2 and 3) and groups.
const VALUES = [
  'prod',
  'PROD-eu',
  'staging',
  'dev_1',
  'MiXeD',
  'with space',
  'semi;colon',
  'quote"back\\slash',
  'line\nbreak',
  'straße',
  'İstanbul',
  'ΣΊΣΥΦΟΣ',
  'ﬀ',
  'ᾳ',
  '日本語',
  '🚀rocket',
  'x',
  '42',
  '/api/v1/users',
  // Values that are label names, for targets like `${1}`.
  'region',
  'pod',
];

const LABEL_NAMES = [
  'env',
  'region',
  'path',
  'code',
  'pod',
  'label_team',
  'label_app',
  'copy_a',
  'copy_b',
  'empty',
];

function generateSeries(r: Rng, count: number): TargetSeries[] {
  const seen = new Set<string>();
  const series: TargetSeries[] = [];
  while (series.length < count) {
    const labels: Labels = {};
    for (const name of some(r, LABEL_NAMES, 0, 5)) labels[name] = pick(r, VALUES);
    if (r() < 0.3) labels.empty = '';
    if (r() < 0.4) labels.copy_b = labels.copy_a ?? pick(r, VALUES);
    const name = pick(r, METRIC_NAMES);
    const key = JSON.stringify([name, Object.entries(labels).sort()]);
    if (seen.has(key)) continue;
    seen.add(key);
    series.push({ name, labels, value: series.length });
  }
  return series;
}

const SOURCES = [
  '__name__',
  'job',
  'instance',
  'env',
  'region',
  'path',
  'pod',
  'copy_a',
  'copy_b',
  'nope',
  'empty',
];
const SEPARATORS = [';', '', '-', '::'];
const REGEXES = [
  '(.*)',
  '(\\w+)_(\\w+)',
  '(?P<first>[a-z]+)(?P<rest>.*)',
  'prod|staging',
  '(.+);(.+)',
  '([^;]*);.*',
  '(?i)prod.*',
  '(.)(.)?.*',
  '.*\\n.*',
  'line.break',
  '(.*ß.*)',
  '',
  '[[:upper:]].*',
  '\\p{Greek}+',
  '(.*)_total',
  '(?s:.*)break',
  '(\\d+)',
];
const KEEP_REGEXES = [
  '.*',
  '(.*)',
  '.+',
  'prod|staging|',
  '(?i)prod.*|x|42|',
  '[[:upper:]].*|',
  '.*[^\\x00-\\x7f].*',
];
const TARGETS = ['env', 'new_label', 'region', '${1}', 'dyn_$1', '$first', 'x_${2}', 'pod'];
const REPLACEMENTS = [
  '$1',
  '${1}_suffix',
  '$1_suffix',
  '$2-$1',
  '$$literal',
  '',
  'fixed',
  '${first}',
  '$0',
  '$10',
  'a$',
  'ü$1',
  '${rest}|${first}',
  '$9',
];
const MODULI = [1, 2, 7, 16, 1000, 2 ** 32 + 15, Number.MAX_SAFE_INTEGER];
const LABELMAP_REGEXES = ['label_(.+)', '(e)(nv)', '(c)opy_(.*)', '(.*)', 'reg(ion)'];
const LABELMAP_REPLACEMENTS = ['$1', 'copied_$1', '${1}_$2', '$2$1', 'mapped'];
const LABELDROP_REGEXES = ['label_.*', 'empty|pod', '(?i)ENV', '[a-c].*', 'nope', 'copy_.'];
const LABELKEEP_REGEXES = [
  '__name__|job|instance|env|label_.*',
  '__name__|instance|[p-r].*',
  '(__name__|job|instance|copy_a|copy_b|empty)',
];

const ACTIONS = RELABEL_ACTIONS;

function generateRule(r: Rng, action: (typeof ACTIONS)[number]): RelabelConfigT {
  const sources = () => some(r, SOURCES, 1, 3);
  const separator = (): Partial<RelabelConfigT> => (r() < 0.5 ? {} : { separator: pick(r, SEPARATORS) });
  switch (action) {
    case 'replace': {
      const rule: RelabelConfigT = { source_labels: sources(), ...separator() };
      if (r() < 0.8) rule.regex = pick(r, REGEXES);
      rule.target_label = pick(r, TARGETS);
      if (r() < 0.8) rule.replacement = pick(r, REPLACEMENTS);
      if (r() < 0.5) rule.action = 'replace';
      // Renaming the metric with a safe template keeps the scrape valid.
      if (r() < 0.1)
        return {
          source_labels: ['__name__'],
          regex: '(\\w+)',
          target_label: '__name__',
          replacement: 'renamed_$1',
        };
      return rule;
    }
    case 'keep':
      // A keep with a selective regex empties the list, so a keep usually looks at one label.
      return {
        action,
        source_labels: r() < 0.7 ? [pick(r, SOURCES)] : sources(),
        ...separator(),
        regex: pick(r, r() < 0.6 ? KEEP_REGEXES : REGEXES),
      };
    case 'drop':
      return { action, source_labels: sources(), ...separator(), regex: pick(r, REGEXES) };
    case 'keepequal':
    case 'dropequal':
      return {
        action,
        source_labels: [pick(r, ['copy_a', 'env', 'nope'])],
        target_label: pick(r, ['copy_b', 'env', 'nope']),
      };
    case 'hashmod':
      return {
        action,
        source_labels: sources(),
        ...separator(),
        modulus: pick(r, MODULI),
        target_label: pick(r, ['shard', 'env']),
      };
    case 'labelmap': {
      const rule: RelabelConfigT = { action, regex: pick(r, LABELMAP_REGEXES) };
      if (r() < 0.7) rule.replacement = pick(r, LABELMAP_REPLACEMENTS);
      return rule;
    }
    case 'labeldrop':
      return { action, regex: pick(r, LABELDROP_REGEXES) };
    case 'labelkeep':
      return { action, regex: pick(r, LABELKEEP_REGEXES) };
    case 'lowercase':
    case 'uppercase':
      return {
        action,
        source_labels: sources(),
        ...separator(),
        target_label: pick(r, ['case', 'env', 'path']),
      };
  }
}

/** List k leads with action k (so every action is covered), then 0..4 rules of any action. */
function generateCase(r: Rng, k: number): RelabelConfigT[] {
  const rules = [generateRule(r, ACTIONS[k % ACTIONS.length]!)];
  for (const action of some(r, ACTIONS, 0, 4)) rules.push(generateRule(r, action));
  // After a hashmod, sometimes keep one shard, as sharding setups do.
  if (rules.some((rule) => rule.action === 'hashmod' && rule.target_label === 'shard') && r() < 0.5) {
    rules.push({ action: 'keep', source_labels: ['shard'], regex: '[0-3]' });
  }
  return rules;
}

/**
 * Lists aimed at the details where Prometheus 2 and 3 differ, which random lists rarely reach:
 * a replace with a templated target and an empty result (2 deletes the unexpanded name, 3 the
 * expanded one), and a labelmap whose targets collide after an earlier rule added a label (3 visits
 * added labels after the others, 2 visits all in name order).
 */
const FIXED_CASES: RelabelConfigT[][] = [
  [{ source_labels: ['region'], target_label: '${1}', replacement: '$9' }],
  [{ source_labels: ['region'], regex: '(p)(od)', target_label: '$1$2', replacement: '${2}' }],
  [
    { target_label: 'aaa', replacement: 'added' },
    { action: 'labelmap', regex: 'aaa|env|pod', replacement: 'mapped' },
  ],
];

/** Series the fixed lists need: a value that names another label of the series. */
const FIXED_SERIES: TargetSeries[] = [
  { name: 'quirk_metric', labels: { region: 'pod', pod: 'p1', env: 'prod' }, value: 1 },
  { name: 'quirk_metric', labels: { region: 'env', env: 'dev' }, value: 2 },
];

function withCaseLabel(rules: RelabelConfigT[], k: number): RelabelConfigT[] {
  return [...rules, { target_label: CASE_LABEL, replacement: String(k) }];
}

// ---------------------------------------------------------------------------------------------
// The capture receiver

interface Capture extends Closable {
  readonly url: string;
  /** Every label set received so far, keyed by `key()`. */
  readonly seen: Map<string, Label[]>;
  readonly errors: string[];
}

function key(labels: readonly Label[]): string {
  return JSON.stringify(labels.map((l) => [l.name, l.value]));
}

async function startCapture(): Promise<Capture> {
  const seen = new Map<string, Label[]>();
  const errors: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const request = decodeWriteRequestV1(snappyDecode(Buffer.concat(chunks), 64 << 20));
        for (const ts of request.timeseries) seen.set(key(ts.labels), ts.labels);
        res.writeHead(204).end();
      } catch (err) {
        errors.push(String(err));
        res.writeHead(400).end(String(err));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/v1/write`,
    seen,
    errors,
    dirs: [],
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The model: what Prometheus's scrape does around metric_relabel_configs

function sortedLabels(record: Record<string, string>): Label[] {
  return Object.entries(record)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The label sets one job sends. A relabeled series without `__name__`, or with a name its
 * Prometheus version does not accept, fails the whole scrape, so the job then sends none.
 */
function expectedForJob(
  dialect: RelabelDialect,
  rules: RelabelConfigT[],
  series: TargetSeries[],
  job: string,
  instance: string,
): Map<string, Label[]> {
  const program = compileRelabel(rules, { dialect });
  const validName = dialect === 'prometheus2' ? isLegacyLabelName : isUtf8LabelName;
  const validMetric = (name: string) =>
    dialect === 'prometheus2' ? /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name) : isUtf8LabelName(name);
  const out = new Map<string, Label[]>();
  for (const s of series) {
    const input = sortedLabels({ ...s.labels, __name__: s.name, job, instance });
    const result = relabel(program, input);
    if (result === null) continue;
    const name = result.find((l) => l.name === '__name__');
    if (name === undefined || !validMetric(name.value) || !result.every((l) => validName(l.name))) {
      return new Map();
    }
    out.set(key(result), result);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

const runs: { version: 2 | 3; dialect: RelabelDialect }[] = [
  { version: 2, dialect: 'prometheus2' },
  { version: 3, dialect: 'prometheus3' },
];

function available(version: 2 | 3): boolean {
  try {
    binaryPath(version === 2 ? 'prometheus2' : 'prometheus3');
    return true;
  } catch {
    return false;
  }
}

describe.each(runs)('relabel() against Prometheus $version', ({ version, dialect }) => {
  const track = useCleanup('all');

  it.skipIf(!available(version))(
    `matches metric_relabel_configs exactly: ${CASES} generated lists and ${FIXED_CASES.length} fixed ones over the same series`,
    async () => {
      const r = rng(SEED);
      const series = [...FIXED_SERIES, ...generateSeries(r, 60)];
      const cases = [...FIXED_CASES, ...Array.from({ length: CASES }, (_, k) => generateCase(r, k))];
      // Every generated list must be valid for both programs, so both runs use the same lists.
      for (const rules of cases) {
        compileRelabel(rules, { dialect: 'prometheus2' });
        compileRelabel(rules, { dialect: 'prometheus3' });
      }
      const capture = track(await startCapture());
      const target = track(await startTarget({ series }));
      const jobs = cases.map((rules, k) => ({
        job_name: `relabel-${k}`,
        honor_timestamps: true,
        static_configs: [{ targets: [target.address] }],
        metric_relabel_configs: withCaseLabel(rules, k),
      }));
      track(
        await startPrometheusAgent({
          version,
          remoteWriteUrl: capture.url,
          scrapeTargets: [target.address],
          extraScrapeConfig: jobs,
        }),
      );

      const expected = cases.map((rules, k) =>
        expectedForJob(dialect, withCaseLabel(rules, k), series, `relabel-${k}`, target.address),
      );
      const actualFor = (k: number): string[] =>
        [...capture.seen.keys()].filter((s) => s.includes(`["${CASE_LABEL}","${k}"]`)).sort();

      await eventually(
        () => {
          expect(capture.errors).toEqual([]);
          for (let k = 0; k < cases.length; k++) {
            const want = [...expected[k]!.keys()].sort();
            expect({ case: k, rules: cases[k], labelSets: actualFor(k) }).toEqual({
              case: k,
              rules: cases[k],
              labelSets: want,
            });
          }
        },
        { timeoutMs: 40_000, intervalMs: 500 },
      );
      // Let a few more scrapes arrive: nothing unexpected may show up later either.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      for (let k = 0; k < cases.length; k++) expect(actualFor(k)).toEqual([...expected[k]!.keys()].sort());

      const total = expected.reduce((n, m) => n + m.size, 0);
      const dropped = expected.filter((m) => m.size === 0).length;
      console.warn(
        `Prometheus ${version}: ${cases.length} lists x ${series.length} series; ${total} label sets matched; ${dropped} lists sent none`,
      );
    },
  );
});
