// The stateless part of the pipeline: what the policies' match, relabel, drop and standards stages
// do to one label set. Pure, and a function of (labels, tenant) only, so the engine caches its
// result per label set and the steady state never runs a regex for a series it has seen.

import type { Label } from '../codec/types.js';
import type { CompiledPolicy, CompiledStandards, Pipeline, Reason } from './compile.js';
import { relabel } from './relabel.js';
import { matchesLabels } from './selector.js';
import { AGGREGATED_VALUE, isUnused, unusedLabels } from './unused.js';

export interface Verdict {
  /** The labels after every enforcing policy; null when an enforcing policy dropped the series. */
  readonly labels: Label[] | null;
  /** Whether `labels` differ from the input. */
  readonly changed: boolean;
  /** Counter slots to bump by the series' samples every time it is seen (drops, rewrites, reports). */
  readonly slots: readonly number[];
  /** The policies whose limits apply to the series, in order (indices into pipeline.policies). */
  readonly limitPolicies: readonly number[];
  /** The policies whose unused stage found the metric unread, reported or dropped. */
  readonly unused: readonly number[];
  /**
   * True when spec.unused.labels aggregate replaced unread labels' values: several series may
   * collapse onto these labels, so their samples must be summed per timestamp.
   */
  readonly aggregated: boolean;
  /** Labels (with their original values) a policy's spec.unused.labels found unread, for statistics. */
  readonly unread: readonly { readonly policy: number; readonly name: string; readonly value: string }[];
}

function get(labels: readonly Label[], name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}

/** Whether policy `p` applies to a series: its tenants and its selector. */
export function policyMatches(
  p: CompiledPolicy,
  labels: readonly Label[],
  tenant: string | undefined,
): boolean {
  if (p.tenants !== undefined && (tenant === undefined || !p.tenants.has(tenant))) return false;
  return p.matchers === undefined || matchesLabels(p.matchers, (name) => get(labels, name));
}

/** The first standards rule a label set violates, or undefined. */
export function standardsViolation(s: CompiledStandards, labels: readonly Label[]): Reason | undefined {
  const name = get(labels, '__name__');
  if (s.metricName !== undefined && !s.metricName.matches(name)) return 'metric_name';
  if (labels.length > s.maxLabels) return 'max_labels';
  for (const l of labels) {
    if (l.name !== '__name__' && s.labelName !== undefined && !s.labelName.matches(l.name))
      return 'label_name';
    if (s.forbidden.has(l.name)) return 'forbidden_label';
    if (Buffer.byteLength(l.name) > s.maxNameLength) return 'label_name_length';
    if (Buffer.byteLength(l.value) > s.maxValueLength) return 'label_value_length';
  }
  for (const r of s.required) if (get(labels, r) === '') return 'required_label';
  return undefined;
}

/**
 * Runs every policy's stateless stages on `input` (sorted by name, as remote-write requires).
 * A dryRun policy's verdict is counted but does not change what the next policy sees. `nowMs`
 * decides which unused exemptions are still live; the verdict holds until the next one expires.
 */
export function evaluate(
  pipeline: Pipeline,
  input: readonly Label[],
  tenant: string | undefined,
  nowMs: number = Date.now(),
): Verdict {
  let labels: Label[] = input as Label[];
  let changed = false;
  const slots: number[] = [];
  const limitPolicies: number[] = [];
  const unused: number[] = [];
  let aggregated = false;
  const unread: { policy: number; name: string; value: string }[] = [];
  for (const p of pipeline.policies) {
    if (!policyMatches(p, labels, tenant)) continue;
    let out: Label[] | null = labels;
    let dropSlot = -1;
    if (p.relabel !== undefined) {
      out = relabel(p.relabel, labels);
      if (out === null) dropSlot = p.relabelDropSlot;
      else if (!sameLabels(out, labels)) slots.push(p.relabelRewriteSlot);
    }
    if (out !== null) {
      const name = get(out, '__name__');
      for (const d of p.drop) {
        if (d.re.matches(name)) {
          dropSlot = d.slot;
          break;
        }
      }
    }
    if (
      out !== null &&
      dropSlot < 0 &&
      p.unused !== undefined &&
      isUnused(p.unused, get(out, '__name__'), nowMs)
    ) {
      unused.push(p.index);
      if (p.unused.drop) dropSlot = p.unused.slot;
      else slots.push(p.unused.slot);
    } else if (out !== null && dropSlot < 0 && p.unused?.labels !== undefined) {
      const names = unusedLabels(p.unused, get(out, '__name__'), out);
      if (names.length > 0) {
        slots.push(p.unused.labelSlot);
        for (const l of out)
          if (names.includes(l.name)) unread.push({ policy: p.index, name: l.name, value: l.value });
        if (p.unused.labels === 'aggregate' && !p.dryRun) {
          out = out.map((l) => (names.includes(l.name) ? { name: l.name, value: AGGREGATED_VALUE } : l));
          aggregated = true;
        }
      }
    }
    if (out !== null && dropSlot < 0 && p.standards !== undefined) {
      const violation = standardsViolation(p.standards, out);
      if (violation !== undefined) {
        const slot = p.standardsSlots[violation]!;
        if (p.standards.drop) dropSlot = slot;
        else slots.push(slot);
      }
    }
    if (dropSlot >= 0) {
      slots.push(dropSlot);
      if (!p.dryRun)
        return { labels: null, changed: true, slots, limitPolicies, unused, aggregated: false, unread };
      continue;
    }
    if (p.limits !== undefined) limitPolicies.push(p.index);
    if (!p.dryRun && out !== labels && out !== null) {
      labels = out;
      changed = changed || !sameLabels(out, input);
    }
  }
  return { labels, changed, slots, limitPolicies, unused, aggregated: aggregated && changed, unread };
}

function sameLabels(a: readonly Label[], b: readonly Label[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (a[i]!.name !== b[i]!.name || a[i]!.value !== b[i]!.value) return false;
  return true;
}
