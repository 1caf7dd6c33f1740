// A strict parser for the two text formats a Pushgateway-protocol push may carry:
// - the Prometheus text exposition format 0.0.4 ("Exposition formats", "Text format details"), and
// - OpenMetrics 1.0 text ("ABNF", "Text format", "Metric types" sections of the OpenMetrics spec).
//
// The parser never throws and never stops at the first problem: every line is checked and each
// problem carries the exact 1-based line it was found on, so a rejected push can be answered with
// the full list. A line yields at most one syntax problem, because after the first one the rest of
// that line cannot be read with any confidence; the number of problems is therefore bounded by the
// number of lines.
//
// Pushes are untrusted input, so the parser is a hand-written scanner: every character is looked
// at a constant number of times and no regular expression runs on user input. Problem messages
// quote at most a short prefix of any offending token, so a 10 MB line cannot make a 10 MB answer.

export type ExpositionFormat = 'text' | 'openmetrics';

export type MetricType =
  | 'counter'
  | 'gauge'
  | 'histogram'
  | 'summary'
  | 'untyped'
  | 'unknown'
  | 'info'
  | 'stateset'
  | 'gaugehistogram';

/** One finding, parse or lint. `rule` is a stable identifier a client can match on. */
export interface Problem {
  line: number;
  message: string;
  rule: string;
}

export interface Sample {
  name: string;
  /** Label pairs in the order they were written. */
  labels: [string, string][];
  value: number;
  /** Milliseconds since the epoch. OpenMetrics timestamps (seconds) are rounded to the millisecond. */
  timestampMs?: number;
  line: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help?: string;
  unit?: string;
  samples: Sample[];
  /** The line the family first appeared on (its first metadata line or its first sample). */
  line: number;
}

export interface ParseResult {
  families: MetricFamily[];
  problems: Problem[];
}

const TEXT_TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
const OPENMETRICS_TYPES: readonly MetricType[] = [
  'counter',
  'gauge',
  'histogram',
  'gaugehistogram',
  'stateset',
  'info',
  'summary',
  'unknown',
];

// The sample names a family of each type may have, as suffixes of the family name ('' is the bare
// name). Text format: "Histograms and summaries". OpenMetrics: "Metric types", one entry per type.
const TEXT_SUFFIXES: Partial<Record<MetricType, readonly string[]>> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_count', '_sum'],
  summary: ['', '_count', '_sum'],
};
const OPENMETRICS_SUFFIXES: Partial<Record<MetricType, readonly string[]>> = {
  counter: ['_total', '_created'],
  gauge: [''],
  unknown: [''],
  info: ['_info'],
  stateset: [''],
  histogram: ['_bucket', '_count', '_sum', '_created'],
  gaugehistogram: ['_bucket', '_gcount', '_gsum'],
  summary: ['', '_count', '_sum', '_created'],
};

// Suffixes that, right after a family declared with TYPE, are taken as a sample meant for that
// family: a sample that carries one but is not valid for the declared type is reported rather than
// silently becoming a family of its own.
const TEXT_RESERVED_SUFFIXES: readonly string[] = ['_bucket', '_count', '_sum'];
const OPENMETRICS_RESERVED_SUFFIXES: readonly string[] = [
  '_total',
  '_created',
  '_bucket',
  '_count',
  '_sum',
  '_gcount',
  '_gsum',
  '_info',
];

/** OpenMetrics "Exemplars": the combined length of an exemplar's label names and values. */
const EXEMPLAR_MAX_LABEL_CHARS = 128;

interface FamilyState {
  family: MetricFamily;
  typeDeclared: boolean;
  helpLine: number;
  typeLine: number;
  unitLine: number;
}

interface ParseState {
  format: ExpositionFormat;
  families: Map<string, FamilyState>;
  order: MetricFamily[];
  current: FamilyState | undefined;
  problems: Problem[];
}

/** Parses a whole push body. See the file comment for the guarantees. */
export function parseExposition(text: string, format: ExpositionFormat): ParseResult {
  const state: ParseState = {
    format,
    families: new Map(),
    order: [],
    current: undefined,
    problems: [],
  };
  const om = format === 'openmetrics';
  let lineNo = 0;
  let start = 0;
  let sawEof = false;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    lineNo++;
    const line = text.slice(start, end);
    start = end + 1;
    if (sawEof) {
      report(state, lineNo, 'content-after-eof', 'nothing may follow "# EOF"');
      break;
    }
    if (line.endsWith('\r')) {
      report(
        state,
        lineNo,
        'carriage-return',
        'line ends with a carriage return; lines must end with "\\n" only',
      );
      continue;
    }
    if (om) {
      if (line === '# EOF') sawEof = true;
      else parseOpenMetricsLine(state, line, lineNo);
    } else {
      parseTextLine(state, line, lineNo);
    }
  }
  if (om && !sawEof) {
    report(state, lineNo + 1, 'missing-eof', 'OpenMetrics exposition must end with "# EOF"');
  }
  return { families: state.order, problems: state.problems };
}

function report(state: ParseState, line: number, rule: string, message: string): void {
  state.problems.push({ line, message, rule });
}

/** Quotes a piece of user input for a message, cut short so messages stay small. */
export function quote(s: string): string {
  return JSON.stringify(s.length > 128 ? `${s.slice(0, 128)}...` : s);
}

function found(line: string, i: number): string {
  return i >= line.length ? 'end of line' : quote(line[i]!);
}

// ---------------------------------------------------------------------------------------------
// Character classes (text format "Metric names and labels"; OpenMetrics "ABNF": metricname,
// label-name).

function isNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c === 58;
}
function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= 48 && c <= 57);
}
function isLabelStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}
function isLabelChar(c: number): boolean {
  return isLabelStart(c) || (c >= 48 && c <= 57);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isHexDigit(c: number): boolean {
  return isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}
/** The text format separates tokens by any run of blanks and tabs; OpenMetrics by one space. */
function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

function skipBlanks(line: string, i: number): number {
  let j = i;
  while (j < line.length && isBlank(line.charCodeAt(j))) j++;
  return j;
}

/** End of the metric name starting at `i` (=== i when there is none). */
function scanName(line: string, i: number): number {
  if (i >= line.length || !isNameStart(line.charCodeAt(i))) return i;
  let j = i + 1;
  while (j < line.length && isNameChar(line.charCodeAt(j))) j++;
  return j;
}

function scanLabelName(line: string, i: number): number {
  if (i >= line.length || !isLabelStart(line.charCodeAt(i))) return i;
  let j = i + 1;
  while (j < line.length && isLabelChar(line.charCodeAt(j))) j++;
  return j;
}

/** True for a full metric name (used by lint and tests as well). */
export function isValidMetricName(name: string): boolean {
  return name.length > 0 && scanName(name, 0) === name.length;
}

export function isValidLabelName(name: string): boolean {
  return name.length > 0 && scanLabelName(name, 0) === name.length;
}

// ---------------------------------------------------------------------------------------------
// Numbers.

/**
 * Parses a sample value. Accepted: decimal floats (`1`, `-1.5`, `.5`, `5.`, `1e-3`), `NaN`, and
 * `Inf`/`Infinity` with an optional sign, all case-insensitive. The text format additionally takes
 * Go's hexadecimal floats (`0x1.8p3`), because Go's ParseFloat defines its value syntax. Returns
 * undefined for anything else.
 */
export function parseNumber(token: string, format: ExpositionFormat): number | undefined {
  if (token.length === 0) return undefined;
  if (token.length <= 9) {
    const lower = token.toLowerCase();
    if (lower === 'nan') return Number.NaN;
    const unsigned = lower[0] === '+' || lower[0] === '-' ? lower.slice(1) : lower;
    if (unsigned === 'inf' || unsigned === 'infinity') {
      return lower[0] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
    }
  }
  if (isDecimal(token)) return Number(token);
  if (format === 'text') return parseHexFloat(token);
  return undefined;
}

/** `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?` */
function isDecimal(s: string): boolean {
  let i = 0;
  if (s[i] === '+' || s[i] === '-') i++;
  let digits = 0;
  while (i < s.length && isDigit(s.charCodeAt(i))) {
    i++;
    digits++;
  }
  if (s[i] === '.') {
    i++;
    while (i < s.length && isDigit(s.charCodeAt(i))) {
      i++;
      digits++;
    }
  }
  if (digits === 0) return false;
  if (s[i] === 'e' || s[i] === 'E') {
    i++;
    if (s[i] === '+' || s[i] === '-') i++;
    const expStart = i;
    while (i < s.length && isDigit(s.charCodeAt(i))) i++;
    if (i === expStart) return false;
  }
  return i === s.length;
}

/** Go's hexadecimal float: `[+-]? 0x hexdigits [. hexdigits] p [+-]? digits`; the exponent is required. */
function parseHexFloat(s: string): number | undefined {
  let i = 0;
  let sign = 1;
  if (s[i] === '+' || s[i] === '-') {
    if (s[i] === '-') sign = -1;
    i++;
  }
  if (s[i] !== '0' || (s[i + 1] !== 'x' && s[i + 1] !== 'X')) return undefined;
  i += 2;
  let mantissa = 0;
  let digits = 0;
  let fractionDigits = 0;
  let inFraction = false;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 && !inFraction) {
      inFraction = true;
      continue;
    }
    if (!isHexDigit(c)) break;
    mantissa = mantissa * 16 + Number.parseInt(s[i]!, 16);
    digits++;
    if (inFraction) fractionDigits++;
  }
  if (digits === 0 || (s[i] !== 'p' && s[i] !== 'P')) return undefined;
  i++;
  let expSign = 1;
  if (s[i] === '+' || s[i] === '-') {
    if (s[i] === '-') expSign = -1;
    i++;
  }
  const expStart = i;
  let exponent = 0;
  while (i < s.length && isDigit(s.charCodeAt(i))) {
    exponent = Math.min(exponent * 10 + (s.charCodeAt(i) - 48), 100_000);
    i++;
  }
  if (i === expStart || i !== s.length) return undefined;
  return sign * mantissa * 2 ** (expSign * exponent - 4 * fractionDigits);
}

/** Text format timestamps: an int64 of milliseconds, here limited to what a double holds exactly. */
function parseTextTimestamp(token: string): number | undefined {
  let i = 0;
  if (token[i] === '+' || token[i] === '-') i++;
  if (i === token.length) return undefined;
  for (let j = i; j < token.length; j++) if (!isDigit(token.charCodeAt(j))) return undefined;
  const ms = Number(token);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** OpenMetrics timestamps: a decimal number of seconds, no NaN or infinities. */
function parseOpenMetricsTimestamp(token: string): number | undefined {
  if (!isDecimal(token)) return undefined;
  const ms = Math.round(Number(token) * 1000);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

// ---------------------------------------------------------------------------------------------
// Escaped strings.

type Unescaped = { ok: true; value: string; end: number } | { ok: false; message: string; rule: string };

/**
 * Reads a label value whose opening quote is at `i - 1`, up to its closing quote. Escapes: `\\`,
 * `\"` and `\n` (text format "Text format details"; OpenMetrics "ABNF" escaped-char).
 */
function readLabelValue(line: string, i: number): Unescaped {
  let out = '';
  let chunk = i;
  let j = i;
  while (j < line.length) {
    const c = line.charCodeAt(j);
    if (c === 34) return { ok: true, value: out + line.slice(chunk, j), end: j + 1 };
    if (c === 92) {
      const next = line[j + 1];
      const replacement = next === '\\' ? '\\' : next === '"' ? '"' : next === 'n' ? '\n' : undefined;
      if (replacement === undefined) {
        return {
          ok: false,
          rule: 'invalid-escape',
          message: `invalid escape sequence ${quote(`\\${next ?? ''}`)} in label value; only \\\\, \\" and \\n are allowed`,
        };
      }
      out += line.slice(chunk, j) + replacement;
      j += 2;
      chunk = j;
      continue;
    }
    j++;
  }
  return { ok: false, rule: 'invalid-label-value', message: 'label value is missing its closing quote' };
}

/**
 * Unescapes HELP text. The text format allows `\\` and `\n`; OpenMetrics also `\"`.
 */
function unescapeHelp(s: string, format: ExpositionFormat): Unescaped {
  let out = '';
  let chunk = 0;
  let j = 0;
  while (j < s.length) {
    if (s.charCodeAt(j) !== 92) {
      j++;
      continue;
    }
    const next = s[j + 1];
    const replacement =
      next === '\\' ? '\\' : next === 'n' ? '\n' : next === '"' && format === 'openmetrics' ? '"' : undefined;
    if (replacement === undefined) {
      const allowed = format === 'openmetrics' ? '\\\\, \\" and \\n' : '\\\\ and \\n';
      return {
        ok: false,
        rule: 'invalid-escape',
        message: `invalid escape sequence ${quote(`\\${next ?? ''}`)} in HELP text; only ${allowed} are allowed`,
      };
    }
    out += s.slice(chunk, j) + replacement;
    j += 2;
    chunk = j;
  }
  return { ok: true, value: out + s.slice(chunk), end: s.length };
}

// ---------------------------------------------------------------------------------------------
// Lines.

function parseTextLine(state: ParseState, line: string, lineNo: number): void {
  const i = skipBlanks(line, 0);
  if (i === line.length) return;
  if (line[i] !== '#') {
    parseSample(state, line, i, lineNo);
    return;
  }
  // "Comments, HELP, and TYPE lines": the first token after # decides; other comments are ignored.
  const k = skipBlanks(line, i + 1);
  let e = k;
  while (e < line.length && !isBlank(line.charCodeAt(e))) e++;
  const keyword = line.slice(k, e);
  if (keyword !== 'HELP' && keyword !== 'TYPE') return;
  const n = skipBlanks(line, e);
  const nameEnd = scanName(line, n);
  if (nameEnd === n || (nameEnd < line.length && !isBlank(line.charCodeAt(nameEnd)))) {
    report(
      state,
      lineNo,
      'invalid-metric-name',
      `invalid metric name in ${keyword} line: unexpected ${found(line, nameEnd)}`,
    );
    return;
  }
  const name = line.slice(n, nameEnd);
  const rest = skipBlanks(line, nameEnd);
  if (keyword === 'HELP') {
    handleHelp(state, name, line.slice(rest), lineNo);
    return;
  }
  let typeEnd = rest;
  while (typeEnd < line.length && !isBlank(line.charCodeAt(typeEnd))) typeEnd++;
  if (skipBlanks(line, typeEnd) !== line.length) {
    report(
      state,
      lineNo,
      'invalid-syntax',
      `unexpected ${found(line, skipBlanks(line, typeEnd))} after the type in TYPE line`,
    );
    return;
  }
  handleType(state, name, line.slice(rest, typeEnd), lineNo);
}

function parseOpenMetricsLine(state: ParseState, line: string, lineNo: number): void {
  if (line.length === 0) {
    report(state, lineNo, 'empty-line', 'empty lines are not allowed in OpenMetrics');
    return;
  }
  if (line[0] !== '#') {
    parseSample(state, line, 0, lineNo);
    return;
  }
  const keyword = line.slice(2, 6);
  if (
    line[1] !== ' ' ||
    line[6] !== ' ' ||
    (keyword !== 'HELP' && keyword !== 'TYPE' && keyword !== 'UNIT')
  ) {
    report(
      state,
      lineNo,
      'invalid-comment',
      'OpenMetrics allows only "# HELP", "# TYPE", "# UNIT" and "# EOF" lines starting with "#"',
    );
    return;
  }
  const nameEnd = scanName(line, 7);
  if (nameEnd === 7 || (nameEnd < line.length && line[nameEnd] !== ' ')) {
    report(
      state,
      lineNo,
      'invalid-metric-name',
      `invalid metric name in ${keyword} line: unexpected ${found(line, nameEnd)}`,
    );
    return;
  }
  const name = line.slice(7, nameEnd);
  const rest = nameEnd < line.length ? line.slice(nameEnd + 1) : '';
  if (keyword === 'HELP') {
    handleHelp(state, name, rest, lineNo);
  } else if (keyword === 'TYPE') {
    if (nameEnd >= line.length) {
      report(state, lineNo, 'invalid-type', 'TYPE line has no type');
      return;
    }
    handleType(state, name, rest, lineNo);
  } else {
    for (let j = 0; j < rest.length; j++) {
      if (!isNameChar(rest.charCodeAt(j))) {
        report(state, lineNo, 'invalid-unit', `invalid character ${quote(rest[j]!)} in unit`);
        return;
      }
    }
    handleUnit(state, name, rest, lineNo);
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata.

/**
 * Finds or creates the family a metadata line names. Metadata must come first in its family's
 * group (text format "Comments, HELP, and TYPE lines"; OpenMetrics "MetricFamily"), so it is
 * reported and not applied when the family already has samples. Returns undefined in that case.
 */
function familyForMetadata(
  state: ParseState,
  name: string,
  keyword: string,
  lineNo: number,
): FamilyState | undefined {
  let fs = state.families.get(name);
  if (fs === undefined) {
    fs = newFamily(state, name, lineNo);
  } else if (fs !== state.current) {
    reportInterleaved(state, fs, lineNo);
  }
  state.current = fs;
  if (fs.family.samples.length > 0) {
    report(
      state,
      lineNo,
      'metadata-after-samples',
      `${keyword} line for ${quote(name)} must come before its samples`,
    );
    return undefined;
  }
  return fs;
}

function handleHelp(state: ParseState, name: string, raw: string, lineNo: number): void {
  const fs = familyForMetadata(state, name, 'HELP', lineNo);
  if (fs === undefined) return;
  if (fs.helpLine !== 0) {
    report(
      state,
      lineNo,
      'duplicate-help',
      `duplicate HELP line for ${quote(name)} (first at line ${fs.helpLine})`,
    );
    return;
  }
  const help = unescapeHelp(raw, state.format);
  if (!help.ok) {
    report(state, lineNo, help.rule, help.message);
    return;
  }
  fs.helpLine = lineNo;
  fs.family.help = help.value;
}

function handleType(state: ParseState, name: string, type: string, lineNo: number): void {
  const fs = familyForMetadata(state, name, 'TYPE', lineNo);
  if (fs === undefined) return;
  if (fs.typeLine !== 0) {
    report(
      state,
      lineNo,
      'duplicate-type',
      `duplicate TYPE line for ${quote(name)} (first at line ${fs.typeLine})`,
    );
    return;
  }
  const allowed = state.format === 'openmetrics' ? OPENMETRICS_TYPES : TEXT_TYPES;
  const known = allowed.find((t) => t === type);
  if (known === undefined) {
    report(
      state,
      lineNo,
      'invalid-type',
      `unknown metric type ${quote(type)}; expected one of ${allowed.join(', ')}`,
    );
    return;
  }
  fs.typeLine = lineNo;
  fs.typeDeclared = true;
  fs.family.type = known;
}

function handleUnit(state: ParseState, name: string, unit: string, lineNo: number): void {
  const fs = familyForMetadata(state, name, 'UNIT', lineNo);
  if (fs === undefined) return;
  if (fs.unitLine !== 0) {
    report(
      state,
      lineNo,
      'duplicate-unit',
      `duplicate UNIT line for ${quote(name)} (first at line ${fs.unitLine})`,
    );
    return;
  }
  fs.unitLine = lineNo;
  fs.family.unit = unit;
}

function newFamily(state: ParseState, name: string, lineNo: number): FamilyState {
  const family: MetricFamily = {
    name,
    type: state.format === 'openmetrics' ? 'unknown' : 'untyped',
    samples: [],
    line: lineNo,
  };
  const fs: FamilyState = { family, typeDeclared: false, helpLine: 0, typeLine: 0, unitLine: 0 };
  state.families.set(name, fs);
  state.order.push(family);
  return fs;
}

function reportInterleaved(state: ParseState, fs: FamilyState, lineNo: number): void {
  report(
    state,
    lineNo,
    'family-interleaved',
    `lines of metric family ${quote(fs.family.name)} must be contiguous, but another family came after line ${fs.family.line}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Samples.

function suffixesOf(state: ParseState, type: MetricType): readonly string[] {
  return (state.format === 'openmetrics' ? OPENMETRICS_SUFFIXES : TEXT_SUFFIXES)[type] ?? [''];
}

function belongs(state: ParseState, fs: FamilyState, sampleName: string): boolean {
  const base = fs.family.name;
  return (
    sampleName.startsWith(base) && suffixesOf(state, fs.family.type).includes(sampleName.slice(base.length))
  );
}

/** True when the sample name is the family name or the family name plus a type suffix. */
function looksLikeMember(state: ParseState, fs: FamilyState, sampleName: string): boolean {
  const base = fs.family.name;
  if (!sampleName.startsWith(base)) return false;
  const suffix = sampleName.slice(base.length);
  if (suffix === '') return true;
  const reserved = state.format === 'openmetrics' ? OPENMETRICS_RESERVED_SUFFIXES : TEXT_RESERVED_SUFFIXES;
  return reserved.includes(suffix);
}

function reportInvalidSampleName(
  state: ParseState,
  fs: FamilyState,
  sampleName: string,
  lineNo: number,
): void {
  const expected = suffixesOf(state, fs.family.type)
    .map((s) => quote(`${fs.family.name}${s}`))
    .join(', ');
  report(
    state,
    lineNo,
    'invalid-sample-name',
    `sample ${quote(sampleName)} does not fit ${fs.family.type} ${quote(fs.family.name)}; expected one of ${expected}`,
  );
}

/**
 * Picks the family a sample belongs to, reporting a sample that cannot belong where it stands.
 * Returns undefined when the sample is to be dropped.
 */
function familyForSample(state: ParseState, name: string, lineNo: number): FamilyState | undefined {
  const current = state.current;
  if (current !== undefined) {
    if (belongs(state, current, name)) return current;
    if (current.typeDeclared && looksLikeMember(state, current, name)) {
      reportInvalidSampleName(state, current, name, lineNo);
      return undefined;
    }
  }
  // A family seen before under this name or a base name: the push went back to it.
  const exact = state.families.get(name);
  const candidates: FamilyState[] = exact === undefined ? [] : [exact];
  const reserved = state.format === 'openmetrics' ? OPENMETRICS_RESERVED_SUFFIXES : TEXT_RESERVED_SUFFIXES;
  for (const suffix of reserved) {
    if (name.length > suffix.length && name.endsWith(suffix)) {
      const fs = state.families.get(name.slice(0, name.length - suffix.length));
      if (fs !== undefined) candidates.push(fs);
    }
  }
  for (const fs of candidates) {
    if (belongs(state, fs, name)) {
      reportInterleaved(state, fs, lineNo);
      state.current = fs;
      return fs;
    }
  }
  if (exact !== undefined) {
    reportInvalidSampleName(state, exact, name, lineNo);
    return undefined;
  }
  const fs = newFamily(state, name, lineNo);
  state.current = fs;
  return fs;
}

interface LabelsRead {
  labels: [string, string][];
  end: number;
}

/**
 * Reads `{name="value",...}` with the opening brace at `i`. The text format allows blanks around
 * every token and a trailing comma; OpenMetrics allows neither.
 */
function readLabels(state: ParseState, line: string, i: number, lineNo: number): LabelsRead | undefined {
  const text = state.format === 'text';
  const labels: [string, string][] = [];
  let seen: Set<string> | undefined;
  let j = i + 1;
  for (;;) {
    if (text) j = skipBlanks(line, j);
    if (line[j] === '}' && (labels.length === 0 || text)) return { labels, end: j + 1 };
    const nameEnd = scanLabelName(line, j);
    if (nameEnd === j) {
      const what = line[j] === '"' ? 'quoted label names are not supported' : `unexpected ${found(line, j)}`;
      report(state, lineNo, 'invalid-label-name', `expected a label name: ${what}`);
      return undefined;
    }
    const name = line.slice(j, nameEnd);
    if (name.startsWith('__')) {
      report(
        state,
        lineNo,
        'reserved-label-name',
        `label name ${quote(name)} is reserved: names starting with "__" are internal`,
      );
      return undefined;
    }
    j = text ? skipBlanks(line, nameEnd) : nameEnd;
    if (line[j] !== '=') {
      report(
        state,
        lineNo,
        'invalid-syntax',
        `expected "=" after label name ${quote(name)}, found ${found(line, j)}`,
      );
      return undefined;
    }
    j = text ? skipBlanks(line, j + 1) : j + 1;
    if (line[j] !== '"') {
      report(
        state,
        lineNo,
        'invalid-syntax',
        `expected a quoted value for label ${quote(name)}, found ${found(line, j)}`,
      );
      return undefined;
    }
    const value = readLabelValue(line, j + 1);
    if (!value.ok) {
      report(state, lineNo, value.rule, `${value.message} (label ${quote(name)})`);
      return undefined;
    }
    // Small label sets are the norm; a linear scan beats a Set until there are a few labels.
    if (seen === undefined && labels.length >= 8) seen = new Set(labels.map(([n]) => n));
    const duplicate = seen === undefined ? labels.some(([n]) => n === name) : seen.has(name);
    if (duplicate) {
      report(state, lineNo, 'duplicate-label-name', `label ${quote(name)} appears more than once`);
      return undefined;
    }
    seen?.add(name);
    labels.push([name, value.value]);
    j = text ? skipBlanks(line, value.end) : value.end;
    if (line[j] === ',') {
      j++;
      continue;
    }
    if (line[j] === '}') return { labels, end: j + 1 };
    report(state, lineNo, 'invalid-syntax', `expected "," or "}" after label value, found ${found(line, j)}`);
    return undefined;
  }
}

function tokenEnd(line: string, i: number, format: ExpositionFormat): number {
  let j = i;
  if (format === 'text') while (j < line.length && !isBlank(line.charCodeAt(j))) j++;
  else while (j < line.length && line.charCodeAt(j) !== 32) j++;
  return j;
}

function parseSample(state: ParseState, line: string, i: number, lineNo: number): void {
  const format = state.format;
  const text = format === 'text';
  const nameEnd = scanName(line, i);
  if (nameEnd === i) {
    const what = line[i] === '{' ? 'quoted metric names are not supported' : `found ${found(line, i)}`;
    report(state, lineNo, 'invalid-metric-name', `expected a metric name: ${what}`);
    return;
  }
  const name = line.slice(i, nameEnd);
  let j = nameEnd;
  let labels: [string, string][] = [];
  // The text format allows blanks between the name and "{" and none after "}" (as Prometheus's
  // own parser does); OpenMetrics has no blanks before "{" and exactly one space before the value.
  if (text && line[skipBlanks(line, j)] === '{') j = skipBlanks(line, j);
  let separatorRequired = true;
  if (line[j] === '{') {
    const read = readLabels(state, line, j, lineNo);
    if (read === undefined) return;
    labels = read.labels;
    j = read.end;
    separatorRequired = !text;
  } else if (j < line.length && !(text ? isBlank(line.charCodeAt(j)) : line[j] === ' ')) {
    report(
      state,
      lineNo,
      'invalid-metric-name',
      `invalid character ${found(line, j)} in metric name ${quote(name)}`,
    );
    return;
  }
  const valueStart = text ? skipBlanks(line, j) : line[j] === ' ' ? j + 1 : j;
  if ((separatorRequired && valueStart === j) || valueStart >= line.length) {
    report(
      state,
      lineNo,
      'invalid-syntax',
      `expected a space and a value after ${quote(name)}, found ${found(line, valueStart)}`,
    );
    return;
  }
  const valueEnd = tokenEnd(line, valueStart, format);
  const valueToken = line.slice(valueStart, valueEnd);
  const value = parseNumber(valueToken, format);
  if (value === undefined) {
    report(state, lineNo, 'invalid-value', `invalid sample value ${quote(valueToken)}`);
    return;
  }
  let timestampMs: number | undefined;
  let exemplarAt = -1;
  j = valueEnd;
  if (text) {
    j = skipBlanks(line, j);
    if (j < line.length) {
      const tsEnd = tokenEnd(line, j, format);
      const token = line.slice(j, tsEnd);
      timestampMs = parseTextTimestamp(token);
      if (timestampMs === undefined) {
        report(
          state,
          lineNo,
          'invalid-timestamp',
          `invalid timestamp ${quote(token)}; expected integer milliseconds`,
        );
        return;
      }
      j = skipBlanks(line, tsEnd);
      if (j < line.length) {
        report(state, lineNo, 'invalid-syntax', `unexpected ${found(line, j)} after the timestamp`);
        return;
      }
    }
  } else if (j < line.length) {
    // OpenMetrics: value [SP timestamp] [SP "#" SP exemplar].
    j++;
    if (line[j] !== '#') {
      const tsEnd = tokenEnd(line, j, format);
      const token = line.slice(j, tsEnd);
      timestampMs = parseOpenMetricsTimestamp(token);
      if (timestampMs === undefined) {
        report(
          state,
          lineNo,
          'invalid-timestamp',
          `invalid timestamp ${quote(token)}; expected seconds as a decimal number`,
        );
        return;
      }
      j = tsEnd;
      if (j < line.length) {
        if (line[j + 1] !== '#') {
          report(state, lineNo, 'invalid-syntax', `unexpected ${found(line, j)} after the timestamp`);
          return;
        }
        j++;
      }
    }
    if (j < line.length) {
      exemplarAt = j;
      if (!checkExemplar(state, line, j, lineNo)) return;
    }
  }
  const fs = familyForSample(state, name, lineNo);
  if (fs === undefined) return;
  if (exemplarAt >= 0 && !exemplarAllowed(fs, name)) {
    report(
      state,
      lineNo,
      'invalid-exemplar',
      'exemplars are allowed only on counter "_total" and histogram "_bucket" samples',
    );
    return;
  }
  const sample: Sample = { name, labels, value, line: lineNo };
  if (timestampMs !== undefined) sample.timestampMs = timestampMs;
  fs.family.samples.push(sample);
}

/** OpenMetrics "Exemplars": `# {labels} value [timestamp]` starting at the "#" at `i`. */
function checkExemplar(state: ParseState, line: string, i: number, lineNo: number): boolean {
  if (line[i + 1] !== ' ' || line[i + 2] !== '{') {
    report(state, lineNo, 'invalid-exemplar', 'an exemplar must start with "# {"');
    return false;
  }
  const read = readLabels(state, line, i + 2, lineNo);
  if (read === undefined) return false;
  let chars = 0;
  for (const [n, v] of read.labels) chars += [...n].length + [...v].length;
  if (chars > EXEMPLAR_MAX_LABEL_CHARS) {
    report(
      state,
      lineNo,
      'invalid-exemplar',
      `exemplar labels have ${chars} characters; at most ${EXEMPLAR_MAX_LABEL_CHARS} are allowed`,
    );
    return false;
  }
  let j = read.end;
  if (line[j] !== ' ') {
    report(
      state,
      lineNo,
      'invalid-exemplar',
      `expected a space and a value after the exemplar labels, found ${found(line, j)}`,
    );
    return false;
  }
  const valueEnd = tokenEnd(line, j + 1, 'openmetrics');
  const token = line.slice(j + 1, valueEnd);
  if (parseNumber(token, 'openmetrics') === undefined) {
    report(state, lineNo, 'invalid-exemplar', `invalid exemplar value ${quote(token)}`);
    return false;
  }
  j = valueEnd;
  if (j < line.length) {
    const tsEnd = tokenEnd(line, j + 1, 'openmetrics');
    const ts = line.slice(j + 1, tsEnd);
    if (parseOpenMetricsTimestamp(ts) === undefined || tsEnd !== line.length) {
      report(state, lineNo, 'invalid-exemplar', `invalid exemplar timestamp ${quote(line.slice(j + 1))}`);
      return false;
    }
  }
  return true;
}

function exemplarAllowed(fs: FamilyState, sampleName: string): boolean {
  const { type, name } = fs.family;
  if (type === 'counter') return sampleName === `${name}_total`;
  if (type === 'histogram' || type === 'gaugehistogram') return sampleName === `${name}_bucket`;
  return false;
}
