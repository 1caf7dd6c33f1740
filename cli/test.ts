// `cardinal test`: what the policies do to given series, through the proxy's own engine.
//   cardinal test --config DIR SERIES_FILE   prints a table, one row per series;
//   cardinal test FILE.yaml...               runs fixture files in the style of `promtool test
//                                            rules` and exits 1 on any difference.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, formatProblems } from '../policy/load.js';
import type { Label } from '../proxy/codec/types.js';
import { checkConfiguration } from '../proxy/config/configuration.js';
import type { Pipeline } from '../proxy/pipeline/compile.js';
import type { StagePlugins } from '../proxy/pipeline/plugins/load.js';
import { formatSeries, parseSeries, parseSeriesFile } from '../proxy/pipeline/series.js';
import { simulate } from '../proxy/pipeline/simulate.js';
import { CommandError, type Io, parseFlags, table } from './io.js';
import { compileChecked, loadPlugins, pluginFlags, pluginUsageText } from './plugins.js';
import { describeVerdict, dropper } from './verdict.js';

export const testUsageText = `Usage: cardinal test --config PATH [--tenant T] [--stage.plugin PATH]... SERIES_FILE
       cardinal test [--stage.plugin PATH]... TESTFILE.yaml...

With --config: runs each series of SERIES_FILE (one a line, as Prometheus prints them:
metric{label="value"}, optionally followed by a value) through the policies and prints its
verdict: kept, rewritten with its final labels, dropped by which policy and rule, or over a limit.
Series are seen in order, so limits fill from the top.

With test files: runs each test of each file and exits 1 when any expectation differs.
A test file:

  config: policies/            # a file or directory of MetricPolicy and MetricUsage documents,
                               # relative to the test file
  tests:
    - name: debug metrics are dropped
      tenant: team-a           # optional: the request's tenant
      input:
        - debug_requests_total{job="api"}
        - http_requests_total{job="api",pod="p-1"}
      expect:                  # optional: per input series
        - series: debug_requests_total{job="api"}
          verdict: dropped     # kept, rewritten or dropped
          policy: team/drops   # optional: the enforcing policy that dropped it
          rule: drop[0]        # optional: its rule (or the rule's name)
        - series: http_requests_total{job="api",pod="p-1"}
          verdict: rewritten
          output: http_requests_total{job="api"}
      output:                  # optional: exactly the series forwarded, in any order
        - http_requests_total{job="api"}

Flags:
${pluginUsageText}`;

export async function test(argv: readonly string[], io: Io): Promise<number> {
  const { positionals, values } = parseFlags(argv, {
    config: { type: 'string' },
    tenant: { type: 'string' },
    ...pluginFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(testUsageText);
    return 0;
  }
  if (positionals.length === 0) throw new CommandError('test needs a series file or test files');
  if (values.config !== undefined && positionals.length !== 1)
    throw new CommandError('with --config, test takes exactly one series file');
  const plugins = await loadPlugins(values, io);
  if (values.config !== undefined)
    return seriesTable(values.config, positionals[0]!, values.tenant, plugins, io);
  let failed = 0;
  let total = 0;
  for (const file of positionals) {
    const r = runTestFile(file, plugins, io);
    failed += r.failed;
    total += r.total;
  }
  io.stdout(`${total} test${total === 1 ? '' : 's'}, ${failed} failed\n`);
  return failed > 0 ? 1 : 0;
}

function loadPipeline(path: string, plugins: StagePlugins | undefined): Pipeline {
  const c = checkConfiguration(path);
  if (c.problems.length > 0) throw new ConfigError(c.problems);
  return compileChecked(c, plugins);
}

function seriesTable(
  config: string,
  file: string,
  tenant: string | undefined,
  plugins: StagePlugins | undefined,
  io: Io,
): number {
  const pipeline = loadPipeline(config, plugins);
  const parsed = parseSeriesFile(readText(file));
  if (parsed.problems.length > 0) {
    throw new CommandError(parsed.problems.map((p) => `${file}: ${p}`).join('\n'));
  }
  const results = simulate(pipeline, parsed.series, { tenant });
  io.stdout(
    table(
      ['SERIES', 'VERDICT'],
      results.map((r) => [formatSeries(r.input as Label[]), describeVerdict(r)]),
    ),
  );
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  io.stderr(
    `${results.length} series: ${count('kept')} kept, ${count('rewritten')} rewritten, ${count('dropped')} dropped\n`,
  );
  return 0;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CommandError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

interface Expectation {
  readonly series: string;
  readonly verdict: 'kept' | 'rewritten' | 'dropped';
  readonly policy?: string;
  readonly rule?: string;
  readonly output?: string;
}

interface TestCase {
  readonly name: string;
  readonly tenant?: string;
  readonly input: readonly string[];
  readonly expect: readonly Expectation[];
  readonly output?: readonly string[];
}

/** Reads a test file, with every problem of its shape named by test and field. */
function readTestFile(file: string): { config: string; tests: TestCase[] } {
  let doc: unknown;
  try {
    doc = parseYaml(readText(file));
  } catch (err) {
    throw new CommandError(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  const problems: string[] = [];
  const obj = (doc ?? {}) as Record<string, unknown>;
  if (typeof obj.config !== 'string')
    problems.push('config: is required: the policies to test, a file or directory');
  if (!Array.isArray(obj.tests) || obj.tests.length === 0) problems.push('tests: must be a non-empty list');
  for (const key of Object.keys(obj))
    if (key !== 'config' && key !== 'tests') problems.push(`${key}: unknown field`);
  const tests: TestCase[] = [];
  for (const [i, raw] of (Array.isArray(obj.tests) ? obj.tests : []).entries()) {
    const t = (raw ?? {}) as Record<string, unknown>;
    const at = `tests[${i}]`;
    const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');
    if (typeof t.name !== 'string') problems.push(`${at}.name: is required`);
    if (!strings(t.input)) problems.push(`${at}.input: must be a list of series`);
    if (t.output !== undefined && !strings(t.output)) problems.push(`${at}.output: must be a list of series`);
    if (t.expect !== undefined && !Array.isArray(t.expect)) problems.push(`${at}.expect: must be a list`);
    for (const [j, e] of (Array.isArray(t.expect) ? t.expect : []).entries()) {
      const x = (e ?? {}) as Record<string, unknown>;
      if (typeof x.series !== 'string') problems.push(`${at}.expect[${j}].series: is required`);
      if (!['kept', 'rewritten', 'dropped'].includes(String(x.verdict))) {
        problems.push(
          `${at}.expect[${j}].verdict: must be kept, rewritten or dropped, got ${JSON.stringify(x.verdict)}`,
        );
      }
    }
    tests.push({
      name: String(t.name),
      ...(typeof t.tenant === 'string' ? { tenant: t.tenant } : {}),
      input: (t.input as string[] | undefined) ?? [],
      expect: (t.expect as Expectation[] | undefined) ?? [],
      ...(t.output === undefined ? {} : { output: t.output as string[] }),
    });
  }
  if (problems.length > 0) throw new CommandError(problems.map((p) => `${file}: ${p}`).join('\n'));
  return { config: resolve(dirname(file), obj.config as string), tests };
}

function runTestFile(
  file: string,
  plugins: StagePlugins | undefined,
  io: Io,
): { total: number; failed: number } {
  const { config, tests } = readTestFile(file);
  let pipeline: Pipeline;
  try {
    pipeline = loadPipeline(config, plugins);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new CommandError(`${file}: config ${config}:\n${formatProblems(err.problems)}`);
    throw err;
  }
  io.stdout(`${file}\n`);
  let failed = 0;
  for (const t of tests) {
    const differences = runTest(pipeline, t);
    if (differences.length === 0) {
      io.stdout(`  ok      ${t.name}\n`);
    } else {
      failed++;
      io.stdout(`  FAILED  ${t.name}\n${differences.map((d) => `          ${d}\n`).join('')}`);
    }
  }
  return { total: tests.length, failed };
}

/** The differences between what the test expects and what the engine did; empty when it passed. */
export function runTest(pipeline: Pipeline, t: TestCase): string[] {
  const differences: string[] = [];
  const series = (text: string, where: string): Label[] | undefined => {
    try {
      return parseSeries(text);
    } catch (err) {
      differences.push(`${where}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const input = t.input.map((s, i) => series(s, `input[${i}]`));
  if (input.some((s) => s === undefined)) return differences;
  const results = simulate(pipeline, input as Label[][], { tenant: t.tenant });
  const byInput = new Map(results.map((r) => [formatSeries(r.input as Label[]), r]));
  for (const [j, e] of t.expect.entries()) {
    const labels = series(e.series, `expect[${j}].series`);
    if (labels === undefined) continue;
    const key = formatSeries(labels);
    const r = byInput.get(key);
    if (r === undefined) {
      differences.push(`${key}: expected, but it is not in the input`);
      continue;
    }
    const got = describeVerdict(r);
    if (r.outcome !== e.verdict) {
      differences.push(`${key}: expected ${e.verdict}, got ${got}`);
      continue;
    }
    const h = dropper(r);
    if (e.policy !== undefined && h?.policy !== e.policy)
      differences.push(`${key}: expected policy ${e.policy}, got ${got}`);
    if (e.rule !== undefined && h?.rule !== e.rule)
      differences.push(`${key}: expected rule ${e.rule}, got ${got}`);
    if (e.output !== undefined) {
      const want = series(e.output, `expect[${j}].output`);
      if (
        want !== undefined &&
        (r.output === null || formatSeries(r.output as Label[]) !== formatSeries(want))
      ) {
        differences.push(`${key}: expected output ${formatSeries(want)}, got ${got}`);
      }
    }
  }
  if (t.output !== undefined) {
    const want = t.output
      .map((s, i) => series(s, `output[${i}]`))
      .filter((s) => s !== undefined)
      .map(formatSeries);
    const got = results.filter((r) => r.output !== null).map((r) => formatSeries(r.output as Label[]));
    const missing = want.filter((w) => !got.includes(w));
    const extra = got.filter((g) => !want.includes(g));
    for (const m of [...new Set(missing)]) differences.push(`output: expected ${m}, not forwarded`);
    for (const x of [...new Set(extra)]) differences.push(`output: forwarded ${x}, not expected`);
  }
  return differences;
}
