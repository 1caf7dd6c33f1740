// Renders pushed series in the Prometheus text exposition format 0.0.4 ("Text format details"),
// the one format every Pushgateway parses with its types intact: the Pushgateway reads any
// non-protobuf body with the text-format parser, so an OpenMetrics body forwarded as it is would
// lose its counter types (`# TYPE x counter` followed by `x_total` is an untyped `x_total` there).

import type { ExpositionFormat, MetricFamily, MetricType } from '../exposition/index.js';

/** The text-format family a sample name belongs to, with that family's type and help. */
export interface TextFamily {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly help: string | undefined;
}

/** One series to render: its sample name, its labels (no `__name__`) and its value. */
export interface RenderSeries {
  readonly name: string;
  readonly labels: readonly (readonly [string, string])[];
  readonly value: number;
}

/**
 * Maps each sample name of the parsed families to the text-format family it is rendered in.
 * OpenMetrics types the text format lacks become gauges of their own (`_created`, `info`,
 * `stateset`, `gaugehistogram`), `unknown` becomes `untyped`, and a counter family `x` is the
 * text family `x_total`, as Prometheus's own OpenMetrics-to-text conversion names it.
 */
export function textFamilies(
  families: readonly MetricFamily[],
  format: ExpositionFormat,
): Map<string, TextFamily> {
  const out = new Map<string, TextFamily>();
  const put = (sample: string, family: TextFamily) => {
    if (!out.has(sample)) out.set(sample, family);
  };
  for (const f of families) {
    if (format === 'text') {
      const family: TextFamily = { name: f.name, type: textType(f.type), help: f.help };
      for (const s of f.samples) put(s.name, family);
      put(f.name, family);
      continue;
    }
    const gaugeOf = (name: string, help?: string): TextFamily => ({ name, type: 'gauge', help });
    switch (f.type) {
      case 'counter': {
        const main: TextFamily = { name: `${f.name}_total`, type: 'counter', help: f.help };
        put(main.name, main);
        put(`${f.name}_created`, gaugeOf(`${f.name}_created`));
        break;
      }
      case 'histogram':
      case 'summary': {
        const main: TextFamily = { name: f.name, type: f.type, help: f.help };
        for (const suffix of ['', '_bucket', '_count', '_sum']) put(`${f.name}${suffix}`, main);
        put(`${f.name}_created`, gaugeOf(`${f.name}_created`));
        break;
      }
      case 'info':
        put(`${f.name}_info`, gaugeOf(`${f.name}_info`, f.help));
        break;
      case 'gaugehistogram':
        for (const suffix of ['_bucket', '_gcount', '_gsum']) {
          put(`${f.name}${suffix}`, gaugeOf(`${f.name}${suffix}`, suffix === '_bucket' ? f.help : undefined));
        }
        break;
      default: {
        const main: TextFamily = { name: f.name, type: textType(f.type), help: f.help };
        put(f.name, main);
      }
    }
  }
  return out;
}

function textType(t: MetricType): TextFamily['type'] {
  switch (t) {
    case 'counter':
    case 'gauge':
    case 'histogram':
    case 'summary':
    case 'untyped':
      return t;
    case 'unknown':
      return 'untyped';
    default:
      return 'gauge';
  }
}

/**
 * Renders series grouped into their families (each family's samples contiguous, as the text
 * format requires), families in the order their first series appears. A sample name with no
 * family (a policy renamed it) becomes an untyped family of its own. Labels named in `omit` are
 * left out: the Pushgateway sets the grouping key's labels on every series itself.
 */
export function renderText(
  series: readonly RenderSeries[],
  families: ReadonlyMap<string, TextFamily>,
  omit: ReadonlySet<string>,
): string {
  const groups = new Map<string, { family: TextFamily; lines: string[] }>();
  for (const s of series) {
    const family = families.get(s.name) ?? { name: s.name, type: 'untyped', help: undefined };
    let group = groups.get(family.name);
    if (group === undefined) {
      group = { family, lines: [] };
      groups.set(family.name, group);
    }
    let line = s.name;
    let first = true;
    for (const [name, value] of s.labels) {
      if (omit.has(name)) continue;
      line += `${first ? '{' : ','}${name}="${escapeLabelValue(value)}"`;
      first = false;
    }
    if (!first) line += '}';
    group.lines.push(`${line} ${formatValue(s.value)}\n`);
  }
  let out = '';
  for (const { family, lines } of groups.values()) {
    if (family.help !== undefined) out += `# HELP ${family.name} ${escapeHelp(family.help)}\n`;
    out += `# TYPE ${family.name} ${family.type}\n`;
    for (const line of lines) out += line;
  }
  return out;
}

/** Go's ParseFloat reads all of these; the text format names `+Inf`, `-Inf` and `NaN`. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}
