// Anchored RE2 regular expressions and Go-style replacement templates, as Prometheus's relabeling
// uses them. Every user-supplied pattern runs on RE2 (linear time); JS RegExp is never used for one.

import RE2 from 're2';

export interface AnchorOptions {
  /**
   * Whether `.` matches a newline. Prometheus 3 anchors a relabel regex as `^(?s:<pattern>)$`;
   * Prometheus 2 anchored it as `^(?:<pattern>)$`, where `.` stops at a newline. Default true.
   */
  readonly dotAll?: boolean;
}

/** A capture group reference by name is kept apart from literal text by this wrapper. */
type Part = string | number | { readonly name: string };

export interface AnchoredRegex {
  /** The pattern as the user wrote it, before anchoring. */
  readonly source: string;
  /** Whether the whole of `s` matches. */
  matches(s: string): boolean;
  /** The match of the whole of `s` with its groups, or null. */
  exec(s: string): RegExpExecArray | null;
  /**
   * Expands `template` with the groups of the match of the whole of `s`, exactly as Go's
   * `regexp.Expand`; null when `s` does not match.
   */
  replace(s: string, template: string | CompiledTemplate): string | null;
}

/** A parsed template; build with `parseTemplate` to expand the same template many times. */
export interface CompiledTemplate {
  readonly source: string;
  readonly parts: readonly Part[];
  /** True when the template refers to no group, so its expansion is the text itself. */
  readonly literal: boolean;
}

/**
 * Compiles `pattern` fully anchored, as Prometheus's `relabel.NewRegexp` does. Throws an Error
 * naming the pattern and RE2's reason when it does not compile.
 */
export function compileAnchored(pattern: string, options: AnchorOptions = {}): AnchoredRegex {
  const unsupported = unsupportedEscape(pattern);
  if (unsupported !== undefined) {
    throw new Error(`invalid regex ${JSON.stringify(pattern)}: invalid escape sequence: \`${unsupported}\``);
  }
  const anchored = `^(?${options.dotAll === false ? '' : 's'}:${pattern})$`;
  let re: RE2;
  try {
    re = new RE2(anchored);
  } catch (err) {
    throw new Error(`invalid regex ${JSON.stringify(pattern)}: ${asWritten(pattern, err)}`, { cause: err });
  }
  return {
    source: pattern,
    matches: (s) => re.test(s),
    exec: (s) => re.exec(s),
    replace(s, template) {
      const m = re.exec(s);
      if (m === null) return null;
      return expandTemplate(typeof template === 'string' ? parseTemplate(template) : template, m);
    },
  };
}

/**
 * RE2's reason for refusing a pattern, about the pattern as the user wrote it: RE2 quotes the
 * part of the expression it stopped at, which for the anchored form would show the anchoring
 * (`missing ): ^(?s:(a)$`). The bare pattern fails for the same reason, since the anchoring only
 * wraps it in a balanced group, so its message is the one to show.
 */
function asWritten(pattern: string, anchoredError: unknown): string {
  try {
    new RE2(pattern);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return anchoredError instanceof Error ? anchoredError.message : String(anchoredError);
}

/**
 * RE2 in C++ (and the `re2` package's translation of JS syntax) accepts escapes that Go's regexp
 * package refuses: `\C` (any byte) and `\u` (translated from JS). Prometheus would reject such a
 * configuration, so Cardinal does too. `\Q...\E` quotes its content and is skipped.
 */
function unsupportedEscape(pattern: string): string | undefined {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern.charCodeAt(i) !== 0x5c) continue;
    const next = pattern[i + 1];
    if (next === 'Q') {
      const end = pattern.indexOf('\\E', i + 2);
      if (end < 0) return undefined;
      i = end + 1;
    } else if (next === 'C' || next === 'u') {
      return `\\${next}`;
    } else {
      i++;
    }
  }
  return undefined;
}

const LETTER_OR_DIGIT = /^[\p{L}\p{Nd}]$/u;

/** Go's `unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_'`, with an ASCII fast path. */
function isNameChar(cp: number): boolean {
  if (cp < 0x80) {
    return (
      (cp >= 0x61 && cp <= 0x7a) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x30 && cp <= 0x39) || cp === 0x5f
    );
  }
  return LETTER_OR_DIGIT.test(String.fromCodePoint(cp));
}

/**
 * Parses a replacement template with the rules of Go's `regexp.Expand`: `$$` is a literal `$`;
 * `$name` and `${name}` take the longest run of letters, digits and underscores; a name that is a
 * decimal number without a leading zero (below 1e8) refers to a group by number, any other name to
 * a named group; a `$` not followed by a well-formed reference is literal text.
 */
export function parseTemplate(template: string): CompiledTemplate {
  const parts: Part[] = [];
  let literal = '';
  let i = 0;
  while (i < template.length) {
    const dollar = template.indexOf('$', i);
    if (dollar < 0) {
      literal += template.slice(i);
      break;
    }
    literal += template.slice(i, dollar);
    i = dollar + 1;
    if (template[i] === '$') {
      literal += '$';
      i++;
      continue;
    }
    const brace = template[i] === '{';
    let j = brace ? i + 1 : i;
    const nameStart = j;
    while (j < template.length) {
      const cp = template.codePointAt(j)!;
      if (!isNameChar(cp)) break;
      j += cp > 0xffff ? 2 : 1;
    }
    const name = template.slice(nameStart, j);
    if (name === '' || (brace && template[j] !== '}')) {
      // Malformed: the `$` is literal, and what follows it is read as ordinary text.
      literal += '$';
      continue;
    }
    i = brace ? j + 1 : j;
    parts.push(literal);
    literal = '';
    parts.push(groupNumber(name) ?? { name });
  }
  parts.push(literal);
  return { source: template, parts, literal: parts.length === 1 };
}

/** The group number `name` denotes in Go's `extract`, or undefined when it is a group name. */
function groupNumber(name: string): number | undefined {
  if (name.length > 1 && name.charCodeAt(0) === 0x30) return undefined;
  let num = 0;
  for (let k = 0; k < name.length; k++) {
    const c = name.charCodeAt(k);
    if (c < 0x30 || c > 0x39 || num >= 1e8) return undefined;
    num = num * 10 + (c - 0x30);
  }
  return num;
}

/**
 * Expands a parsed template with a match. A group that does not exist or did not take part in the
 * match expands to nothing.
 */
export function expandTemplate(template: CompiledTemplate, match: RegExpExecArray): string {
  const { parts } = template;
  if (template.literal) return parts[0] as string;
  let out = '';
  for (let k = 0; k < parts.length; k++) {
    const part = parts[k]!;
    if (typeof part === 'string') {
      out += part;
    } else if (typeof part === 'number') {
      out += (part < match.length ? match[part] : undefined) ?? '';
    } else {
      const groups = match.groups;
      // Own properties only: a template `$constructor` must not reach Object.prototype.
      if (groups !== undefined && Object.hasOwn(groups, part.name)) out += groups[part.name] ?? '';
    }
  }
  return out;
}
