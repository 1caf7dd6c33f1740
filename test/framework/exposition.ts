// Just enough of the Prometheus text exposition format (version 0.0.4) for tests: writing a
// target's page and reading the plain samples of a program's own /metrics page.
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

export type Labels = Record<string, string>;

export interface ExpositionSample {
  name: string;
  labels: Labels;
  value: number;
  timestampMs?: number;
}

function escapeLabelValue(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
}

/** Formats a value as the exposition format spells it: `+Inf`, `-Inf`, `NaN` or a Go-parsable float. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

/**
 * Parses a value as Prometheus reads it in exposition text and writes it in its HTTP API. Like Go's
 * strconv.ParseFloat, which Prometheus's parser uses, the special values are case-insensitive
 * (prom-client, for one, writes `Nan`).
 */
export function parseValue(text: string): number {
  switch (text.toLowerCase()) {
    case '+inf':
    case 'inf':
    case '+infinity':
    case 'infinity':
      return Number.POSITIVE_INFINITY;
    case '-inf':
    case '-infinity':
      return Number.NEGATIVE_INFINITY;
    case 'nan':
      return Number.NaN;
    default: {
      const value = Number(text);
      if (Number.isNaN(value)) throw new Error(`not a sample value: ${JSON.stringify(text)}`);
      return value;
    }
  }
}

export function formatSample(sample: ExpositionSample): string {
  const pairs = Object.entries(sample.labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  const labels = pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
  const ts = sample.timestampMs === undefined ? '' : ` ${sample.timestampMs}`;
  return `${sample.name}${labels} ${formatValue(sample.value)}${ts}\n`;
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$/;
const labelPair = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;

function unescapeLabelValue(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses the samples of an exposition page; comments and lines it does not understand are skipped. */
export function parseExposition(text: string): ExpositionSample[] {
  const samples: ExpositionSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = sampleLine.exec(line);
    if (m === null) continue;
    const [, name = '', body = '', value = '', ts] = m;
    const labels: Labels = {};
    labelPair.lastIndex = 0;
    for (let p = labelPair.exec(body); p !== null; p = labelPair.exec(body)) {
      labels[p[1] ?? ''] = unescapeLabelValue(p[2] ?? '');
    }
    samples.push({
      name,
      labels,
      value: parseValue(value),
      ...(ts === undefined ? {} : { timestampMs: Number(ts) }),
    });
  }
  return samples;
}

/** Fetches a /metrics page and sums the samples named `name` whose labels include `labels`. */
export async function metricSum(url: string, name: string, labels: Labels = {}): Promise<number> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  let sum = 0;
  for (const s of parseExposition(await res.text())) {
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}
