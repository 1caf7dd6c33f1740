// Lints parsed metric families in the spirit of promlint (client_golang testutil/promlint): the
// same rules and, where promlint has a rule, its message text, so a problem reads the same here as
// in the tool exporters are checked with. Histogram and summary consistency checks go further than
// promlint, following the text format ("Histograms and summaries") and OpenMetrics ("Histogram",
// "Summary"). Family-wide problems are reported on the family's first line, per-sample problems on
// the sample's line.

import type { MetricFamily, Problem, Sample } from './parse.js';
import { parseNumber } from './parse.js';

/** Base units, and what the others should be expressed in (Prometheus "Metric and label naming", "Base units"). */
const UNITS: Readonly<Record<string, string>> = {
  seconds: 'seconds',
  bytes: 'bytes',
  meters: 'meters',
  metres: 'metres',
  grams: 'grams',
  joules: 'joules',
  volts: 'volts',
  amperes: 'amperes',
  celsius: 'celsius',
  kelvin: 'kelvin',
  ratio: 'ratio',
  minutes: 'seconds',
  hours: 'seconds',
  days: 'seconds',
  weeks: 'seconds',
  bits: 'bytes',
  percent: 'ratio',
  fahrenheit: 'celsius',
  kelvins: 'kelvin',
  inches: 'meters',
  feet: 'meters',
  yards: 'meters',
  miles: 'meters',
  pounds: 'grams',
  ounces: 'grams',
  calories: 'joules',
};

const UNIT_PREFIXES: readonly string[] = [
  'pico',
  'nano',
  'micro',
  'milli',
  'centi',
  'deci',
  'deca',
  'hecto',
  'kilo',
  'mega',
  'giga',
  'tera',
  'peta',
  'kibi',
  'mebi',
  'gibi',
  'tebi',
  'pebi',
];

/** Abbreviations that hide a unit; the name should spell the base unit out. */
const UNIT_ABBREVIATIONS: ReadonlySet<string> = new Set([
  's',
  'ms',
  'us',
  'ns',
  'sec',
  'b',
  'kb',
  'mb',
  'gb',
  'tb',
  'pb',
  'm',
  'h',
  'd',
]);

const TYPES_IN_NAME: readonly string[] = ['counter', 'gauge', 'histogram', 'summary'];

/** Lints every family; the result is sorted by line, problems on one line in rule order. */
export function lintFamilies(families: readonly MetricFamily[]): Problem[] {
  const problems: Problem[] = [];
  for (const family of families) {
    lintName(family, problems);
    lintHelp(family, problems);
    lintLabels(family, problems);
    lintDuplicateSeries(family, problems);
    if (family.type === 'histogram' || family.type === 'gaugehistogram') lintHistogram(family, problems);
    if (family.type === 'summary') lintSummary(family, problems);
  }
  // Array.prototype.sort is stable, so problems on one line keep the order the rules ran in.
  return problems.sort((a, b) => a.line - b.line);
}

function push(problems: Problem[], line: number, rule: string, message: string): void {
  problems.push({ line, message, rule });
}

function lintHelp(family: MetricFamily, problems: Problem[]): void {
  if (family.help === undefined) push(problems, family.line, 'help-missing', 'no help text');
}

function hasCamelCase(name: string): boolean {
  for (let i = 1; i < name.length; i++) {
    const prev = name.charCodeAt(i - 1);
    const c = name.charCodeAt(i);
    if (prev >= 97 && prev <= 122 && c >= 65 && c <= 90) return true;
  }
  return false;
}

/** The first unit found among the name's underscore-separated words, with its base unit. */
function findUnit(words: readonly string[]): { unit: string; base: string } | undefined {
  for (const word of words) {
    const base = UNITS[word];
    if (base !== undefined) return { unit: word, base };
    for (const prefix of UNIT_PREFIXES) {
      if (word.startsWith(prefix)) {
        const prefixed = UNITS[word.slice(prefix.length)];
        if (prefixed !== undefined) return { unit: word, base: prefixed };
      }
    }
  }
  return undefined;
}

function lintName(family: MetricFamily, problems: Problem[]): void {
  const { name, type, line } = family;
  const typed = type !== 'untyped' && type !== 'unknown';
  const isCounter = type === 'counter';

  // An OpenMetrics counter "foo" exposes "foo_total"; a text-format counter is named "foo_total".
  const counterValueName = family.samples.some((s) => s.name === `${name}_total`) ? `${name}_total` : name;
  if (isCounter && !counterValueName.endsWith('_total')) {
    push(problems, line, 'counter-total-suffix', 'counter metrics should have "_total" suffix');
  }
  if (typed && !isCounter && name.endsWith('_total')) {
    push(problems, line, 'non-counter-total-suffix', 'non-counter metrics should not have "_total" suffix');
  }

  const isHistogram = type === 'histogram' || type === 'gaugehistogram';
  const isSummary = type === 'summary';
  if (typed && !isHistogram && name.endsWith('_bucket')) {
    push(problems, line, 'reserved-suffix', 'non-histogram metrics should not have "_bucket" suffix');
  }
  if (typed && !isHistogram && !isSummary && name.endsWith('_count')) {
    push(
      problems,
      line,
      'reserved-suffix',
      'non-histogram and non-summary metrics should not have "_count" suffix',
    );
  }
  if (typed && !isHistogram && !isSummary && name.endsWith('_sum')) {
    push(
      problems,
      line,
      'reserved-suffix',
      'non-histogram and non-summary metrics should not have "_sum" suffix',
    );
  }

  if (hasCamelCase(name)) {
    push(
      problems,
      line,
      'camel-case-metric',
      "metric names should be written in 'snake_case' not 'camelCase'",
    );
  }
  if (name.includes(':')) {
    push(problems, line, 'reserved-chars', "metric names should not contain ':'");
  }

  const words = name.toLowerCase().split('_');
  const rest = words.slice(1);
  for (const t of TYPES_IN_NAME) {
    if (rest.includes(t)) push(problems, line, 'type-in-name', `metric name should not include type '${t}'`);
  }
  const unit = findUnit(words);
  if (unit !== undefined && unit.unit !== unit.base) {
    push(problems, line, 'base-unit', `use base unit "${unit.base}" instead of "${unit.unit}"`);
  }
  if (rest.some((w) => UNIT_ABBREVIATIONS.has(w))) {
    push(problems, line, 'unit-abbreviation', 'metric names should not contain abbreviated units');
  }
  // OpenMetrics "Unit": a non-empty unit must be a suffix of the family name, after an underscore.
  if (family.unit !== undefined && family.unit !== '' && !name.endsWith(`_${family.unit}`)) {
    push(problems, line, 'unit-suffix', `metric name should end with its unit "_${family.unit}"`);
  }
}

function lintLabels(family: MetricFamily, problems: Problem[]): void {
  const isHistogram = family.type === 'histogram' || family.type === 'gaugehistogram';
  const isSummary = family.type === 'summary';
  const typed = family.type !== 'untyped' && family.type !== 'unknown';
  // One problem per label name and rule, on the first sample that shows it.
  const reported = new Set<string>();
  for (const sample of family.samples) {
    for (const [label] of sample.labels) {
      if (hasCamelCase(label) && !reported.has(`camel:${label}`)) {
        reported.add(`camel:${label}`);
        push(
          problems,
          sample.line,
          'camel-case-label',
          "label names should be written in 'snake_case' not 'camelCase'",
        );
      }
      if (typed && label === 'le' && !isHistogram && !reported.has('le')) {
        reported.add('le');
        push(problems, sample.line, 'reserved-label', 'non-histogram metrics should not have "le" label');
      }
      if (typed && label === 'quantile' && !isSummary && !reported.has('quantile')) {
        reported.add('quantile');
        push(problems, sample.line, 'reserved-label', 'non-summary metrics should not have "quantile" label');
      }
    }
  }
}

/** A label set as a key, independent of label order; `skip` leaves one label out. */
function labelKey(labels: readonly [string, string][], skip?: string): string {
  const kept = skip === undefined ? [...labels] : labels.filter(([n]) => n !== skip);
  kept.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return JSON.stringify(kept);
}

function lintDuplicateSeries(family: MetricFamily, problems: Problem[]): void {
  const seen = new Map<string, number>();
  for (const sample of family.samples) {
    const key = `${sample.name}\u0000${labelKey(sample.labels)}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, sample.line);
    } else {
      push(
        problems,
        sample.line,
        'duplicate-series',
        `duplicate series: same name and labels as line ${first}`,
      );
    }
  }
}

function labelValue(sample: Sample, name: string): string | undefined {
  for (const [n, v] of sample.labels) if (n === name) return v;
  return undefined;
}

interface Bucket {
  le: number;
  leText: string;
  sample: Sample;
}

interface HistogramSeries {
  line: number;
  buckets: Bucket[];
  count?: Sample;
  sum?: Sample;
}

function lintHistogram(family: MetricFamily, problems: Problem[]): void {
  const gauge = family.type === 'gaugehistogram';
  const bucketName = `${family.name}_bucket`;
  const countName = `${family.name}${gauge ? '_gcount' : '_count'}`;
  const sumName = `${family.name}${gauge ? '_gsum' : '_sum'}`;
  const series = new Map<string, HistogramSeries>();
  const seriesOf = (sample: Sample): HistogramSeries => {
    const key = labelKey(sample.labels, 'le');
    let s = series.get(key);
    if (s === undefined) {
      s = { line: sample.line, buckets: [] };
      series.set(key, s);
    }
    return s;
  };

  for (const sample of family.samples) {
    if (sample.name === bucketName) {
      const leText = labelValue(sample, 'le');
      if (leText === undefined) {
        push(problems, sample.line, 'histogram-le-missing', 'histogram bucket has no "le" label');
        continue;
      }
      const le = parseNumber(leText, 'text');
      if (le === undefined || Number.isNaN(le)) {
        push(
          problems,
          sample.line,
          'histogram-le-invalid',
          `histogram bucket has invalid "le" value ${JSON.stringify(leText)}`,
        );
        continue;
      }
      seriesOf(sample).buckets.push({ le, leText, sample });
    } else if (sample.name === countName) {
      seriesOf(sample).count = sample;
    } else if (sample.name === sumName) {
      seriesOf(sample).sum = sample;
    }
  }

  const countSuffix = gauge ? '_gcount' : '_count';
  const sumSuffix = gauge ? '_gsum' : '_sum';
  for (const s of series.values()) {
    const buckets = [...s.buckets].sort((a, b) => a.le - b.le);
    for (let i = 1; i < buckets.length; i++) {
      const prev = buckets[i - 1]!;
      const cur = buckets[i]!;
      if (cur.sample.value < prev.sample.value) {
        push(
          problems,
          cur.sample.line,
          'histogram-not-cumulative',
          `histogram buckets must be cumulative: le="${cur.leText}" has ${cur.sample.value}, less than le="${prev.leText}" with ${prev.sample.value}`,
        );
      }
    }
    const inf = buckets.find((b) => b.le === Number.POSITIVE_INFINITY);
    if (inf === undefined) {
      push(problems, s.line, 'histogram-inf-missing', 'histogram has no "+Inf" bucket');
    }
    if (s.count === undefined) {
      push(problems, s.line, 'histogram-count-missing', `histogram has no "${countSuffix}" sample`);
    } else if (inf !== undefined && !Object.is(inf.sample.value, s.count.value)) {
      push(
        problems,
        s.count.line,
        'histogram-inf-count-mismatch',
        `"+Inf" bucket (${inf.sample.value}) does not equal "${countSuffix}" (${s.count.value})`,
      );
    }
    if (s.sum === undefined) {
      push(problems, s.line, 'histogram-sum-missing', `histogram has no "${sumSuffix}" sample`);
    }
  }
}

function lintSummary(family: MetricFamily, problems: Problem[]): void {
  for (const sample of family.samples) {
    if (sample.name !== family.name) continue;
    const text = labelValue(sample, 'quantile');
    if (text === undefined) {
      push(problems, sample.line, 'summary-quantile-missing', 'summary sample has no "quantile" label');
      continue;
    }
    const q = parseNumber(text, 'text');
    if (q === undefined) {
      push(
        problems,
        sample.line,
        'summary-quantile-invalid',
        `quantile ${JSON.stringify(text)} is not a number`,
      );
    } else if (!(q >= 0 && q <= 1)) {
      push(
        problems,
        sample.line,
        'summary-quantile-range',
        `quantile ${JSON.stringify(text)} is not between 0 and 1`,
      );
    }
  }
}
