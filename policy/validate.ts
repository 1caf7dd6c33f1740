// Validates the MetricPolicy documents of a configuration completely before it replaces the running
// one. Structure is checked against the one schema (crds/metric-policy.ts) with TypeBox's compiled
// validator; then what a schema cannot say: every regex compiles on RE2, the selector parses, the
// relabel configs pass Prometheus's checks, durations are well formed, names are unique. Every
// problem of the configuration is reported at once, one per line, so one edit can fix them all.

import { FormatRegistry, Kind, OptionalKind, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import { MAX_ITEMS } from '../crds/crd.js';
import {
  MetricPolicySpec,
  type MetricPolicySpecT,
  MetricUsageSpec,
  type MetricUsageSpecT,
  type MetricUseT,
} from '../crds/metric-policy.js';
import { didYouMean } from '../lib/suggest.js';
import { ConfigError, type Locate, type PolicyDocument, type Problem, type UsageDocument } from './load.js';
import { extract, PromQLError } from './promql.js';
import { compileAnchored } from './regex.js';
import { compileRelabel } from './relabel.js';
import { parseSelector, SelectorError } from './selector.js';

/** A policy whose spec passed every check: defaults applied, deeply frozen. */
export interface ValidatedPolicy {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly source: string;
  readonly spec: MetricPolicySpecT;
}

/**
 * Validates every document and returns them with their specs defaulted and frozen, in the given
 * order. Throws one ConfigError whose message lists every problem, one per line, each as
 * `file:line:column: spec.path: reason`.
 */
export function validatePolicies(docs: readonly PolicyDocument[]): ValidatedPolicy[] {
  const { policies, problems } = checkPolicies(docs);
  if (problems.length > 0) throw new ConfigError(problems);
  return policies;
}

/** A problem in a spec: the path from the document's root, and the reason. */
interface SpecProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** Point at the field's name rather than its value (an unknown field). */
  readonly key?: boolean;
}

/** Where a problem is: from the document's positions when it has them, else its `source`. */
function place(doc: { source: string; locate?: Locate | undefined }, p: SpecProblem): Problem {
  return { where: doc.locate?.(p.path, p.key) ?? doc.source, message: `${pathText(p.path)}: ${p.message}` };
}

/** `['spec', 'limits', 'perMetric', 0, 'maxSeries']` as users write it: `spec.limits.perMetric[0].maxSeries`. */
export function pathText(path: readonly (string | number)[]): string {
  let out = '';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(step)) out += out === '' ? step : `.${step}`;
    else out += `[${JSON.stringify(step)}]`;
  }
  return out;
}

/**
 * As validatePolicies, without throwing: the policies that passed and every problem of the others,
 * so a caller can report them together with problems found elsewhere (cardinal check, a reload).
 */
export function checkPolicies(docs: readonly PolicyDocument[]): {
  policies: ValidatedPolicy[];
  problems: Problem[];
} {
  const problems: Problem[] = [];
  const out: ValidatedPolicy[] = [];
  const seen = new Map<string, string>();

  for (const doc of docs) {
    // A document without a namespace lands in "default" when applied, so it clashes with one there.
    const key = `${doc.namespace ?? 'default'}/${doc.name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push({
        where: doc.locate?.(['metadata', 'name']) ?? doc.source,
        message: `MetricPolicy ${key} is also defined at ${first}`,
      });
      continue;
    }
    seen.set(key, doc.locate?.(['metadata', 'name']) ?? doc.source);

    const spec = dropNulls(doc.spec);
    const structural = structuralErrors(spec);
    if (structural.length > 0) {
      for (const p of structural) problems.push(place(doc, p));
      continue;
    }
    const defaulted = Value.Default(MetricPolicySpec, Value.Clone(spec)) as MetricPolicySpecT;
    const semantic = semanticErrors(defaulted);
    if (semantic.length > 0) {
      for (const p of semantic) problems.push(place(doc, p));
      continue;
    }
    out.push(
      Object.freeze({
        name: doc.name,
        namespace: doc.namespace,
        source: doc.source,
        spec: deepFreeze(defaulted),
      }),
    );
  }
  return { policies: out, problems };
}

// ---------------------------------------------------------------------------------------------
// Structure

/**
 * The spec schema as the proxy checks it. Three differences from the schema itself, each so that
 * a file the proxy accepts is one the apiserver accepts: unknown fields are errors (the apiserver
 * prunes them, which would hide a misspelt field), the string enums become unions of literals
 * (TypeBox cannot check its Unsafe kind), and arrays get the CRD's bounds.
 */
function forValidation(schema: TSchema, path: string): TSchema {
  const node = schema as TSchema & Record<string, unknown>;
  let out: TSchema;
  if (node[Kind] === 'Unsafe' && Array.isArray(node.enum)) {
    const values = node.enum as string[];
    out = Type.Union(
      values.map((v) => Type.Literal(v)),
      { enum: values },
    );
  } else if (node[Kind] === 'Object') {
    const props = node.properties as Record<string, TSchema>;
    out = Type.Object(
      Object.fromEntries(Object.entries(props).map(([k, v]) => [k, forValidation(v, `${path}.${k}`)])),
      { additionalProperties: false },
    );
  } else if (node[Kind] === 'Array') {
    const max = MAX_ITEMS[path] ?? (node.maxItems as number | undefined);
    out = Type.Array(
      forValidation(node.items as TSchema, `${path}[]`),
      max === undefined ? {} : { maxItems: max },
    );
  } else {
    out = schema;
  }
  return node[OptionalKind] === 'Optional' ? Type.Optional(out) : out;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** RFC 3339 date-time, as the apiserver checks `format: date-time` (exemptions' expiresAt). */
export function isDateTime(value: string): boolean {
  return RFC3339.test(value) && !Number.isNaN(Date.parse(value));
}

// TypeBox checks a format only once it is registered; the registry is TypeBox's own, one per process.
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isDateTime);

const checker = TypeCompiler.Compile(forValidation(MetricPolicySpec, 'spec'));
const usageChecker = TypeCompiler.Compile(forValidation(MetricUsageSpec, 'spec'));

const DURATION_PATTERN = '^([0-9]+(ms|s|m|h|d))+$';

/** The structural problems of a spec, the first per field. */
function structuralErrors(spec: unknown, check = checker): SpecProblem[] {
  if (check.Check(spec)) return [];
  const byPath = new Map<string, SpecProblem>();
  for (const e of check.Errors(spec)) {
    const path = ['spec', ...pointerPath(spec, e.path)];
    const text = pathText(path);
    if (!byPath.has(text)) {
      byPath.set(text, {
        path,
        message: reason(e),
        key: e.type === ValueErrorType.ObjectAdditionalProperties,
      });
    }
  }
  return [...byPath.values()];
}

function reason(e: ValueError): string {
  const s = e.schema as Record<string, unknown>;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.ObjectAdditionalProperties: {
      const field = e.path
        .slice(e.path.lastIndexOf('/') + 1)
        .replaceAll('~1', '/')
        .replaceAll('~0', '~');
      const known = Object.keys((s.properties ?? {}) as Record<string, unknown>);
      return `unknown field${didYouMean(field, known)}`;
    }
    case ValueErrorType.Object:
      return `must be an object, got ${describe(e.value)}`;
    case ValueErrorType.Array:
      return `must be a list, got ${describe(e.value)}`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${String(s.maxItems)} items`;
    case ValueErrorType.String:
      return `must be a string, got ${describe(e.value)}`;
    case ValueErrorType.StringMinLength:
      return s.minLength === 1 ? 'must not be empty' : `must be at least ${String(s.minLength)} characters`;
    case ValueErrorType.StringPattern:
      return s.pattern === DURATION_PATTERN
        ? `must be a duration such as 30s, 5m or 1h30m, got ${JSON.stringify(e.value)}`
        : `must match ${String(s.pattern)}`;
    case ValueErrorType.Integer:
      return `must be an integer, got ${describe(e.value)}`;
    case ValueErrorType.StringFormat:
      return s.format === 'date-time'
        ? `must be an RFC 3339 date-time such as 2026-12-31T00:00:00Z, got ${describe(e.value)}`
        : e.message;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be >= ${String(s.minimum)}`;
    case ValueErrorType.Union:
      return Array.isArray(s.enum)
        ? `must be one of ${s.enum.join(', ')}, got ${describe(e.value)}${typeof e.value === 'string' ? didYouMean(e.value, s.enum as string[]) : ''}`
        : `is not valid: ${e.message}`;
    default:
      return e.message;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value === null || value === undefined) return 'nothing';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/** A JSON pointer into the spec as path steps; indices into lists are numbers. */
function pointerPath(spec: unknown, pointer: string): (string | number)[] {
  const out: (string | number)[] = [];
  let node: unknown = spec;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out.push(Array.isArray(node) ? Number(key) : key);
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return out;
}

/**
 * Drops object fields whose value is null, as the apiserver does for fields that are not
 * nullable, so `limits:` left empty in YAML means the same in a file as in a cluster.
 */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = dropNulls(v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Semantics

function semanticErrors(spec: MetricPolicySpecT): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const add = (path: (string | number)[], message: string) =>
    problems.push({ path: ['spec', ...path], message });
  const regex = (path: (string | number)[], pattern: string | undefined) => {
    if (pattern === undefined) return;
    try {
      compileAnchored(pattern);
    } catch (err) {
      add(path, message(err));
    }
  };

  const selector = spec.match?.selector;
  if (selector !== undefined) {
    try {
      parseSelector(selector);
    } catch (err) {
      add(
        ['match', 'selector'],
        err instanceof SelectorError ? `${err.reason} at column ${err.column}` : message(err),
      );
    }
  }
  // Each config on its own, so that every bad one is reported and not only the first.
  for (const [i, config] of (spec.relabel ?? []).entries()) {
    try {
      compileRelabel([config]);
    } catch (err) {
      const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
      add(['relabel', i], message(cause));
    }
  }
  for (const [i, p] of (spec.drop ?? []).entries()) regex(['drop', i], p);
  regex(['standards', 'metricNamePattern'], spec.standards?.metricNamePattern);
  regex(['standards', 'labelNamePattern'], spec.standards?.labelNamePattern);

  const limits = spec.limits;
  if (limits?.window !== undefined) {
    try {
      parseDuration(limits.window);
    } catch (err) {
      add(['limits', 'window'], message(err));
    }
  }
  for (const [i, l] of (limits?.perMetric ?? []).entries()) {
    regex(['limits', 'perMetric', i, 'metric'], l.metric);
    if (l.overflowLabel !== undefined && l.onExceed !== 'overflow') {
      add(['limits', 'perMetric', i, 'overflowLabel'], 'only used with onExceed overflow');
    }
  }
  for (const [i, l] of (limits?.perLabel ?? []).entries())
    regex(['limits', 'perLabel', i, 'metric'], l.metric);
  ruleNames(spec, add);

  const unused = spec.unused;
  for (const [i, p] of (unused?.keep ?? []).entries()) regex(['unused', 'keep', i], p);
  for (const [i, e] of (unused?.exemptions ?? []).entries())
    regex(['unused', 'exemptions', i, 'metric'], e.metric);
  for (const [i, e] of (unused?.expressions ?? []).entries()) {
    try {
      extract(e);
    } catch (err) {
      if (!(err instanceof PromQLError)) throw err;
      add(['unused', 'expressions', i], err.message);
    }
  }
  if (unused?.readWindow !== undefined) {
    try {
      parseDuration(unused.readWindow);
    } catch (err) {
      add(['unused', 'readWindow'], message(err));
    }
  }
  if (unused?.countReferences === false && unused.readWindow === undefined) {
    add(['unused', 'countReferences'], 'false needs spec.unused.readWindow (reads are then what counts)');
  }
  return problems;
}

/** The `rule` label values the policy's unnamed stages use. */
const RESERVED_RULES = ['relabel', 'unused'];

/** Rule names label counters, so two rules of one policy must not share one. */
function ruleNames(spec: MetricPolicySpecT, add: (path: (string | number)[], message: string) => void): void {
  const seen = new Map<string, string>();
  const check = (path: (string | number)[], name: string | undefined) => {
    if (name === undefined) return;
    if (RESERVED_RULES.includes(name)) {
      add([...path, 'name'], `rule name ${JSON.stringify(name)} is reserved for the policy's own rules`);
      return;
    }
    const first = seen.get(name);
    if (first !== undefined)
      add([...path, 'name'], `rule name ${JSON.stringify(name)} is also used by ${first}`);
    else seen.set(name, pathText(['spec', ...path]));
  };
  for (const [i, r] of (spec.limits?.perMetric ?? []).entries()) check(['limits', 'perMetric', i], r.name);
  for (const [i, r] of (spec.limits?.perLabel ?? []).entries()) check(['limits', 'perLabel', i], r.name);
}

/** The metrics every MetricUsage document of a configuration lists, merged; see validateUsage. */
export interface ValidatedUsage {
  /** How many documents there were: none means no usage is known, and spec.unused judges nothing. */
  readonly documents: number;
  readonly metrics: readonly MetricUseT[];
  /**
   * The documents' reads merged: the latest `since` (reads are known since then on every read
   * path), the latest read per name. Absent when no document has reads.
   */
  readonly reads?: { readonly sinceMs: number; readonly lastRead: ReadonlyMap<string, number> } | undefined;
}

/**
 * Validates MetricUsage documents (structure, exactly one of name and pattern, patterns compile)
 * and merges them. Throws one ConfigError listing every problem, as validatePolicies does.
 */
export function validateUsage(docs: readonly UsageDocument[]): ValidatedUsage {
  const { usage, problems } = checkUsage(docs);
  if (problems.length > 0) throw new ConfigError(problems);
  return usage;
}

/** As validateUsage, without throwing: the merged usage of the valid entries, and every problem. */
export function checkUsage(docs: readonly UsageDocument[]): { usage: ValidatedUsage; problems: Problem[] } {
  const problems: Problem[] = [];
  const metrics: MetricUseT[] = [];
  let sinceMs: number | undefined;
  const lastRead = new Map<string, number>();
  for (const doc of docs) {
    const spec = dropNulls(doc.spec) as MetricUsageSpecT;
    const structural = structuralErrors(spec, usageChecker);
    if (structural.length > 0) {
      for (const p of structural) problems.push(place(doc, p));
      continue;
    }
    for (const [i, m] of spec.metrics.entries()) {
      const at = (path: (string | number)[], message: string) =>
        problems.push(place(doc, { path: ['spec', 'metrics', i, ...path], message }));
      if ((m.name === undefined) === (m.pattern === undefined)) {
        at([], 'exactly one of name and pattern is required');
        continue;
      }
      if (m.labels !== undefined && m.allLabelsExcept !== undefined) {
        at([], 'labels and allLabelsExcept cannot both be given');
        continue;
      }
      if (m.pattern !== undefined) {
        try {
          compileAnchored(m.pattern);
        } catch (err) {
          at(['pattern'], message(err));
          continue;
        }
      }
      metrics.push(m);
    }
    if (spec.reads !== undefined) {
      const since = Date.parse(spec.reads.since);
      if (Number.isNaN(since)) {
        problems.push(place(doc, { path: ['spec', 'reads', 'since'], message: 'not an RFC 3339 time' }));
        continue;
      }
      sinceMs = Math.max(sinceMs ?? since, since);
      for (const [i, r] of spec.reads.metrics.entries()) {
        const at = Date.parse(r.lastRead);
        if (Number.isNaN(at)) {
          problems.push(
            place(doc, {
              path: ['spec', 'reads', 'metrics', i, 'lastRead'],
              message: 'not an RFC 3339 time',
            }),
          );
          continue;
        }
        lastRead.set(r.name, Math.max(lastRead.get(r.name) ?? at, at));
      }
    }
  }
  const reads = sinceMs === undefined ? undefined : Object.freeze({ sinceMs, lastRead });
  return { usage: { ...deepFreeze({ documents: docs.length, metrics }), reads }, problems };
}

const UNIT_MS: Readonly<Record<string, number>> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
const UNIT_ORDER = ['d', 'h', 'm', 's', 'ms'];

/**
 * Parses a duration such as `1h30m` into milliseconds, as Prometheus's model.ParseDuration does
 * for these units: each unit at most once, from the largest to the smallest. Zero is refused,
 * since every duration in a policy is a window or an interval.
 */
export function parseDuration(text: string): number {
  const parts = /^(?:[0-9]+(?:ms|s|m|h|d))+$/.test(text) ? text.match(/[0-9]+(?:ms|s|m|h|d)/g) : null;
  if (parts === null) throw new Error(`${JSON.stringify(text)} is not a duration such as 30s, 5m or 1h30m`);
  let ms = 0;
  let last = -1;
  for (const part of parts) {
    const unit = /[a-z]+$/.exec(part)![0];
    const order = UNIT_ORDER.indexOf(unit);
    if (order <= last) {
      throw new Error(
        `${JSON.stringify(text)} is not a duration: units must go from largest to smallest, once each`,
      );
    }
    last = order;
    ms += Number.parseInt(part, 10) * UNIT_MS[unit]!;
  }
  if (!Number.isSafeInteger(ms)) throw new Error(`${JSON.stringify(text)} is too long a duration`);
  if (ms === 0) throw new Error(`${JSON.stringify(text)} must be longer than zero`);
  return ms;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
