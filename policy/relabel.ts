// Prometheus relabeling (relabel_config), with Prometheus's exact semantics: its defaults, its
// configuration checks (model/relabel Config.Validate) and its rule evaluation (relabel.Process).
//
// Two dialects differ in details a user can observe; both are proven against the real programs by
// test/integration/relabel-differential.test.ts:
// - prometheus3 (3.x, the default): regexes are anchored `^(?s:...)$`, so `.` matches a newline;
//   label names are any non-empty UTF-8 (Prometheus 3's default name validation); a replace whose
//   expanded target is not a valid name does nothing, and one whose result is empty deletes the
//   expanded target.
// - prometheus2 (2.42, Debian's): regexes are anchored `^(?:...)$`; label names are legacy
//   ([a-zA-Z_][a-zA-Z0-9_]*); a replace whose expanded target is invalid, or whose result is
//   empty, deletes the label named by the unexpanded `target_label`.

import { createHash } from 'node:crypto';
import RE2 from 're2';
import { RELABEL_ACTIONS, type RelabelConfigT } from '../crds/metric-policy.js';
import {
  type AnchoredRegex,
  type CompiledTemplate,
  compileAnchored,
  expandTemplate,
  parseTemplate,
} from './regex.js';

/** A label of a series (prometheus.Label; the proxy's codec uses the same shape). */
export interface Label {
  name: string;
  value: string;
}

export type RelabelDialect = 'prometheus3' | 'prometheus2';

export interface RelabelOptions {
  /** Whose semantics to follow; `prometheus3` by default. */
  readonly dialect?: RelabelDialect;
}

export type RelabelAction = (typeof RELABEL_ACTIONS)[number];

const ACTIONS: ReadonlySet<string> = new Set<string>(RELABEL_ACTIONS);

/** One relabel_config with Prometheus's defaults applied and its regex and templates compiled. */
export interface RelabelRule {
  readonly action: RelabelAction;
  readonly sourceLabels: readonly string[];
  readonly separator: string;
  readonly regex: AnchoredRegex;
  /** Whether `regex` was left at its default `(.*)`. */
  readonly defaultRegex: boolean;
  readonly modulus: bigint;
  readonly targetLabel: string;
  readonly target: CompiledTemplate;
  readonly replacement: CompiledTemplate;
}

/** A compiled, frozen relabel_configs list. Build with `compileRelabel`, run with `relabel`. */
export interface RelabelProgram {
  readonly dialect: RelabelDialect;
  readonly rules: readonly RelabelRule[];
}

// Prometheus's DefaultRelabelConfig.
const DEFAULT_SEPARATOR = ';';
const DEFAULT_REGEX = '(.*)';
const DEFAULT_REPLACEMENT = '$1';

// Prometheus 2's check of a target_label or labelmap replacement that contains `$` references
// (relabelTarget in model/relabel). A fixed pattern, but it nests quantifiers, so it runs on RE2.
const LEGACY_TEMPLATE_NAME = new RE2('^(?:(?:[a-zA-Z_]|\\$(?:\\{\\w+\\}|\\w+))+\\w*)+$');

/** Go's `model.LabelName.IsValid` under legacy validation. */
export function isLegacyLabelName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || (i > 0 && c >= 0x30 && c <= 0x39);
    if (!ok) return false;
  }
  return true;
}

/** Go's `model.LabelName.IsValid` under UTF-8 validation: non-empty, well-formed Unicode. */
export function isUtf8LabelName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = name.charCodeAt(i + 1);
    if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++;
  }
  return true;
}

function nameValidator(dialect: RelabelDialect): (name: string) => boolean {
  return dialect === 'prometheus2' ? isLegacyLabelName : isUtf8LabelName;
}

function templateNameValidator(dialect: RelabelDialect): (name: string) => boolean {
  return dialect === 'prometheus2' ? (name) => LEGACY_TEMPLATE_NAME.test(name) : isUtf8LabelName;
}

/** Go's `%q` for the strings these messages quote. */
function quote(s: string): string {
  return JSON.stringify(s);
}

/**
 * Validates `configs` as Prometheus does and compiles them. Throws an Error whose message names the
 * offending entry, `relabel[2]: ...`, with Prometheus's own wording after the prefix.
 */
export function compileRelabel(
  configs: readonly RelabelConfigT[],
  options: RelabelOptions = {},
): RelabelProgram {
  const dialect = options.dialect ?? 'prometheus3';
  const rules = configs.map((config, i) => {
    try {
      return compileRule(config, dialect);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`relabel[${i}]: ${reason}`, { cause: err });
    }
  });
  return Object.freeze({ dialect, rules: Object.freeze(rules) });
}

function compileRule(config: RelabelConfigT, dialect: RelabelDialect): RelabelRule {
  const validName = nameValidator(dialect);
  const validTemplateName = templateNameValidator(dialect);

  // Prometheus reads the action case-insensitively.
  const rawAction = config.action ?? 'replace';
  const action = rawAction.toLowerCase();
  if (action === '') throw new Error('relabel action cannot be empty');
  if (!ACTIONS.has(action)) throw new Error(`unknown relabel action ${quote(rawAction)}`);
  const act = action as RelabelAction;

  for (const name of config.source_labels ?? []) {
    if (!validName(name)) throw new Error(`${quote(name)} is not a valid label name`);
  }
  const separator = config.separator ?? DEFAULT_SEPARATOR;
  const targetLabel = config.target_label ?? '';
  const replacement = config.replacement ?? DEFAULT_REPLACEMENT;
  const modulus = config.modulus ?? 0;
  if (!Number.isSafeInteger(modulus) || modulus < 0) {
    throw new Error(`modulus must be a non-negative integer, got ${modulus}`);
  }
  const regex = compileAnchored(config.regex ?? DEFAULT_REGEX, { dotAll: dialect === 'prometheus3' });

  if (modulus === 0 && act === 'hashmod') {
    throw new Error('relabel configuration for hashmod requires non-zero modulus');
  }
  const writesTarget =
    act === 'replace' ||
    act === 'hashmod' ||
    act === 'lowercase' ||
    act === 'uppercase' ||
    act === 'keepequal' ||
    act === 'dropequal';
  if (writesTarget && targetLabel === '') {
    throw new Error(`relabel configuration for ${act} action requires 'target_label' value`);
  }
  const invalidTarget = `${quote(targetLabel)} is invalid 'target_label' for ${act} action`;
  if (act === 'replace') {
    const ok = targetLabel.includes('$') ? validTemplateName(targetLabel) : validName(targetLabel);
    if (!ok) throw new Error(invalidTarget);
  }
  const caseOrEqual =
    act === 'lowercase' || act === 'uppercase' || act === 'keepequal' || act === 'dropequal';
  if ((caseOrEqual || act === 'hashmod') && !validName(targetLabel)) throw new Error(invalidTarget);
  if (caseOrEqual && replacement !== DEFAULT_REPLACEMENT) {
    throw new Error(`'replacement' can not be set for ${act} action`);
  }
  if (act === 'labelmap' && !validTemplateName(replacement)) {
    throw new Error(`${quote(replacement)} is invalid 'replacement' for ${act} action`);
  }
  if (
    (act === 'keepequal' || act === 'dropequal') &&
    (config.regex !== undefined || modulus !== 0 || separator !== DEFAULT_SEPARATOR)
  ) {
    throw new Error(`${act} action requires only 'source_labels' and \`target_label\`, and no other fields`);
  }
  if (
    (act === 'labeldrop' || act === 'labelkeep') &&
    (config.source_labels !== undefined ||
      targetLabel !== '' ||
      modulus !== 0 ||
      separator !== DEFAULT_SEPARATOR ||
      replacement !== DEFAULT_REPLACEMENT)
  ) {
    throw new Error(`${act} action requires only 'regex', and no other fields`);
  }

  return Object.freeze({
    action: act,
    sourceLabels: Object.freeze([...(config.source_labels ?? [])]),
    separator,
    regex,
    defaultRegex: config.regex === undefined,
    modulus: BigInt(modulus),
    targetLabel,
    target: parseTemplate(targetLabel),
    replacement: parseTemplate(replacement),
  });
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/**
 * The label set under change, with the semantics of Prometheus's labels.Builder: the labels the
 * step started from, the names deleted since, and the labels set since in the order they were
 * first set. The order matters where Prometheus's does: labelmap visits untouched labels of the
 * base in name order, then the set ones in that order, and a later write to a name wins.
 */
interface Builder {
  base: readonly Label[];
  add: Label[];
  del: string[];
}

function builderGet(b: Builder, name: string): string {
  for (const a of b.add) if (a.name === name) return a.value;
  if (b.del.includes(name)) return '';
  for (const l of b.base) if (l.name === name) return l.value;
  return '';
}

function builderDel(b: Builder, name: string): void {
  const i = b.add.findIndex((a) => a.name === name);
  if (i >= 0) b.add.splice(i, 1);
  b.del.push(name);
}

function builderSet(b: Builder, name: string, value: string): void {
  if (value === '') {
    builderDel(b, name);
    return;
  }
  const i = b.add.findIndex((a) => a.name === name);
  if (i >= 0) b.add[i] = { name, value };
  else b.add.push({ name, value });
}

/** The labels as `Range` visits them; a snapshot, so the caller may change the builder. */
function builderRange(b: Builder): Label[] {
  const out: Label[] = [];
  for (const l of b.base) {
    if (!b.del.includes(l.name) && !b.add.some((a) => a.name === l.name)) out.push(l);
  }
  for (const a of b.add) out.push(a);
  return out;
}

/** The current labels sorted by name; empty values are kept, as Prometheus's builder keeps them. */
function builderLabels(b: Builder): Label[] {
  if (b.add.length === 0 && b.del.length === 0) return b.base as Label[];
  const out = builderRange(b);
  out.sort(compareLabels);
  return out;
}

/**
 * Orders names as Go compares strings, by UTF-8 bytes, which is code point order. UTF-16 code
 * unit order differs only where a surrogate meets a unit in U+E000..U+FFFF.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function compareLabels(a: Label, b: Label): number {
  return compareNames(a.name, b.name);
}

/**
 * Applies `program` to `labels`, which must be sorted by name with unique names. Returns the
 * relabeled labels sorted by name, without empty values, or null when a rule dropped the series or
 * no label is left. The input is not modified; when no rule changes anything and no value is
 * empty, the input array itself is returned.
 *
 * The result may lack `__name__` or carry a name that is not a valid label name (labelmap writes
 * whatever its template expands to, as Prometheus does); later stages judge that.
 */
export function relabel(program: RelabelProgram, labels: readonly Label[]): Label[] | null {
  const b: Builder = { base: labels, add: [], del: [] };
  const materialize = program.dialect === 'prometheus2';
  for (const rule of program.rules) {
    if (!applyRule(rule, b, program.dialect)) return null;
    // Prometheus 2 turned the builder into a sorted label set after every rule.
    if (materialize && (b.add.length > 0 || b.del.length > 0)) {
      b.base = builderLabels(b);
      b.add = [];
      b.del = [];
    }
  }
  const out = builderLabels(b);
  let empty = 0;
  for (const l of out) if (l.value === '') empty++;
  if (empty === out.length) return null;
  if (empty === 0) return out;
  return out.filter((l) => l.value !== '');
}

function sourceValue(rule: RelabelRule, b: Builder): string {
  const names = rule.sourceLabels;
  if (names.length === 1) return builderGet(b, names[0]!);
  let val = '';
  for (let i = 0; i < names.length; i++) {
    if (i > 0) val += rule.separator;
    val += builderGet(b, names[i]!);
  }
  return val;
}

/** Applies one rule; false when the series is dropped. */
function applyRule(rule: RelabelRule, b: Builder, dialect: RelabelDialect): boolean {
  const val = sourceValue(rule, b);
  switch (rule.action) {
    case 'drop':
      return !rule.regex.matches(val);
    case 'keep':
      return rule.regex.matches(val);
    case 'dropequal':
      return builderGet(b, rule.targetLabel) !== val;
    case 'keepequal':
      return builderGet(b, rule.targetLabel) === val;
    case 'replace':
      applyReplace(rule, b, val, dialect);
      return true;
    case 'lowercase':
      builderSet(b, rule.targetLabel, goToLower(val));
      return true;
    case 'uppercase':
      builderSet(b, rule.targetLabel, goToUpper(val));
      return true;
    case 'hashmod':
      builderSet(b, rule.targetLabel, hashMod(val, rule.modulus));
      return true;
    case 'labelmap':
      for (const l of builderRange(b)) {
        const name = rule.regex.replace(l.name, rule.replacement);
        if (name !== null) builderSet(b, name, l.value);
      }
      return true;
    case 'labeldrop':
      for (const l of builderRange(b)) if (rule.regex.matches(l.name)) builderDel(b, l.name);
      return true;
    case 'labelkeep':
      for (const l of builderRange(b)) if (!rule.regex.matches(l.name)) builderDel(b, l.name);
      return true;
  }
}

function applyReplace(rule: RelabelRule, b: Builder, val: string, dialect: RelabelDialect): void {
  // The default regex matches every value (Prometheus 2's misses one with a newline), so without
  // group references the result is known without running it.
  const known =
    rule.defaultRegex &&
    rule.target.literal &&
    rule.replacement.literal &&
    (dialect === 'prometheus3' || !val.includes('\n'));
  const m = known ? null : rule.regex.exec(val);
  if (m === null && !known) return;
  const target = expand(rule.target, m);
  if (!nameValidator(dialect)(target)) {
    if (dialect === 'prometheus2') builderDel(b, rule.targetLabel);
    return;
  }
  const res = expand(rule.replacement, m);
  if (res === '') builderDel(b, dialect === 'prometheus2' ? rule.targetLabel : target);
  else builderSet(b, target, res);
}

/** A template's expansion; `m` may be null only for a template without group references. */
function expand(template: CompiledTemplate, m: RegExpExecArray | null): string {
  return m === null ? (template.parts[0] as string) : expandTemplate(template, m);
}

/**
 * Go's `strconv.FormatUint(binary.BigEndian.Uint64(md5(val)[8:]) % modulus, 10)`: the last eight
 * bytes of the MD5 digest, big-endian. Prometheus 2 and 3 compute the same value.
 */
export function hashMod(val: string, modulus: bigint): string {
  const digest = createHash('md5').update(val, 'utf8').digest();
  return (digest.readBigUInt64BE(8) % modulus).toString();
}

// Go's strings.ToLower and ToUpper map each code point with Unicode's simple case mapping
// (UnicodeData.txt). JS's toLowerCase/toUpperCase use the full mapping (SpecialCasing.txt), which
// turns some code points into several. Where JS yields more than one code point, the simple
// mapping is used instead: the code point itself, except for the cases below.
const SIMPLE_LOWER: ReadonlyMap<number, number> = new Map([[0x130, 0x69]]);
const SIMPLE_UPPER: ReadonlyMap<number, number> = new Map([
  ...[0x1f80, 0x1f90, 0x1fa0].flatMap((start) =>
    Array.from({ length: 8 }, (_, k): [number, number] => [start + k, start + k + 8]),
  ),
  [0x1fb3, 0x1fbc],
  [0x1fc3, 0x1fcc],
  [0x1ff3, 0x1ffc],
]);

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

function mapCodePoints(s: string, full: (ch: string) => string, simple: ReadonlyMap<number, number>): string {
  let out = '';
  for (const ch of s) {
    const mapped = full(ch);
    const cp = mapped.codePointAt(0)!;
    if (mapped.length === 1 || (mapped.length === 2 && cp > 0xffff)) {
      out += mapped;
    } else {
      const own = ch.codePointAt(0)!;
      out += String.fromCodePoint(simple.get(own) ?? own);
    }
  }
  return out;
}

/** Go's `strings.ToLower`. */
export function goToLower(s: string): string {
  if (isAscii(s)) return s.toLowerCase();
  return mapCodePoints(s, (ch) => ch.toLowerCase(), SIMPLE_LOWER);
}

/** Go's `strings.ToUpper`. */
export function goToUpper(s: string): string {
  if (isAscii(s)) return s.toUpperCase();
  return mapCodePoints(s, (ch) => ch.toUpperCase(), SIMPLE_UPPER);
}
