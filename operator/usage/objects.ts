// Usage sources from the Kubernetes objects that hold them: PrometheusRules and the ConfigMaps that
// provision Grafana dashboards (kube-prometheus-stack's sidecar convention: a `grafana_dashboard`
// label, one dashboard JSON per data key). Pure; the watches are in watch.ts.

import type { LiveConfigMap } from '../controller/reconcile.js';
import { dashboardExpressions, ruleExpressions } from './sources.js';
import type { UsageSource } from './usage.js';

/** A monitoring.coreos.com/v1 PrometheusRule, the fields read. */
export interface PrometheusRuleObject {
  metadata: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: unknown;
}

export function ruleSource(rule: PrometheusRuleObject): UsageSource {
  return {
    id: `PrometheusRule ${rule.metadata.namespace ?? ''}/${rule.metadata.name ?? ''}`,
    exprs: ruleExpressions(rule.spec),
  };
}

/** One source per dashboard: each `*.json` key of the ConfigMap. */
export function dashboardSources(configMap: LiveConfigMap): UsageSource[] {
  const base = `Dashboard ${configMap.metadata.namespace ?? ''}/${configMap.metadata.name ?? ''}`;
  const out: UsageSource[] = [];
  for (const [key, text] of Object.entries(configMap.data ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!key.endsWith('.json')) continue;
    const id = `${base}/${key}`;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      out.push({ id, exprs: { exprs: [], problems: [`not JSON: ${(err as Error).message}`] } });
      continue;
    }
    out.push({ id, exprs: dashboardExpressions(json) });
  }
  return out;
}
