import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { CHECK_REASONS, type CheckReason } from '../codec/check.js';
import type { ForwardMetrics } from '../forward/client.js';
import type { PushForwardMetrics } from '../forward/pushgateway.js';
import type { Problem } from '../ingest/exposition/index.js';
import type { ProtocolVersion } from '../ingest/negotiate.js';

/** The `protocol` label: a remote-write version, or pushes of the Pushgateway protocol. */
export type IngestProtocol = ProtocolVersion | 'pushgateway';

/** What one remote-write request carried. Counted per request, never per sample. */
export interface PayloadCounts {
  readonly series: number;
  readonly samples: number;
  readonly histograms: number;
  readonly exemplars: number;
  readonly metadata: number;
}

const KINDS = ['series', 'samples', 'histograms', 'exemplars', 'metadata'] as const;

/**
 * The proxy's own metrics. Every label has a small, fixed set of values (protocol versions,
 * status codes, error codes from proxy/errors.ts), so the proxy's /metrics can never become a
 * cardinality problem of its own.
 */
export interface ProxyMetrics extends ForwardMetrics, PushForwardMetrics {
  readonly registry: Registry;
  request(protocol: IngestProtocol | 'unknown', status: number, reason: string): void;
  received(
    protocol: IngestProtocol,
    counts: PayloadCounts,
    wireBytes: number,
    decodedBytes: number,
    /** How the body was encoded on the wire: snappy for remote-write, gzip or identity for pushes. */
    encoding?: string,
  ): void;
  forwarded(protocol: IngestProtocol, counts: PayloadCounts): void;
  /** Problems found in pushes, by rule, and whether the push was rejected or forwarded with them. */
  pushProblems(problems: readonly Problem[], outcome: 'rejected' | 'warned'): void;
  inflight(delta: 1 | -1): void;
  /**
   * Series the door check found a receiver would refuse (proxy/codec/check.ts), by reason, and
   * whether the request was refused with 400 or the series dropped (--ingest.invalid).
   */
  invalid(reason: CheckReason, series: number, samples: number, action: 'rejected' | 'dropped'): void;
  configReload(ok: boolean, hash: string): void;
}

export function createProxyMetrics(version: string): ProxyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: 'cardinal_proxy_build_info',
    // --workers N: every worker has the same value; /metrics shows the largest.
    aggregator: 'max',
    help: 'Always 1; labelled with the version of the running proxy.',
    labelNames: ['version'],
    registers: [registry],
  })
    .labels(version)
    .set(1);

  const requests = new Counter({
    name: 'cardinal_proxy_requests_total',
    help: 'Ingest requests answered, by remote-write protocol version, HTTP status and reason (ok or an error code).',
    labelNames: ['protocol', 'code', 'reason'],
    registers: [registry],
  });
  const received = new Counter({
    name: 'cardinal_proxy_received_total',
    help: 'Series, samples, histograms, exemplars and metadata entries received in valid requests.',
    labelNames: ['protocol', 'kind'],
    registers: [registry],
  });
  const receivedBytes = new Counter({
    name: 'cardinal_proxy_received_bytes_total',
    help: 'Bytes of valid requests received, as on the wire (encoding: snappy, gzip or identity) and decoded.',
    labelNames: ['protocol', 'encoding'],
    registers: [registry],
  });
  const forwarded = new Counter({
    name: 'cardinal_proxy_forwarded_total',
    help: 'Series, samples, histograms, exemplars and metadata entries the upstream accepted.',
    labelNames: ['protocol', 'kind'],
    registers: [registry],
  });
  const attempts = new Counter({
    name: 'cardinal_proxy_forward_attempts_total',
    help: 'Requests sent to the upstream, by outcome (ok, retry, reject) and reason (status code or network error).',
    labelNames: ['protocol', 'outcome', 'reason'],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'cardinal_proxy_forward_retries_total',
    help: 'Attempts to the upstream that failed in a way the remote-write spec allows to retry (5xx, 429, network errors).',
    labelNames: ['protocol', 'reason'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'cardinal_proxy_forward_duration_seconds',
    help: 'Duration of one attempt to send a request to the upstream.',
    labelNames: ['protocol', 'outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const pushProblems = new Counter({
    name: 'cardinal_proxy_push_problems_total',
    help: 'Problems found in Pushgateway-protocol pushes (parse, lint and standards rules), by rule and outcome (rejected: the push was refused; warned: forwarded in lint warn mode or reported by a policy).',
    labelNames: ['rule', 'outcome'],
    registers: [registry],
  });
  const inflight = new Gauge({
    name: 'cardinal_proxy_inflight_requests',
    help: 'Ingest requests being processed or forwarded right now.',
    registers: [registry],
  });
  const invalidSeries = new Counter({
    name: 'cardinal_proxy_invalid_series_total',
    help: 'Series a receiver would refuse, found before the request was acknowledged, by reason and action (rejected: the request got 400; dropped: the series was left out, --ingest.invalid drop).',
    labelNames: ['reason', 'action'],
    registers: [registry],
  });
  const invalidSamples = new Counter({
    name: 'cardinal_proxy_invalid_samples_total',
    help: 'Float and histogram samples of the series counted by cardinal_proxy_invalid_series_total.',
    labelNames: ['reason', 'action'],
    registers: [registry],
  });
  for (const reason of CHECK_REASONS) {
    for (const action of ['rejected', 'dropped']) {
      invalidSeries.labels(reason, action).inc(0);
      invalidSamples.labels(reason, action).inc(0);
    }
  }
  const reloads = new Counter({
    name: 'cardinal_proxy_config_reloads_total',
    help: 'Configuration loads, by result (success or failure).',
    labelNames: ['result'],
    registers: [registry],
  });
  const lastReloadOk = new Gauge({
    name: 'cardinal_proxy_config_last_reload_successful',
    // --workers N: every worker has the same value; /metrics shows the smallest.
    aggregator: 'min',
    help: '1 when the last configuration load succeeded, 0 when it failed and the previous configuration stays in force.',
    registers: [registry],
  });
  const lastReloadTime = new Gauge({
    name: 'cardinal_proxy_config_last_reload_success_timestamp_seconds',
    // --workers N: every worker has the same value; /metrics shows the largest.
    aggregator: 'max',
    help: 'Time of the last successful configuration load.',
    registers: [registry],
  });
  const configInfo = new Gauge({
    name: 'cardinal_proxy_config_info',
    // --workers N: every worker has the same value; /metrics shows the largest.
    aggregator: 'max',
    help: 'Always 1; labelled with the hash of the configuration in force.',
    labelNames: ['hash'],
    registers: [registry],
  });

  return {
    registry,
    request(protocol, status, reason) {
      requests.labels(protocol, String(status), reason).inc();
    },
    received(protocol, counts, wireBytes, decodedBytes, encoding = 'snappy') {
      for (const kind of KINDS) received.labels(protocol, kind).inc(counts[kind]);
      receivedBytes.labels(protocol, encoding).inc(wireBytes);
      receivedBytes.labels(protocol, 'decoded').inc(decodedBytes);
    },
    forwarded(protocol, counts) {
      for (const kind of KINDS) forwarded.labels(protocol, kind).inc(counts[kind]);
    },
    attempt(protocol, outcome, reason, seconds) {
      attempts.labels(protocol, outcome, reason).inc();
      latency.labels(protocol, outcome).observe(seconds);
      if (outcome === 'retry') retries.labels(protocol, reason).inc();
    },
    pushAttempt(outcome, reason, seconds) {
      attempts.labels('pushgateway', outcome, reason).inc();
      latency.labels('pushgateway', outcome).observe(seconds);
      if (outcome === 'retry') retries.labels('pushgateway', reason).inc();
    },
    pushProblems(problems, outcome) {
      // Rules are the parser's, the linter's and the standards' fixed identifiers: bounded.
      const counts = new Map<string, number>();
      for (const p of problems) counts.set(p.rule, (counts.get(p.rule) ?? 0) + 1);
      for (const [rule, n] of counts) pushProblems.labels(rule, outcome).inc(n);
    },
    inflight(delta) {
      inflight.inc(delta);
    },
    invalid(reason, series, samples, action) {
      invalidSeries.labels(reason, action).inc(series);
      invalidSamples.labels(reason, action).inc(samples);
    },
    configReload(ok, hash) {
      reloads.labels(ok ? 'success' : 'failure').inc();
      lastReloadOk.set(ok ? 1 : 0);
      if (ok) {
        lastReloadTime.set(Date.now() / 1000);
        configInfo.reset();
        configInfo.labels(hash).set(1);
      }
    },
  };
}
