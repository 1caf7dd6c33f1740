// `cardinal retro --config PATH --prometheus URL [--apply]`: applies the policies' drops to the
// data already stored. The series an enforcing drop rule (drop, relabel, standards, unused; never
// a limit) would drop are deleted with Prometheus' admin API: delete_series, then
// clean_tombstones (https://prometheus.io/docs/prometheus/latest/querying/api/#tsdb-admin-apis).
// A dry run by default; --apply asks for the exact number of series before deleting. Metrics the
// usage sources say are read are refused and kept.

import type { Label } from '../proxy/codec/types.js';
import { CommandError, type Io, parseFlags, table } from './io.js';
import { setupStored, storedFlags, summaryLine } from './preview.js';
import { type PrometheusClient, prometheusClient, type TimeRange } from './prometheus.js';
import type { MetricState } from './stored.js';

export const retroUsageText = `Usage: cardinal retro --config PATH --prometheus URL [--apply] [flags]

Deletes from the store the series the policies drop (drop, relabel, standards and unused rules of
enforcing policies; limits never delete anything). Without --apply it only lists them. With
--apply it asks for the exact number of series to delete, deletes them with the admin API
(Prometheus must run with --web.enable-admin-api), then cleans the tombstones so the space is
freed. Metrics that rules or dashboards read (MetricUsage in --config, --rules, --dashboards) are
refused and kept.

Flags: those of cardinal preview, and
  --apply              delete, after confirmation
  --flavor F           prometheus (default) or victoriametrics (no clean_tombstones step)
`;

/** Selectors per delete_series call: bounded so the form stays well under servers' limits. */
const SELECTORS_PER_CALL = 100;

export async function retro(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    ...storedFlags,
    apply: { type: 'boolean' },
    flavor: { type: 'string' },
  });
  if (values.help) {
    io.stdout(retroUsageText);
    return 0;
  }
  if (positionals.length > 0) throw new CommandError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const flavor = values.flavor ?? 'prometheus';
  if (flavor !== 'prometheus' && flavor !== 'victoriametrics') {
    throw new CommandError(`--flavor: "${flavor}" must be "prometheus" or "victoriametrics"`);
  }
  const s = await setupStored(values, io);
  io.stdout(summaryLine(s));
  if (s.report.truncated) {
    throw new CommandError(
      'more series are stored than --max-series listed; retro deletes only what it has seen entirely: raise --max-series',
    );
  }
  const targets: { metric: string; state: MetricState }[] = [];
  const refused: { metric: string; series: number; readers: readonly string[] }[] = [];
  const client = prometheusClient(s.prometheus);
  for (const [metric, listed] of [...s.report.metrics].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (listed.dropped.length === 0) continue;
    const state = await withSamples(client, metric, listed, s.report.range);
    if (state.dropped.length === 0) continue;
    const readers = s.readers.readers(metric);
    if (readers.length > 0) refused.push({ metric, series: state.dropped.length, readers });
    else targets.push({ metric, state });
  }
  for (const r of refused) {
    io.stdout(
      `refused: ${r.metric}: ${r.series} series would be dropped, but it is read by ${r.readers.join(', ')}\n`,
    );
  }
  const total = targets.reduce((n, t) => n + t.state.dropped.length, 0);
  if (total === 0) {
    io.stdout('nothing to delete\n');
    return 0;
  }
  io.stdout(
    table(
      ['METRIC', 'SERIES', 'OF', 'DROPPED BY'],
      targets.map((t) => [
        t.metric,
        t.state.dropped.length,
        t.state.listed,
        [...t.state.droppedBy].join(', '),
      ]),
    ),
  );
  const metrics = `${targets.length} metric${targets.length === 1 ? '' : 's'}`;
  if (!values.apply) {
    io.stdout(
      `dry run: ${total} series of ${metrics} would be deleted; run again with --apply to delete them\n`,
    );
    return 0;
  }
  const answer = await io.readLine(
    `Delete ${total} series of ${metrics} from ${s.prometheus}? Type ${total} to confirm: `,
  );
  if (answer?.trim() !== String(total)) {
    io.stdout('not confirmed; nothing was deleted\n');
    return 1;
  }
  const selectors = targets.flatMap((t) => deleteSelectors(t.metric, t.state));
  for (let i = 0; i < selectors.length; i += SELECTORS_PER_CALL) {
    await client.deleteSeries(selectors.slice(i, i + SELECTORS_PER_CALL));
  }
  if (flavor === 'prometheus') await client.cleanTombstones();
  io.stdout(
    `deleted ${total} series of ${metrics}${flavor === 'prometheus' ? '; tombstones cleaned' : ''}\n`,
  );
  return 0;
}

/**
 * The metric's dropped series that still have samples in the range. Prometheus lists a deleted
 * series in /api/v1/series until its head is compacted (up to two hours later), so a second run
 * would find "deleted" series again; a query sees only series with data.
 */
async function withSamples(
  client: PrometheusClient,
  metric: string,
  state: MetricState,
  range: TimeRange,
): Promise<MetricState> {
  const seconds = Math.max(1, Math.ceil((range.endMs - range.startMs) / 1000));
  const alive = await client.query(`last_over_time({__name__=${JSON.stringify(metric)}}[${seconds}s])`);
  // _over_time functions drop the metric name (in some versions): compare the other labels.
  const key = (labels: Iterable<[string, string]>) =>
    JSON.stringify([...labels].filter(([n]) => n !== '__name__').sort(([a], [b]) => (a < b ? -1 : 1)));
  const keys = new Set(alive.map((a) => key(Object.entries(a.labels))));
  const dropped = state.dropped.filter((labels) => keys.has(key(labels.map((l) => [l.name, l.value]))));
  return { ...state, dropped };
}

/**
 * Selectors that match exactly the series to delete of one metric: the metric name alone when
 * every listed series of it goes; otherwise each series with all its labels, and `label=""` for
 * every other label name seen on the metric, so that no series with more labels is caught too.
 */
export function deleteSelectors(metric: string, state: MetricState): string[] {
  if (state.dropped.length === state.listed) return [`{__name__=${JSON.stringify(metric)}}`];
  return state.dropped.map((labels: Label[]) => {
    const own = new Set(labels.map((l) => l.name));
    const matchers = labels.map((l) => `${l.name}=${JSON.stringify(l.value)}`);
    for (const name of [...state.labelNames].sort()) if (!own.has(name)) matchers.push(`${name}=""`);
    return `{${matchers.join(',')}}`;
  });
}
