// Overflow (limits onExceed: overflow): a series over a limit is forwarded as one series per metric
// (and rule) whose limited label has the value OVERFLOW_VALUE, with the replica label; the series
// that collapse onto it within a request are summed per timestamp by the output builder.

import { encodeLabelsV1 } from '../../../codec/output.js';
import { hashBytes } from '../../cardinality.js';
import type { CompiledPolicy } from '../../compile.js';
import type { Entry, SeriesContext } from '../../entry.js';

export const OVERFLOW_VALUE = '__cardinality_overflow__';

const SEED_A = 0x9747b28c;

/** The overflow variant of `entry` for rule `ruleKey` of `policy`: computed once, kept on the entry. */
export function overflowVariant(
  ctx: SeriesContext,
  entry: Entry,
  policy: CompiledPolicy,
  label: string,
  ruleKey: number,
): Entry {
  const key = policy.index * 4096 + ruleKey;
  entry.overflow ??= new Map();
  const known = entry.overflow.get(key);
  if (known !== undefined) return known;
  const labels = ctx.withReplica(
    entry.labels!.map((l) => (l.name === label ? { name: l.name, value: OVERFLOW_VALUE } : l)),
  );
  const encoded = encodeLabelsV1(labels);
  const variant: Entry = {
    ...entry,
    changed: true,
    labels,
    encoded,
    hash: hashBytes(encoded, 0, encoded.length, SEED_A),
    overflow: undefined,
    aggregated: true,
    mode: 'sum',
    oooSlot: policy.outOfOrderSlot,
  };
  entry.overflow.set(key, variant);
  return variant;
}
