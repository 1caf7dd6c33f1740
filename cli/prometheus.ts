// The few Prometheus HTTP API calls the tools make (https://prometheus.io/docs/prometheus/latest/querying/api/),
// each bounded in time and size. Works with Prometheus 2 and 3, and with VictoriaMetrics' copy of the
// same API for the read calls.

import type { Label } from '../proxy/codec/types.js';
import { CommandError } from './io.js';

export interface PrometheusClient {
  readonly url: string;
  /** GET /api/v1/label/__name__/values over [start, end]. */
  metricNames(range: TimeRange): Promise<string[]>;
  /** POST /api/v1/series with the selectors, over [start, end]; at most `limit` series (Prometheus 2.51+ and 3 cut the answer short). */
  series(match: readonly string[], range: TimeRange, limit: number): Promise<Label[][]>;
  /** GET /api/v1/status/tsdb: the head's series count, when the server has one. */
  headSeries(): Promise<number | undefined>;
  /** An instant query's vector result: each series' labels and value. */
  query(promql: string): Promise<{ labels: Record<string, string>; value: number }[]>;
  /** POST /api/v1/admin/tsdb/delete_series with the selectors, over all time. */
  deleteSeries(match: readonly string[]): Promise<void>;
  /** POST /api/v1/admin/tsdb/clean_tombstones. */
  cleanTombstones(): Promise<void>;
}

export interface TimeRange {
  readonly startMs: number;
  readonly endMs: number;
}

const TIMEOUT_MS = 60_000;
/** Largest answer read: the series of one page at about 200 bytes each, and then some. */
const MAX_ANSWER_BYTES = 256 << 20;

export function prometheusClient(base: string, headers: Record<string, string> = {}): PrometheusClient {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new CommandError(`--prometheus: "${base}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CommandError(`--prometheus: "${base}" must be http or https`);
  const root = base.replace(/\/+$/, '');

  async function call(method: 'GET' | 'POST', path: string, params: [string, string][]): Promise<unknown> {
    const form = new URLSearchParams(params);
    const target = method === 'GET' && params.length > 0 ? `${root}${path}?${form}` : `${root}${path}`;
    let res: Response;
    try {
      res = await fetch(target, {
        method,
        headers:
          method === 'POST' ? { ...headers, 'content-type': 'application/x-www-form-urlencoded' } : headers,
        ...(method === 'POST' ? { body: form } : {}),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      throw new CommandError(`${method} ${root}${path}: ${(err as Error).message}`);
    }
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_ANSWER_BYTES)
      throw new CommandError(`${method} ${path}: the answer is larger than ${MAX_ANSWER_BYTES} bytes`);
    const text = await res.text();
    if (res.status === 204) return undefined;
    let body: { status?: string; data?: unknown; error?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new CommandError(`${method} ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
    }
    if (!res.ok || body.status !== 'success') {
      throw new CommandError(`${method} ${path}: HTTP ${res.status}: ${body.error ?? text.slice(0, 300)}`);
    }
    return body.data;
  }
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const rangeParams = (r: TimeRange): [string, string][] => [
    ['start', seconds(r.startMs)],
    ['end', seconds(r.endMs)],
  ];

  return {
    url: root,
    async metricNames(range) {
      return (await call('GET', '/api/v1/label/__name__/values', rangeParams(range))) as string[];
    },
    async series(match, range, limit) {
      const data = (await call('POST', '/api/v1/series', [
        ...match.map((m): [string, string] => ['match[]', m]),
        ...rangeParams(range),
        ['limit', String(limit)],
      ])) as Record<string, string>[];
      return data.slice(0, limit).map((s) =>
        Object.entries(s)
          .map(([name, value]) => ({ name, value }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      );
    },
    async headSeries() {
      try {
        const data = (await call('GET', '/api/v1/status/tsdb', [])) as { headStats?: { numSeries?: number } };
        return data.headStats?.numSeries;
      } catch {
        return undefined;
      }
    },
    async query(promql) {
      const data = (await call('POST', '/api/v1/query', [['query', promql]])) as {
        resultType: string;
        result: { metric: Record<string, string>; value: [number, string] }[];
      };
      return data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
    },
    async deleteSeries(match) {
      await call(
        'POST',
        '/api/v1/admin/tsdb/delete_series',
        match.map((m) => ['match[]', m]),
      );
    },
    async cleanTombstones() {
      await call('POST', '/api/v1/admin/tsdb/clean_tombstones', []);
    },
  };
}
