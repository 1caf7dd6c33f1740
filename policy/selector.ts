// PromQL series selectors (`spec.match.selector`): `metric`, `{label="v", ...}`, `metric{...}`, and
// Prometheus 3's quoted UTF-8 names (`{"metric.name", "label.name"=~"v.*"}`). The syntax is the
// PromQL lexer's (prometheus/promql/parser/lex.go): identifiers, the three string forms with Go's
// escapes, `#` comments, and a trailing comma inside the braces. Matching follows
// model/labels/matcher.go: a missing label has the value "", and a regex matches the whole value.

import { type AnchoredRegex, compileAnchored } from './regex.js';

export type MatchType = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  readonly name: string;
  readonly type: MatchType;
  readonly value: string;
  /** The compiled, fully anchored regex of a `=~` or `!~` matcher. */
  readonly re?: AnchoredRegex;
}

export interface Selector {
  readonly matchers: readonly Matcher[];
}

/** A selector that does not parse; `column` is 1-based, in UTF-16 code units. */
export class SelectorError extends Error {
  override name = 'SelectorError';
  constructor(
    readonly reason: string,
    readonly column: number,
  ) {
    super(`selector: ${reason} at column ${column}`);
  }
}

const METRIC_NAME = '__name__';

type Token =
  | { kind: 'ident'; text: string; pos: number }
  | { kind: 'string'; text: string; pos: number }
  | { kind: 'op'; text: MatchType; pos: number }
  | { kind: '{' | '}' | ','; text: string; pos: number }
  | { kind: 'eof'; text: ''; pos: number };

/**
 * Parses a series selector. Throws a SelectorError naming the column of the first problem.
 *
 * Unlike a PromQL query, a policy's selector may match the empty label set (`{job!="x"}` selects
 * every series without job="x"); only an empty `{}` is refused, since leaving the selector out is
 * the way to select every series.
 */
export function parseSelector(input: string): Selector {
  const lexer = new Lexer(input);
  const matchers: Matcher[] = [];
  let tok = lexer.next();
  let outsideName = false;

  if (tok.kind === 'ident') {
    matchers.push({ name: METRIC_NAME, type: '=', value: tok.text });
    outsideName = true;
    tok = lexer.next();
    if (tok.kind === 'eof') return freeze(matchers);
  }
  if (tok.kind !== '{') throw unexpected(tok);
  const open = tok.pos;

  for (;;) {
    tok = lexer.next();
    if (tok.kind === '}') break;
    if (tok.kind !== 'ident' && tok.kind !== 'string') throw unexpected(tok);
    const name = tok;
    tok = lexer.next();
    if (name.kind === 'string' && (tok.kind === ',' || tok.kind === '}')) {
      // A lone quoted string is the metric name (Prometheus 3).
      matchers.push({ name: METRIC_NAME, type: '=', value: name.text });
    } else {
      if (tok.kind !== 'op') throw unexpected(tok);
      const op = tok.text;
      const value = lexer.next();
      if (value.kind !== 'string') throw unexpected(value);
      matchers.push(matcher(name.text, op, value));
      tok = lexer.next();
    }
    // As PromQL's checkAST: a name before the braces excludes any __name__ matcher inside them.
    if (outsideName && matchers[matchers.length - 1]!.name === METRIC_NAME) {
      throw new SelectorError('metric name must not be set twice', name.pos + 1);
    }
    if (tok.kind === '}') break;
    if (tok.kind !== ',') throw unexpected(tok);
  }
  if (matchers.length === 0) {
    throw new SelectorError('empty selector {}; leave the selector out to select every series', open + 1);
  }
  const end = lexer.next();
  if (end.kind !== 'eof') throw unexpected(end);
  return freeze(matchers);
}

function matcher(name: string, type: MatchType, value: Token): Matcher {
  if (type === '=' || type === '!=') return { name, type, value: value.text };
  try {
    return { name, type, value: value.text, re: compileAnchored(value.text) };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new SelectorError(reason, value.pos + 1);
  }
}

function freeze(matchers: Matcher[]): Selector {
  return Object.freeze({ matchers: Object.freeze(matchers.map((m) => Object.freeze(m))) });
}

function unexpected(tok: Token): SelectorError {
  if (tok.kind === 'eof') return new SelectorError('unexpected end of input', tok.pos + 1);
  const shown = tok.kind === 'string' ? 'string' : JSON.stringify(tok.text);
  return new SelectorError(`unexpected ${shown}`, tok.pos + 1);
}

/**
 * Whether a series whose label values `get` returns is selected. `get` returns "" for a label the
 * series does not carry, as Prometheus treats a missing label as an empty one.
 */
export function matchesLabels(matchers: readonly Matcher[], get: (name: string) => string): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const m = matchers[i]!;
    const v = get(m.name);
    let ok: boolean;
    switch (m.type) {
      case '=':
        ok = v === m.value;
        break;
      case '!=':
        ok = v !== m.value;
        break;
      case '=~':
        ok = m.re!.matches(v);
        break;
      case '!~':
        ok = !m.re!.matches(v);
        break;
    }
    if (!ok) return false;
  }
  return true;
}

const isIdentStart = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Lexer {
  private pos = 0;
  /** Inside the braces an identifier is a label name, which may not contain `:`. */
  private insideBraces = false;

  constructor(private readonly src: string) {}

  next(): Token {
    this.skipSpaceAndComments();
    const start = this.pos;
    const src = this.src;
    if (start >= src.length) return { kind: 'eof', text: '', pos: start };
    const c = src.charCodeAt(start);
    const ch = src[start]!;
    if (ch === '{' || ch === '}' || ch === ',') {
      if (ch === '{') this.insideBraces = true;
      this.pos++;
      return { kind: ch, text: ch, pos: start };
    }
    if (ch === '=') {
      this.pos += src[start + 1] === '~' ? 2 : 1;
      return { kind: 'op', text: this.pos - start === 2 ? '=~' : '=', pos: start };
    }
    if (ch === '!' && (src[start + 1] === '=' || src[start + 1] === '~')) {
      this.pos += 2;
      return { kind: 'op', text: src[start + 1] === '=' ? '!=' : '!~', pos: start };
    }
    if (ch === '"' || ch === "'" || ch === '`') return this.string(ch, start);
    // A metric name may contain colons (recording rules); a label name may not.
    if (isIdentStart(c) || (c === 0x3a && !this.insideBraces)) {
      let end = start + 1;
      for (; end < src.length; end++) {
        const d = src.charCodeAt(end);
        if (!(isIdentStart(d) || isDigit(d) || (d === 0x3a && !this.insideBraces))) break;
      }
      this.pos = end;
      return { kind: 'ident', text: src.slice(start, end), pos: start };
    }
    const cp = src.codePointAt(start)!;
    throw new SelectorError(`unexpected character ${JSON.stringify(String.fromCodePoint(cp))}`, start + 1);
  }

  private skipSpaceAndComments(): void {
    const src = this.src;
    while (this.pos < src.length) {
      const c = src.charCodeAt(this.pos);
      if (isSpace(c)) this.pos++;
      else if (c === 0x23) {
        const nl = src.indexOf('\n', this.pos);
        this.pos = nl < 0 ? src.length : nl + 1;
      } else break;
    }
  }

  /** A PromQL string: raw between backquotes, else Go escapes; no newline inside either. */
  private string(quote: string, start: number): Token {
    const src = this.src;
    let i = start + 1;
    if (quote === '`') {
      const end = src.indexOf('`', i);
      if (end < 0) throw new SelectorError('unterminated raw string', start + 1);
      this.pos = end + 1;
      return { kind: 'string', text: src.slice(i, end), pos: start };
    }
    let out = '';
    // Consecutive \x and octal escapes are bytes; they are decoded together as UTF-8.
    let bytes: number[] = [];
    const flush = (at: number) => {
      if (bytes.length === 0) return;
      try {
        out += utf8.decode(new Uint8Array(bytes));
      } catch {
        throw new SelectorError('invalid UTF-8 in byte escapes', at + 1);
      }
      bytes = [];
    };
    for (;;) {
      if (i >= src.length) throw new SelectorError('unterminated quoted string', start + 1);
      const ch = src[i]!;
      if (ch === quote) {
        flush(i);
        this.pos = i + 1;
        return { kind: 'string', text: out, pos: start };
      }
      if (ch === '\n') throw new SelectorError('unterminated quoted string', start + 1);
      if (ch !== '\\') {
        flush(i);
        const cp = src.codePointAt(i)!;
        const len = cp > 0xffff ? 2 : 1;
        out += src.slice(i, i + len);
        i += len;
        continue;
      }
      const escAt = i;
      const e = src[i + 1];
      if (e === undefined) throw new SelectorError('unterminated quoted string', start + 1);
      i += 2;
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined || e === quote) {
        flush(escAt);
        out += simple ?? quote;
      } else if (e === 'x') {
        bytes.push(this.digits(i, 2, 16, escAt));
        i += 2;
      } else if (e >= '0' && e <= '7') {
        const v = this.digits(i - 1, 3, 8, escAt);
        if (v > 255) throw new SelectorError('octal escape value > 255', escAt + 1);
        bytes.push(v);
        i += 2;
      } else if (e === 'u' || e === 'U') {
        flush(escAt);
        const n = e === 'u' ? 4 : 8;
        const cp = this.digits(i, n, 16, escAt);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          throw new SelectorError('escape sequence is an invalid Unicode code point', escAt + 1);
        }
        out += String.fromCodePoint(cp);
        i += n;
      } else {
        throw new SelectorError('unknown escape sequence', escAt + 1);
      }
    }
  }

  /** `n` digits in `base` at `at`; `escAt` is where the escape began, for the error. */
  private digits(at: number, n: number, base: 8 | 16, escAt: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) {
      const c = this.src.charCodeAt(at + k);
      const ok = base === 16 ? isHex(c) : c >= 0x30 && c <= 0x37;
      if (!ok) throw new SelectorError('invalid escape sequence', escAt + 1);
      v = v * base + Number.parseInt(this.src[at + k]!, base);
    }
    return v;
  }
}
