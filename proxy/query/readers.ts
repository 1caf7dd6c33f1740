// Who made a read request, from what real clients send. Grafana's data source sends
// X-Dashboard-Uid and X-Panel-Id with panel queries, X-Grafana-Org-Id with every request, and
// X-Rule-Uid with alert rule evaluations; other clients are known by their User-Agent. The tenant
// (X-Scope-OrgID, or the credential's) is part of the reader. Pure.
//
// Every part comes from the client and is bounded and stripped of control characters, so a reader
// name can be shown and stored; no credential is ever part of it.

import type { IncomingHttpHeaders } from 'node:http';

/** The longest part of a reader name kept, in characters. */
export const MAX_READER_PART = 64;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed.
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return clean === '' ? undefined : clean.slice(0, MAX_READER_PART);
}

/**
 * The reader of a request: `dashboard:<uid> panel:<id>`, `grafana-rule:<uid>` or `agent:<user
 * agent>`, then ` org:<id>` and ` tenant:<tenant>` when known; `unknown` when nothing says.
 */
export function readerOf(headers: IncomingHttpHeaders, tenant: string | undefined): string {
  let who: string;
  const dashboard = header(headers, 'x-dashboard-uid');
  const rule = header(headers, 'x-rule-uid');
  const agent = header(headers, 'user-agent');
  if (dashboard !== undefined) {
    const panel = header(headers, 'x-panel-id');
    who = panel === undefined ? `dashboard:${dashboard}` : `dashboard:${dashboard} panel:${panel}`;
  } else if (rule !== undefined) who = `grafana-rule:${rule}`;
  else if (agent !== undefined) who = `agent:${agent}`;
  else who = 'unknown';
  const org = header(headers, 'x-grafana-org-id');
  if (org !== undefined) who += ` org:${org}`;
  const t = tenant === undefined ? undefined : header({ t: tenant }, 't');
  if (t !== undefined) who += ` tenant:${t}`;
  return who;
}

/**
 * The reader of a rule group's evaluations, from Prometheus's query log: `rule-group:<file>/<group>`
 * with the rule file's base name (its directory is the same for every group of a server).
 */
export function ruleGroupReader(file: string, group: string): string {
  const base = file.slice(file.lastIndexOf('/') + 1);
  const f = header({ f: base }, 'f') ?? '';
  const g = header({ g: group }, 'g') ?? '';
  return `rule-group:${f}/${g}`;
}
