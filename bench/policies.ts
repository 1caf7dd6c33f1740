// The "realistic policy set" of the benchmark: what a platform team typically runs in front of a
// shared Prometheus, written as MetricPolicy documents for the proxy and, for the relabel rules
// and the series limit, as the equivalent vmagent flags and file.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MetricPolicySpecT, RelabelConfigT } from '../crds/metric-policy.js';

/**
 * Ten Prometheus relabel_configs over the benchmark workload (labels label_1..label_9). Every
 * series is rewritten (new labels are added), a handful of names change, and about one series in
 * a thousand is dropped; the keep and drop rules are there for their cost, not their effect.
 */
export const RELABEL: readonly RelabelConfigT[] = [
  // A label built from two others with regex groups.
  {
    action: 'replace',
    source_labels: ['label_1', 'label_2'],
    regex: 'value-1-([0-9]+);value-2-([0-9]+)',
    target_label: 'pair',
    replacement: '$1-$2',
  },
  // A static label, as external_labels would add.
  { action: 'replace', target_label: 'cluster', replacement: 'eu-west-1' },
  { action: 'labelmap', regex: 'label_(3|4)', replacement: 'copy_$1' },
  { action: 'labeldrop', regex: 'label_8|label_9' },
  // The workload's values are lower case already: the rule runs and changes nothing.
  { action: 'lowercase', source_labels: ['label_5'], target_label: 'label_5' },
  { action: 'hashmod', source_labels: ['label_6'], modulus: 16, target_label: 'shard' },
  // Keeps every workload series.
  { action: 'keep', source_labels: ['__name__'], regex: 'bench_.+|up|scrape_.+' },
  // Drops one value of label_7 in a thousand.
  { action: 'drop', source_labels: ['label_7'], regex: 'value-7-999' },
  // Renames one metric of fifty; the others do not match and keep their names.
  {
    action: 'replace',
    source_labels: ['__name__'],
    regex: 'bench_metric_49_total',
    target_label: '__name__',
    replacement: 'bench_metric_49_count',
  },
  // Matches no workload series: the usual "drop the runtime metrics" rule.
  { action: 'drop', source_labels: ['__name__'], regex: 'go_gc_.+|process_.+_debug' },
];

/** Labels every series carries after RELABEL, for standards.requiredLabels. */
const REQUIRED_LABELS = ['label_1', 'label_2', 'cluster'];

/** The two MetricPolicy specs: relabeling first, then standards and the per-metric limit. */
export function policySpecs(maxSeriesPerMetric: number): { name: string; spec: MetricPolicySpecT }[] {
  return [
    { name: 'platform-relabel', spec: { priority: 0, relabel: [...RELABEL] } },
    {
      name: 'platform-guardrails',
      spec: {
        priority: 10,
        standards: {
          metricNamePattern: '[a-z_:][a-z0-9_:]*',
          requiredLabels: REQUIRED_LABELS,
          maxLabels: 20,
          onViolation: 'report',
        },
        limits: { perMetric: [{ metric: '.*', maxSeries: maxSeriesPerMetric }] },
      },
    },
  ];
}

/** A policy set of one per-metric limit and nothing else, for the memory rows. */
export function limitOnlySpecs(maxSeriesPerMetric: number): { name: string; spec: MetricPolicySpecT }[] {
  return [
    {
      name: 'series-limit',
      spec: { limits: { perMetric: [{ metric: '.*', maxSeries: maxSeriesPerMetric }] } },
    },
  ];
}

/** Writes the specs as MetricPolicy YAML files into `dir`, one file per policy; returns `dir`. */
export function writePolicyDir(
  dir: string,
  specs: readonly { name: string; spec: MetricPolicySpecT }[],
): string {
  mkdirSync(dir, { recursive: true });
  for (const { name, spec } of specs) {
    const doc = { apiVersion: 'cardinal.dev/v1alpha1', kind: 'MetricPolicy', metadata: { name }, spec };
    writeFileSync(join(dir, `${name}.yaml`), stringify(doc));
  }
  return dir;
}

/** Writes RELABEL as a vmagent relabel file (the same relabel_configs YAML list); returns its path. */
export function writeVmagentRelabel(path: string): string {
  writeFileSync(path, stringify(RELABEL.map((r) => ({ ...r }))));
  return path;
}

/**
 * How vmagent 1.79 differs on the same rules: hashmod hashes with xxhash rather than Prometheus's
 * md5, so the same series land in different (equally spread) shards; -remoteWrite.maxHourlySeries
 * is one limit over all series, not one per metric; standards have no vmagent equivalent.
 */
export const VMAGENT_DIFFERENCES =
  'hashmod shards differ (xxhash, not md5); one global hourly limit, not per metric; no standards';
