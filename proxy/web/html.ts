// HTML built on the server, escaped by construction: every value interpolated into `html` is
// escaped unless it is itself the result of `html` (a Fragment). There is no way to insert a raw
// string, so nothing a sender or a policy controls can become markup.

export class Fragment {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

type Value = string | number | boolean | null | undefined | Fragment | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Fragment) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

/** A template whose interpolations are escaped; arrays are joined; null, undefined and false are nothing. */
export function html(strings: TemplateStringsArray, ...values: Value[]): Fragment {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + (strings[i + 1] ?? '');
  return new Fragment(out);
}

/**
 * JSON for a `<script type="application/json">` block: `<` is escaped so that no value can close
 * the element, and the block is data, never run (the CSP allows only the proxy's own scripts).
 */
export function jsonBlock(id: string, value: unknown): Fragment {
  const json = JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  return new Fragment(`<script type="application/json" id="${escapeHtml(id)}">${json}</script>`);
}

const NAV: readonly [string, string][] = [
  ['/', 'Overview'],
  ['/policies', 'Policies'],
  ['/offenders', 'Offenders'],
  ['/unused', 'Unused'],
  ['/playground', 'Playground'],
];

/** The page around a body: navigation, the stylesheet, and the proxy's own scripts (charts only). */
export function page(opts: {
  title: string;
  path: string;
  version: string;
  body: Fragment;
  charts?: boolean;
}): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${opts.title} · Cardinal proxy</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/cardinal.css">
${
  opts.charts
    ? html`<link rel="stylesheet" href="/static/uplot.min.css">
<script src="/static/uplot.iife.min.js" defer></script>
<script src="/static/pages.js" defer></script>`
    : ''
}
</head>
<body>
<header>
<span class="brand">Cardinal proxy</span> <span class="version">${opts.version}</span>
<nav>${NAV.map(([href, label]) => html`<a href="${href}"${href === opts.path ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
</header>
<main>
<h1>${opts.title}</h1>
${opts.body}
</main>
</body>
</html>
`.text;
}

/** A table; `numeric` columns are right-aligned. An empty table says `empty`. */
export function table(
  header: readonly string[],
  rows: readonly (readonly Value[])[],
  empty = 'Nothing yet.',
  numeric: readonly number[] = [],
): Fragment {
  if (rows.length === 0) return html`<p class="empty">${empty}</p>`;
  const cls = (i: number) => (numeric.includes(i) ? html` class="num"` : '');
  return html`<table>
<thead><tr>${header.map((h, i) => html`<th${cls(i)}>${h}</th>`)}</tr></thead>
<tbody>
${rows.map(
  (r) => html`<tr>${r.map((c, i) => html`<td${cls(i)}>${c}</td>`)}</tr>
`,
)}</tbody>
</table>`;
}
