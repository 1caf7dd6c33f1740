// Who reads a metric: the usage sources, as the proxy and the operator know them. Today these are
// the MetricUsage documents in --config (what the operator renders from PrometheusRules and Grafana
// dashboards) and rule or dashboard files given on the command line, parsed by the operator's own
// extraction. Read-path usage (queries seen by the proxy) plugs in as another Readers.

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { MetricUseT } from '../crds/metric-policy.js';
import { dashboardExpressions, ruleExpressions } from '../operator/usage/sources.js';
import { computeUsage, type UsageSource, usageSpec } from '../operator/usage/usage.js';
import { listConfigFiles } from '../policy/load.js';
import { type AnchoredRegex, compileAnchored } from '../policy/regex.js';
import { CommandError } from './io.js';

/** The readers of a metric, for reports; empty when nothing known reads it. */
export interface Readers {
  readers(metric: string): readonly string[];
}

/** Readers from MetricUsage entries: by exact name, or by pattern. */
export function usageReaders(metrics: readonly MetricUseT[]): Readers {
  const byName = new Map<string, string[]>();
  const patterns: { re: AnchoredRegex; sources: readonly string[] }[] = [];
  for (const m of metrics) {
    const sources = m.sources.length > 0 ? m.sources : ['a MetricUsage document'];
    if (m.name !== undefined) byName.set(m.name, [...(byName.get(m.name) ?? []), ...sources]);
    else if (m.pattern !== undefined) patterns.push({ re: compileAnchored(m.pattern), sources });
  }
  return {
    readers(metric) {
      const out = [...(byName.get(metric) ?? [])];
      for (const p of patterns) if (p.re.matches(metric)) out.push(...p.sources);
      return [...new Set(out)];
    },
  };
}

/**
 * Usage from files: Prometheus rule files or PrometheusRule objects (`groups[].rules[].expr`), and
 * Grafana dashboard JSON files (or ConfigMaps holding them are not read here: give the JSON).
 */
export function fileReaders(rules: readonly string[], dashboards: readonly string[]): MetricUseT[] {
  const sources: UsageSource[] = [];
  const problems: string[] = [];
  for (const path of rules) {
    for (const file of listConfigFiles(path, 'rules')) {
      const doc = parseFile(file) as { spec?: unknown; groups?: unknown } | null;
      const exprs = ruleExpressions(doc?.groups !== undefined ? doc : doc?.spec);
      problems.push(...exprs.problems.map((p) => `${file}: ${p}`));
      sources.push({ id: `rules ${file}`, exprs });
    }
  }
  for (const path of dashboards) {
    for (const file of listConfigFiles(path, 'dashboards')) {
      const exprs = dashboardExpressions(parseFile(file));
      problems.push(...exprs.problems.map((p) => `${file}: ${p}`));
      sources.push({ id: `dashboard ${file}`, exprs });
    }
  }
  if (problems.length > 0) throw new CommandError(problems.join('\n'));
  return usageSpec(computeUsage(sources)).metrics;
}

function parseFile(file: string): unknown {
  try {
    return parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CommandError(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
}
