// How a simulated series is told to a person: one short phrase per outcome.

import type { Label } from '../proxy/codec/types.js';
import { formatSeries } from '../proxy/pipeline/series.js';
import type { Hit, SeriesResult } from '../proxy/pipeline/simulate.js';

const LIMIT_REASONS = new Set(['series_limit', 'label_values_limit', 'tenant_series_limit']);

/** The enforced rule that dropped the series, or undefined. */
export function dropper(r: SeriesResult): Hit | undefined {
  if (r.outcome !== 'dropped') return undefined;
  return r.hits.find((h) => h.mode === 'enforce' && h.action === 'dropped');
}

export function isLimit(h: Hit): boolean {
  return LIMIT_REASONS.has(h.reason);
}

/** `kept`, `rewritten → up{...}`, `dropped by team/p drop[0]`, `over limit team/p cap`, plus dry-run notes. */
export function describeVerdict(r: SeriesResult): string {
  let text: string;
  if (r.outcome === 'dropped') {
    const h = dropper(r);
    text = h === undefined ? 'dropped' : `${isLimit(h) ? 'over limit' : 'dropped by'} ${h.policy} ${h.rule}`;
  } else if (r.outcome === 'rewritten') {
    text = `rewritten → ${formatSeries(r.output as Label[])}`;
  } else {
    text = 'kept';
  }
  const dry = r.hits.filter((h) => h.mode === 'dryRun');
  if (dry.length > 0) {
    text += ` (dry run: ${dry.map((h) => `${h.policy} ${h.rule} would have ${h.action} it`).join('; ')})`;
  }
  const reported = r.hits.filter((h) => h.mode === 'enforce' && h.action === 'reported');
  if (reported.length > 0) text += ` (reported: ${reported.map((h) => `${h.policy} ${h.rule}`).join('; ')})`;
  return text;
}
