// Parsing and linting of Pushgateway-protocol push bodies (Prometheus text 0.0.4, OpenMetrics 1.0).
// Pure: the HTTP adapter decides the format from Content-Type and answers a push with problems
// with 400 and the `formatProblems` text.

import type { Problem } from './parse.js';

export { lintFamilies } from './lint.js';
export type { ExpositionFormat, MetricFamily, MetricType, ParseResult, Problem, Sample } from './parse.js';
export { parseExposition } from './parse.js';

/**
 * Renders problems for a response body: one `line N: message (rule)` per line, ordered by line
 * (problems on one line keep their order), each line ending in "\n". Empty for no problems.
 */
export function formatProblems(problems: readonly Problem[]): string {
  const sorted = [...problems].sort((a, b) => a.line - b.line);
  let out = '';
  for (const p of sorted) out += `line ${p.line}: ${p.message} (${p.rule})\n`;
  return out;
}
