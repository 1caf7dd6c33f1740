// The expressions a usage source holds: the rules of a PrometheusRule and the queries of a Grafana
// dashboard. Pure: an object in, a list of (where, expression) out, with the problems found on the
// way. One bad panel or rule is a problem of its own; the rest of the source still counts.

import { VARIABLE_PLACEHOLDER } from '../../policy/promql.js';

/** One expression and where it came from, for reports: `group/rule` or `panel "title"`. */
export interface SourceExpr {
  readonly where: string;
  readonly expr: string;
  /** A recording rule's output metric: the rule makes it, so it is in use while the rule is. */
  readonly record?: string;
}

export interface SourceExprs {
  readonly exprs: readonly SourceExpr[];
  readonly problems: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// PrometheusRule (monitoring.coreos.com/v1): spec.groups[].rules[] with expr and record or alert.

export function ruleExpressions(spec: unknown): SourceExprs {
  const exprs: SourceExpr[] = [];
  const problems: string[] = [];
  const groups = (spec as { groups?: unknown } | null)?.groups;
  if (!Array.isArray(groups)) return { exprs, problems: ['spec.groups is not a list'] };
  groups.forEach((g, gi) => {
    const group = g as { name?: unknown; rules?: unknown } | null;
    const gname = typeof group?.name === 'string' ? group.name : `groups[${gi}]`;
    if (!Array.isArray(group?.rules)) return;
    group.rules.forEach((r, ri) => {
      const rule = r as { expr?: unknown; record?: unknown; alert?: unknown } | null;
      const name =
        typeof rule?.record === 'string'
          ? rule.record
          : typeof rule?.alert === 'string'
            ? rule.alert
            : `rules[${ri}]`;
      const where = `${gname}/${name}`;
      // expr is an IntOrString in the CRD; a number is a valid (label-less) expression.
      const expr = typeof rule?.expr === 'number' ? String(rule.expr) : rule?.expr;
      if (typeof expr !== 'string') {
        problems.push(`${where}: expr is missing`);
        return;
      }
      exprs.push(typeof rule?.record === 'string' ? { where, expr, record: rule.record } : { where, expr });
    });
  });
  return { exprs, problems };
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboards, as kube-prometheus-stack provisions them: JSON in a ConfigMap's data.

interface Panel {
  title?: unknown;
  id?: unknown;
  targets?: unknown;
  panels?: unknown;
  libraryPanel?: unknown;
  datasource?: unknown;
}

/**
 * The data source type a panel or target names, when it names one (`{type, uid}`); a plain string
 * (the old schema's data source name) or a missing one says nothing.
 */
function datasourceType(ds: unknown): string | undefined {
  const type = (ds as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : undefined;
}

/**
 * Whether a query is PromQL: Loki's LogQL, for one, also lives in `expr` and would read as a
 * selector of every metric. Grafana's `datasource` and `mixed` types defer to the target.
 */
function isPrometheus(type: string | undefined): boolean {
  return type === undefined || type === 'prometheus' || type === 'datasource' || type === 'mixed';
}

/**
 * The queries of a dashboard: every panel's `targets[].expr`, including panels inside rows (old
 * schema `rows[].panels`, and collapsed rows' `panels[].panels`), and the templating variables'
 * queries (`label_values(metric, label)`, `query_result(expr)`, or a plain expression). Template
 * variables are replaced before parsing (see substituteVariables). A library panel reference has
 * no queries of its own here; it is skipped.
 */
export function dashboardExpressions(dashboard: unknown): SourceExprs {
  const exprs: SourceExpr[] = [];
  const problems: string[] = [];
  if (dashboard === null || typeof dashboard !== 'object' || Array.isArray(dashboard)) {
    return { exprs, problems: ['not a dashboard object'] };
  }
  const d = dashboard as { panels?: unknown; rows?: unknown; templating?: unknown };
  const vars = templateVariables(d.templating);
  const sub = (s: string) => substituteVariables(s, vars);

  const visit = (panels: unknown, path: string): void => {
    if (!Array.isArray(panels)) return;
    panels.forEach((raw, i) => {
      const p = (raw ?? {}) as Panel;
      const title = typeof p.title === 'string' && p.title !== '' ? p.title : `${path}[${i}]`;
      const where = `panel ${JSON.stringify(title)}`;
      const panelType = datasourceType(p.datasource);
      if (Array.isArray(p.targets)) {
        p.targets.forEach((t, ti) => {
          const target = t as { expr?: unknown; datasource?: unknown } | null;
          const expr = target?.expr;
          if (!isPrometheus(datasourceType(target?.datasource) ?? panelType)) return;
          if (typeof expr === 'string' && expr.trim() !== '') {
            exprs.push({ where: `${where} target ${refOf(t, ti)}`, expr: sub(expr) });
          }
        });
      }
      visit(p.panels, `${path}[${i}].panels`);
    });
  };
  visit(d.panels, 'panels');
  if (Array.isArray(d.rows)) {
    d.rows.forEach((row, i) => {
      visit((row as { panels?: unknown } | null)?.panels, `rows[${i}].panels`);
    });
  }
  for (const v of vars.queries) {
    const expr = variableQueryExpr(v.query);
    if (expr === undefined) continue;
    exprs.push({ where: `variable ${JSON.stringify(v.name)}`, expr: sub(expr) });
  }
  return { exprs, problems };
}

function refOf(target: unknown, index: number): string {
  const ref = (target as { refId?: unknown } | null)?.refId;
  return typeof ref === 'string' ? ref : String(index);
}

interface Variables {
  /** Values to put in place of a variable: interval variables' first option, constants, numbers. */
  readonly values: ReadonlyMap<string, string>;
  /** Query variables: their queries are expressions too. */
  readonly queries: readonly { readonly name: string; readonly query: string }[];
}

function templateVariables(templating: unknown): Variables {
  const values = new Map<string, string>();
  const queries: { name: string; query: string }[] = [];
  const list = (templating as { list?: unknown } | null)?.list;
  if (!Array.isArray(list)) return { values, queries };
  for (const raw of list) {
    const v = (raw ?? {}) as { name?: unknown; type?: unknown; query?: unknown; datasource?: unknown };
    if (typeof v.name !== 'string') continue;
    if (v.type === 'query' && !isPrometheus(datasourceType(v.datasource))) continue;
    // A query variable's query is a string or, in newer schemas, {query: "..."}.
    const query =
      typeof v.query === 'string'
        ? v.query
        : typeof (v.query as { query?: unknown } | null)?.query === 'string'
          ? ((v.query as { query: string }).query as string)
          : undefined;
    if (query === undefined) continue;
    const first = query.split(',')[0]?.trim() ?? '';
    if (v.type === 'query') queries.push({ name: v.name, query });
    else if (v.type === 'interval' && /^\d+(ms|s|m|h|d|w|y)$/.test(first)) values.set(v.name, first);
    else if ((v.type === 'custom' || v.type === 'constant') && /^\d+(\.\d+)?$/.test(first))
      values.set(v.name, first);
  }
  return { values, queries };
}

/**
 * A variable query's PromQL: label_values(expr, label) reads expr (label_values(label) alone reads
 * every metric's label, which is not a use of any metric), query_result(expr) reads expr;
 * label_names() and metrics(regex) read no samples. Anything else is taken as an expression.
 */
export function variableQueryExpr(query: string): string | undefined {
  const q = query.trim();
  const call = /^(label_values|query_result|label_names|metrics)\s*\(([\s\S]*)\)\s*$/.exec(q);
  if (call === null) return q === '' ? undefined : q;
  const [, fn, args = ''] = call;
  if (fn === 'query_result') return args;
  if (fn === 'label_values') {
    const comma = args.lastIndexOf(',');
    return comma < 0 ? undefined : args.slice(0, comma).trim();
  }
  return undefined;
}

const RANGE_VARS = ['__rate_interval', '__interval', '__range', '__auto_interval'];
const NUMBER_VARS = ['__interval_ms', '__range_s', '__range_ms'];

/**
 * Replaces Grafana template variables ($var, ${var}, ${var:format}, [[var]]) so the expression
 * parses: the built-in intervals become `5m`, the built-in numbers `300`, a variable with a known
 * value (interval, numeric custom or constant) that value, and any other variable
 * VARIABLE_PLACEHOLDER, which the extraction reads as "could be anything": in a metric name any
 * metric, in a grouping any label. A variable used as a range or offset becomes `5m` whatever it
 * is, since a duration is all that fits there.
 */
export function substituteVariables(
  expr: string,
  vars: Pick<Variables, 'values'> = { values: new Map() },
): string {
  const replaced = expr.replace(
    /\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\[\[([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\]\]|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_m, a?: string, b?: string, c?: string) => {
      const name = a ?? b ?? c ?? '';
      if (RANGE_VARS.includes(name)) return '5m';
      if (NUMBER_VARS.includes(name)) return '300';
      return vars.values.get(name) ?? VARIABLE_PLACEHOLDER;
    },
  );
  // Inside [..] and after offset only a duration parses.
  const p = VARIABLE_PLACEHOLDER;
  return replaced
    .replace(new RegExp(`\\[\\s*${p}\\s*(:\\s*(${p})?\\s*)?\\]`, 'g'), (_m, colon?: string) =>
      colon === undefined ? '[5m]' : '[5m:]',
    )
    .replace(new RegExp(`\\[([^\\]:]*):\\s*${p}\\s*\\]`, 'g'), '[$1:1m]')
    .replace(new RegExp(`offset\\s+${p}`, 'g'), 'offset 5m');
}
