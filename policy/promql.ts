// What one PromQL expression reads: the metrics it selects and, per metric, the labels its result
// depends on. Parsed with the Prometheus project's own grammar (@prometheus-io/lezer-promql), so
// what Prometheus accepts is what is understood here.
//
// The label analysis walks the tree top-down carrying what the consumer of each node needs of its
// labels (a `Need`). The top of a rule or a panel needs every label: an alert's labels, a recorded
// series' labels and a panel's legend are all of them. Each operator narrows or widens that need as
// its semantics say (Prometheus docs, "Operators" and "Functions"): `sum by (a)` needs only `a` of
// its input, `sum without (a)` every label but `a`, a vector binary operation without `on` matches
// on every label, `label_replace` reads its source label. Whatever a selector's matchers name is
// needed as well. The analysis errs towards needing more: a label is only a candidate for removal
// when no reading of any expression can depend on it.

import type { SyntaxNode } from '@lezer/common';
import { parser } from '@prometheus-io/lezer-promql';

/**
 * The labels an expression needs of a metric: `some` of them, or `all` but those in `except`.
 * `except` holds only labels that are provably aggregated away (`without`).
 */
export type Need =
  | { readonly all: false; readonly labels: ReadonlySet<string> }
  | { readonly all: true; readonly except: ReadonlySet<string> };

export const ALL: Need = Object.freeze({ all: true, except: new Set<string>() });
const NONE: Need = Object.freeze({ all: false, labels: new Set<string>() });

export function some(labels: Iterable<string>): Need {
  return { all: false, labels: new Set(labels) };
}

export function allExcept(labels: Iterable<string>): Need {
  return { all: true, except: new Set(labels) };
}

/** What both needs need. */
export function union(a: Need, b: Need): Need {
  if (!a.all && !b.all) return some([...a.labels, ...b.labels]);
  if (a.all && b.all) return allExcept([...a.except].filter((l) => b.except.has(l)));
  const [all, s] = a.all ? [a, b as Need & { all: false }] : [b as Need & { all: true }, a];
  return allExcept([...(all as Need & { all: true }).except].filter((l) => !s.labels.has(l)));
}

/**
 * One metric an expression selects. `name` is exact; `pattern` is an RE2 regular expression,
 * anchored, that every metric it could select matches (from a regex matcher on `__name__`, a
 * template variable in a name, or a selector with no name at all, which is `.*`).
 */
export interface MetricRef {
  readonly name?: string;
  readonly pattern?: string;
  readonly need: Need;
}

export interface Extraction {
  readonly metrics: readonly MetricRef[];
}

export class PromQLError extends Error {
  override name = 'PromQLError';
}

/** Stands for a dashboard template variable that is not a duration; see dashboard.ts. */
export const VARIABLE_PLACEHOLDER = '__cardinal_var__';

/**
 * Parses `expr` and returns what it reads. Throws PromQLError, naming the column and the text
 * where parsing failed, on an expression Prometheus would not parse.
 */
export function extract(expr: string): Extraction {
  if (expr.trim() === '') throw new PromQLError('empty expression');
  const tree = parser.parse(expr);
  let error: { from: number; to: number } | undefined;
  tree.iterate({
    enter: (n) => {
      if (error !== undefined) return false;
      if (n.type.isError) {
        error = { from: n.from, to: n.to };
        return false;
      }
      return undefined;
    },
  });
  if (error !== undefined) {
    const at = error.from;
    const near = expr.slice(at, Math.max(error.to, at + 1)).slice(0, 40);
    throw new PromQLError(
      near === ''
        ? `unexpected end of expression at column ${at + 1}`
        : `unexpected ${JSON.stringify(near)} at column ${at + 1}`,
    );
  }
  const metrics: MetricRef[] = [];
  const ctx = { text: expr, out: metrics };
  const top = tree.topNode.firstChild;
  if (top === null) throw new PromQLError('empty expression');
  walk(ctx, top, ALL);
  return { metrics };
}

interface Ctx {
  readonly text: string;
  readonly out: MetricRef[];
}

/** The expression children of a node: everything but keywords, modifiers, literals and names. */
function exprChildren(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = node.firstChild; c !== null; c = c.nextSibling) if (EXPR.has(c.name)) out.push(c);
  return out;
}

const EXPR = new Set([
  'AggregateExpr',
  'BinaryExpr',
  'FunctionCall',
  'MatrixSelector',
  'OffsetExpr',
  'AnchoredExpr',
  'SmoothedExpr',
  'ParenExpr',
  'SubqueryExpr',
  'UnaryExpr',
  'VectorSelector',
  'StepInvariantExpr',
  'NumberDurationLiteral',
  'StringLiteral',
]);

/** Aggregations whose result keeps each input series' labels (they select, not combine). */
const SELECTING = new Set(['topk', 'bottomk', 'limitk', 'limit_ratio']);

/** Functions whose result has no labels, or labels independent of the input's. */
const LABELLESS = new Set(['scalar', 'absent', 'absent_over_time', 'vector', 'time', 'pi']);

function walk(ctx: Ctx, node: SyntaxNode, need: Need): void {
  switch (node.name) {
    case 'VectorSelector':
      selector(ctx, node, need);
      return;
    case 'AggregateExpr':
      aggregate(ctx, node, need);
      return;
    case 'BinaryExpr':
      binary(ctx, node, need);
      return;
    case 'FunctionCall':
      call(ctx, node, need);
      return;
    case 'NumberDurationLiteral':
    case 'StringLiteral':
      return;
    default:
      // Paren, unary minus, matrix, subquery, offset, @, anchored, smoothed: labels pass through.
      for (const c of exprChildren(node)) walk(ctx, c, need);
  }
}

function selector(ctx: Ctx, node: SyntaxNode, need: Need): void {
  let name: string | undefined;
  let pattern: string | undefined;
  const matched: string[] = [];
  const id = node.getChild('Identifier');
  if (id !== null) name = ctx.text.slice(id.from, id.to);
  const matchers = node.getChild('LabelMatchers');
  for (let m = matchers?.firstChild ?? null; m !== null; m = m.nextSibling) {
    if (m.name === 'QuotedLabelName') {
      // {"my.metric"}: a quoted name alone is the metric name (Prometheus 3 UTF-8 names).
      name = unquote(ctx.text, m.getChild('StringLiteral') ?? m);
      continue;
    }
    if (m.name !== 'UnquotedLabelMatcher' && m.name !== 'QuotedLabelMatcher') continue;
    const labelNode = m.getChild('LabelName') ?? m.getChild('QuotedLabelName');
    const op = m.getChild('MatchOp')?.firstChild?.name;
    const value = m.getChild('StringLiteral');
    if (labelNode === null || value === null) continue;
    const label =
      labelNode.name === 'QuotedLabelName'
        ? unquote(ctx.text, labelNode.getChild('StringLiteral') ?? labelNode)
        : ctx.text.slice(labelNode.from, labelNode.to);
    const v = unquote(ctx.text, value);
    if (label !== '__name__') {
      matched.push(label);
      continue;
    }
    if (op === 'EqlSingle') name = v;
    else if (op === 'EqlRegex' && name === undefined) pattern = v;
    // A negative matcher on the name (!= or !~) leaves every other metric possible.
    else if (name === undefined) pattern = '.*';
  }
  const full = union(need, some(matched));
  if (name?.includes(VARIABLE_PLACEHOLDER)) {
    pattern = variablePattern(name);
    name = undefined;
  } else if (pattern?.includes(VARIABLE_PLACEHOLDER)) {
    pattern = pattern.split(VARIABLE_PLACEHOLDER).join('.*');
  }
  if (name !== undefined) ctx.out.push({ name, need: full });
  else ctx.out.push({ pattern: pattern ?? '.*', need: full });
}

/** A name with variables in it: literal parts escaped, each variable any text. */
function variablePattern(name: string): string {
  return name
    .split(VARIABLE_PLACEHOLDER)
    .map((part) => part.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&'))
    .join('.*');
}

function groupingLabels(ctx: Ctx, node: SyntaxNode | null): string[] {
  const out: string[] = [];
  for (let c = node?.firstChild ?? null; c !== null; c = c.nextSibling) {
    if (c.name === 'LabelName') out.push(ctx.text.slice(c.from, c.to));
    else if (c.name === 'QuotedLabelName') out.push(unquote(ctx.text, c.getChild('StringLiteral') ?? c));
  }
  return out;
}

/** A need naming a template variable could name any label. */
function labelsNeed(labels: readonly string[]): Need {
  return labels.some((l) => l.includes(VARIABLE_PLACEHOLDER)) ? ALL : some(labels);
}

function aggregate(ctx: Ctx, node: SyntaxNode, need: Need): void {
  const op = ctx.text.slice(node.getChild('AggregateOp')!.from, node.getChild('AggregateOp')!.to);
  const modifier = node.getChild('AggregateModifier');
  const labels = groupingLabels(ctx, modifier?.getChild('GroupingLabels') ?? null);
  const without = modifier !== null && modifier.getChild('Without') !== null;
  let inner: Need;
  if (modifier === null) inner = NONE;
  else if (without) inner = labels.some((l) => l.includes(VARIABLE_PLACEHOLDER)) ? ALL : allExcept(labels);
  else inner = labelsNeed(labels);
  // topk and friends return input series with all their labels: the consumer's need reaches them.
  if (SELECTING.has(op)) inner = union(inner, need);
  const args = exprChildren(node.getChild('FunctionCallBody')!);
  // The parameter (topk's k, quantile's φ, count_values' label) comes first; the vector last.
  const vector = args[args.length - 1];
  for (const a of args.slice(0, -1)) walk(ctx, a, NONE);
  if (vector !== undefined) walk(ctx, vector, inner);
}

/** Whether a node's value is a scalar: number literals and arithmetic on them, scalar(), time(). */
function isScalar(ctx: Ctx, node: SyntaxNode): boolean {
  switch (node.name) {
    case 'NumberDurationLiteral':
      return true;
    case 'ParenExpr':
    case 'UnaryExpr':
    case 'StepInvariantExpr': {
      const c = exprChildren(node);
      return c.length === 1 && isScalar(ctx, c[0]!);
    }
    case 'BinaryExpr': {
      const c = exprChildren(node);
      return c.length === 2 && isScalar(ctx, c[0]!) && isScalar(ctx, c[1]!);
    }
    case 'FunctionCall': {
      const fn = functionName(ctx, node);
      return fn === 'scalar' || fn === 'time' || fn === 'pi';
    }
    default:
      return false;
  }
}

const SET_OPS = new Set(['And', 'Or', 'Unless']);

function binary(ctx: Ctx, node: SyntaxNode, need: Need): void {
  const [lhs, rhs] = exprChildren(node);
  if (lhs === undefined || rhs === undefined) return;
  const leftScalar = isScalar(ctx, lhs);
  const rightScalar = isScalar(ctx, rhs);
  if (leftScalar || rightScalar) {
    // Scalar-vector: the vector's series pass through with their labels.
    walk(ctx, lhs, leftScalar ? NONE : need);
    walk(ctx, rhs, rightScalar ? NONE : need);
    return;
  }
  let setOp = false;
  for (let c = node.firstChild; c !== null; c = c.nextSibling) if (SET_OPS.has(c.name)) setOp = true;
  const clause = node.getChild('MatchingModifierClause');
  let match: Need = ALL;
  let leftExtra: Need = NONE;
  let rightExtra: Need = NONE;
  if (clause !== null) {
    const groups = clause.getChildren('GroupingLabels').map((g) => groupingLabels(ctx, g));
    const matching = groups[0] ?? [];
    const included = groups[1] ?? [];
    const anyVar = matching.some((l) => l.includes(VARIABLE_PLACEHOLDER));
    if (clause.getChild('On') !== null) match = anyVar ? ALL : some(matching);
    else match = anyVar ? ALL : allExcept(matching);
    // group_left(x): x is copied from the right ("one") side; group_right the other way round.
    if (clause.getChild('GroupLeft') !== null) rightExtra = labelsNeed(included);
    if (clause.getChild('GroupRight') !== null) leftExtra = labelsNeed(included);
  }
  walk(ctx, lhs, union(union(match, need), leftExtra));
  // A set operator returns the left side's series; of the right side only the matching counts.
  walk(ctx, rhs, setOp ? match : union(union(match, need), rightExtra));
}

function functionName(ctx: Ctx, node: SyntaxNode): string {
  const id = node.getChild('FunctionIdentifier');
  return id === null ? '' : ctx.text.slice(id.from, id.to);
}

function call(ctx: Ctx, node: SyntaxNode, need: Need): void {
  const fn = functionName(ctx, node);
  const body = node.getChild('FunctionCallBody');
  const args = body === null ? [] : exprChildren(body);
  const strings = args.filter((a) => a.name === 'StringLiteral').map((a) => unquote(ctx.text, a));
  const exprs = args.filter((a) => a.name !== 'StringLiteral');
  let inner = need;
  switch (fn) {
    case 'label_replace':
      // label_replace(v, dst, replacement, src, regex): dst keeps its value when regex misses.
      inner = union(need, labelsNeed([strings[0] ?? '', strings[2] ?? ''].filter((l) => l !== '')));
      break;
    case 'label_join':
      // label_join(v, dst, separator, src...)
      inner = union(need, labelsNeed([strings[0] ?? '', ...strings.slice(2)].filter((l) => l !== '')));
      break;
    case 'sort_by_label':
    case 'sort_by_label_desc':
      inner = union(need, labelsNeed(strings));
      break;
    case 'histogram_quantile':
    case 'histogram_fraction':
    case 'histogram_quantiles':
      // Classic histograms are read bucket by bucket through `le`.
      inner = union(need, some(['le']));
      break;
    case 'info': {
      // info(v, data-selector): joins the info metric (target_info unless the selector names one)
      // on its identifying labels, and copies its data labels: both sides need every label.
      const [v, data] = exprs;
      if (v !== undefined) walk(ctx, v, ALL);
      if (data !== undefined) {
        const before = ctx.out.length;
        walk(ctx, data, ALL);
        const added = ctx.out.slice(before);
        if (added.every((m) => m.name === undefined && m.pattern === '.*')) {
          ctx.out.splice(before, added.length, { name: 'target_info', need: ALL });
        }
      } else {
        ctx.out.push({ name: 'target_info', need: ALL });
      }
      return;
    }
    default:
      if (LABELLESS.has(fn)) inner = NONE;
  }
  for (const a of exprs) walk(ctx, a, isScalar(ctx, a) ? NONE : inner);
}

/** The value of a PromQL string literal: "..." and '...' with Go escapes, `...` raw. */
export function unquote(text: string, node: { from: number; to: number }): string {
  const raw = text.slice(node.from, node.to);
  const q = raw[0];
  const body = raw.slice(1, -1);
  if (q === '`') return body;
  if (q !== '"' && q !== "'") return raw;
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i];
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'a':
        out += '\x07';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x': {
        out += String.fromCharCode(Number.parseInt(body.slice(i + 1, i + 3), 16));
        i += 2;
        break;
      }
      case 'u': {
        out += String.fromCodePoint(Number.parseInt(body.slice(i + 1, i + 5), 16));
        i += 4;
        break;
      }
      case 'U': {
        out += String.fromCodePoint(Number.parseInt(body.slice(i + 1, i + 9), 16));
        i += 8;
        break;
      }
      default:
        if (e !== undefined && e >= '0' && e <= '7') {
          out += String.fromCharCode(Number.parseInt(body.slice(i, i + 3), 8));
          i += 2;
        } else {
          out += e ?? '';
        }
    }
  }
  return out;
}
