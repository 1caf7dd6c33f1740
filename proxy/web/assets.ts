// The pages' stylesheet and script, and uPlot (the sparklines) served from the installed npm
// package: no CDN, no build step. The script only draws charts from data the page carries in a
// JSON block; every table works without it.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export const CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #59636e; --line: #d1d9e0; --bg: #fff; --accent: #0b6bcb; --bad: #b3261e; --ok: #1a7f37; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --bg: #0d1117; --accent: #4493f8; --bad: #f85149; --ok: #3fb950; } }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1rem; align-items: baseline; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.brand { font-weight: 600; } .version { color: var(--muted); }
nav a { margin-right: .9rem; color: var(--accent); text-decoration: none; } nav a[aria-current] { font-weight: 600; text-decoration: underline; }
main { padding: 0 1.2rem 2rem; max-width: 80rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { text-align: left; padding: .25rem .7rem .25rem 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, textarea { font: 13px/1.4 ui-monospace, monospace; }
pre.problems { color: var(--bad); white-space: pre-wrap; }
.empty, .note { color: var(--muted); } .bad { color: var(--bad); } .ok { color: var(--ok); }
textarea { width: 100%; box-sizing: border-box; min-height: 12rem; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } @media (max-width: 50rem) { .cols { grid-template-columns: 1fr; } }
button { font: inherit; padding: .3rem 1rem; }
.spark { display: inline-block; width: 120px; height: 28px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dt { color: var(--muted); } dd { margin: 0; }
`;

// Draws a sparkline into every .spark element from the page's #history JSON block.
export const SCRIPT = `'use strict';
document.addEventListener('DOMContentLoaded', function () {
  var block = document.getElementById('history');
  if (!block || typeof uPlot === 'undefined') return;
  var data = JSON.parse(block.textContent);
  document.querySelectorAll('.spark[data-metric]').forEach(function (el) {
    var values = data.series[el.getAttribute('data-metric')];
    if (!values || data.times.length < 2) return;
    new uPlot({
      width: 120, height: 28, pxAlign: false, cursor: { show: false }, legend: { show: false },
      scales: { x: { time: false } }, axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#0b6bcb', width: 1.5, points: { show: false } }]
    }, [data.times, values], el);
    el.setAttribute('data-drawn', 'true');
  });
});
`;

/** uPlot's script and stylesheet, read once from node_modules. */
export function uplotAssets(): { js: string; css: string } {
  const require = createRequire(import.meta.url);
  const dir = require.resolve('uplot/package.json').replace(/package\.json$/, '');
  return {
    js: readFileSync(`${dir}dist/uPlot.iife.min.js`, 'utf8'),
    css: readFileSync(`${dir}dist/uPlot.min.css`, 'utf8'),
  };
}
