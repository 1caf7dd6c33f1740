// Series written by people, in the notation Prometheus prints and promtool's test files use:
// `http_requests_total{job="api",code="200"}`. Read with the selector parser, so quoting and
// escaping are PromQL's.

import { parseSelector } from '../../policy/selector.js';
import type { Label } from '../codec/types.js';

/**
 * Parses one series: a metric name with optional `{label="value",...}`, or `{__name__="x",...}`.
 * Only `=` is allowed, each label once; empty values are left out, as Prometheus does. Returns the
 * labels sorted by name, as remote-write requires. Throws an Error saying what is wrong.
 */
export function parseSeries(text: string): Label[] {
  const selector = parseSelector(text.trim());
  const labels: Label[] = [];
  const seen = new Set<string>();
  for (const m of selector.matchers) {
    if (m.type !== '=') throw new Error(`${text.trim()}: a series has only = between a label and its value`);
    if (seen.has(m.name)) throw new Error(`${text.trim()}: label ${m.name} is given twice`);
    seen.add(m.name);
    if (m.value !== '') labels.push({ name: m.name, value: m.value });
  }
  if (!seen.has('__name__')) throw new Error(`${text.trim()}: a series needs a metric name`);
  return labels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A label set in series notation, `name{a="1",b="2"}`, with PromQL's escaping. */
export function formatSeries(labels: readonly Label[]): string {
  const name = labels.find((l) => l.name === '__name__')?.value ?? '';
  const rest = labels.filter((l) => l.name !== '__name__');
  const body = rest.map((l) => `${l.name}=${JSON.stringify(l.value)}`).join(',');
  return rest.length === 0 && name !== '' ? name : `${name}{${body}}`;
}

/**
 * The series of a text file, one a line: series notation, optionally followed by a sample value
 * (so exposition-format lines work too); blank lines and `#` comments are skipped. Problems name
 * their line.
 */
export function parseSeriesFile(text: string): { series: Label[][]; problems: string[] } {
  const series: Label[][] = [];
  const problems: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const close = line.lastIndexOf('}');
    const head = close >= 0 ? line.slice(0, close + 1) : (line.split(/\s+/)[0] ?? '');
    try {
      series.push(parseSeries(head));
    } catch (err) {
      problems.push(`line ${i + 1}: ${(err as Error).message}`);
    }
  }
  return { series, problems };
}
