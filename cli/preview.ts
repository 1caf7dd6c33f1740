// `cardinal preview --config PATH --prometheus URL`: what the policies would do to what is stored
// today, per policy, rule and metric, and who reads what would be dropped.

import { parseDuration } from '../lib/flags.js';
import { ConfigError } from '../policy/load.js';
import { checkConfiguration } from '../proxy/config/configuration.js';
import { CommandError, type Io, parseFlags, table } from './io.js';
import { compileChecked, loadPlugins, pluginFlags, pluginUsageText } from './plugins.js';
import { prometheusClient } from './prometheus.js';
import { fileReaders, type Readers, usageReaders } from './readers.js';
import { evaluateStored, type StoredReport } from './stored.js';

export const previewUsageText = `Usage: cardinal preview --config PATH --prometheus URL [flags]

Lists the series a Prometheus holds (/api/v1/series, in pages of metric names, over --range) and
runs them through the policies as the proxy would: the series each policy and rule would drop,
rewrite, cut by a limit or report, per metric, and who reads the metrics that would be dropped.

Flags:
  --config PATH        MetricPolicy and MetricUsage files, as the proxy's --config
  --prometheus URL     the Prometheus (or VictoriaMetrics) to read, e.g. http://prometheus:9090
  --range DURATION     how far back series count as stored (default 1h)
  --max-series N       series listed at most (default 200000); beyond it the counts are a lower bound
  --tenant T           evaluate as this tenant's requests
  --rules PATH         Prometheus rule files (or PrometheusRule YAML) whose expressions read metrics
  --dashboards PATH    Grafana dashboard JSON files whose queries read metrics
${pluginUsageText}`;

export const storedFlags = {
  config: { type: 'string' },
  prometheus: { type: 'string' },
  range: { type: 'string' },
  'max-series': { type: 'string' },
  tenant: { type: 'string' },
  rules: { type: 'string', multiple: true },
  dashboards: { type: 'string', multiple: true },
  ...pluginFlags,
  help: { type: 'boolean', short: 'h' },
} as const;

export interface StoredSetup {
  readonly report: StoredReport;
  readonly readers: Readers;
  readonly prometheus: string;
}

/** Reads the flags preview and retro share, loads the policies and evaluates what is stored. */
export async function setupStored(
  values: {
    [K in keyof typeof storedFlags]?: K extends 'rules' | 'dashboards' | 'stage.plugin'
      ? string[]
      : K extends 'help'
        ? boolean
        : string;
  },
  io: Io,
): Promise<StoredSetup> {
  if (values.config === undefined) throw new CommandError('--config is required');
  if (values.prometheus === undefined) throw new CommandError('--prometheus is required');
  const maxSeries = Number(values['max-series'] ?? '200000');
  if (!Number.isSafeInteger(maxSeries) || maxSeries < 1)
    throw new CommandError('--max-series must be a positive integer');
  let rangeMs: number;
  try {
    rangeMs = parseDuration('--range', values.range ?? '1h');
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
  const c = checkConfiguration(values.config);
  if (c.problems.length > 0) throw new ConfigError(c.problems);
  const pipeline = compileChecked(c, await loadPlugins(values, io));
  const readers = usageReaders([
    ...c.usage.metrics,
    ...fileReaders(values.rules ?? [], values.dashboards ?? []),
  ]);
  const client = prometheusClient(values.prometheus);
  const endMs = Date.now();
  const report = await evaluateStored({
    client,
    pipeline,
    range: { startMs: endMs - rangeMs, endMs },
    maxSeries,
    tenant: values.tenant,
    progress: (n) => io.stderr(`\rlisted ${n} series`),
  });
  io.stderr('\n');
  return { report, readers, prometheus: client.url };
}

export function summaryLine(s: StoredSetup): string {
  const r = s.report;
  return `${s.prometheus}: ${r.seriesListed} series of ${r.metricsListed} of ${r.metricNames} metrics listed${r.headSeries === undefined ? '' : ` (${r.headSeries} in the head)`}${r.truncated ? '; stopped at --max-series, so counts are at least these' : ''}\n`;
}

export async function preview(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(argv, storedFlags);
  if (values.help) {
    io.stdout(previewUsageText);
    return 0;
  }
  if (positionals.length > 0) throw new CommandError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const s = await setupStored(values, io);
  io.stdout(summaryLine(s));
  const rows = [...s.report.rows.values()].sort(
    (a, b) =>
      b.series - a.series ||
      (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0) ||
      (a.metric < b.metric ? -1 : 1),
  );
  if (rows.length === 0) {
    io.stdout('no policy would change any of these series\n');
    return 0;
  }
  io.stdout(
    table(
      ['POLICY', 'RULE', 'MODE', 'METRIC', 'EFFECT', 'SERIES', 'OF', 'READ BY'],
      rows.map((r) => {
        const readers = r.effect === 'dropped' ? s.readers.readers(r.metric) : [];
        return [
          r.policy,
          r.rule,
          r.mode,
          r.metric,
          r.effect,
          r.series,
          s.report.metrics.get(r.metric)?.listed ?? 0,
          readers.length === 0 ? '-' : readers.join(', '),
        ];
      }),
    ),
  );
  const read = rows.filter((r) => r.effect === 'dropped' && s.readers.readers(r.metric).length > 0);
  if (read.length > 0) {
    io.stdout(
      `warning: ${new Set(read.map((r) => r.metric)).size} metric(s) that would be dropped are read (READ BY)\n`,
    );
  }
  return 0;
}
