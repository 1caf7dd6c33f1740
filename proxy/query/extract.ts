// What one read request reads: the metric names of its PromQL (`query`) or series selectors
// (`match[]`), parsed with the grammar the rest of Cardinal uses (proxy/pipeline/promql.ts). Pure.
//
// Which parameter holds what follows the Prometheus HTTP API ("Expression queries", "Querying
// metadata", "Querying exemplars") and the federation endpoint: `query` for query, query_range and
// query_exemplars; `match[]` for series, labels, label values and federate. The metadata endpoint
// reads no samples and counts as no read.

import { extract, PromQLError } from '../../policy/promql.js';

export type ReadEndpoint =
  | 'query'
  | 'query_range'
  | 'query_exemplars'
  | 'series'
  | 'labels'
  | 'label_values'
  | 'federate'
  | 'metadata'
  | 'other';

/** Endpoints whose requests name what they read in `query`. */
const QUERY_PARAM = new Set<ReadEndpoint>(['query', 'query_range', 'query_exemplars']);
/** Endpoints whose requests name what they read in `match[]`. */
const MATCH_PARAM = new Set<ReadEndpoint>(['series', 'labels', 'label_values', 'federate']);

/** The longest expression parsed; a longer one is passed through and counted as unparsed. */
export const MAX_EXPRESSION_BYTES = 256 * 1024;

export interface RequestReads {
  /** Exact metric names selected. */
  readonly names: Set<string>;
  /** Anchored RE2 patterns from regex matchers on `__name__`, read as every known metric they match. */
  readonly patterns: Set<string>;
  /** Expressions or selectors that parsed. */
  parsed: number;
  /** Expressions or selectors that did not parse: passed through, counted, never refused. */
  unparsed: number;
  /**
   * Selectors that constrain no metric name (`{job="api"}`, `{__name__!="x"}`): counted here, not
   * as a read of every metric, which would make every metric look read.
   */
  unnamed: number;
}

export function emptyReads(): RequestReads {
  return { names: new Set(), patterns: new Set(), parsed: 0, unparsed: 0, unnamed: 0 };
}

/** The expressions a request of `endpoint` carries: `query` once, or every `match[]`. */
export function expressionsOf(endpoint: ReadEndpoint, params: URLSearchParams): string[] {
  if (QUERY_PARAM.has(endpoint)) {
    // Prometheus reads the first value (Go's Request.FormValue).
    const q = params.get('query');
    return q === null ? [] : [q];
  }
  if (MATCH_PARAM.has(endpoint)) return params.getAll('match[]');
  return [];
}

/** Adds what `expr` reads to `out`. */
export function addExpression(out: RequestReads, expr: string): void {
  if (expr.length > MAX_EXPRESSION_BYTES) {
    out.unparsed++;
    return;
  }
  let metrics: ReturnType<typeof extract>['metrics'];
  try {
    metrics = extract(expr).metrics;
  } catch (err) {
    if (!(err instanceof PromQLError)) throw err;
    out.unparsed++;
    return;
  }
  out.parsed++;
  for (const m of metrics) {
    if (m.name !== undefined) out.names.add(m.name);
    else if (m.pattern === undefined || m.pattern === '.*' || m.pattern === '.+') out.unnamed++;
    else out.patterns.add(m.pattern);
  }
}

/** What a request of `endpoint` with `params` (URL query and form body together) reads. */
export function readsOf(endpoint: ReadEndpoint, params: URLSearchParams): RequestReads {
  const out = emptyReads();
  for (const e of expressionsOf(endpoint, params)) addExpression(out, e);
  return out;
}
