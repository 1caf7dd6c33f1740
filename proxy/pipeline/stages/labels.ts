// Small label helpers the stages share.

import type { Label } from '../../codec/types.js';

/** The value of label `name`, or '' (Prometheus' meaning of an absent label). */
export function labelValue(labels: readonly Label[], name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}

export function metricName(labels: readonly Label[]): string {
  return labelValue(labels, '__name__');
}
