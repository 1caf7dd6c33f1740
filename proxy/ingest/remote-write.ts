import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requestTenant } from '../auth/http.js';
import { type CheckReason, type CheckResult, checkRequest, withoutSeries } from '../codec/check.js';
import { requestV2ToWriteRequestV1 } from '../codec/convert.js';
import { decodeRequestV2, encodeWriteRequestV1 } from '../codec/proto.js';
import { type SeriesIndex, scanRequestV2, scanWriteRequestV1 } from '../codec/scan.js';
import { snappyEncode } from '../codec/snappy.js';
import { snappyDecodeReusing } from '../codec/snappy-into.js';
import { CardinalError } from '../errors.js';
import type { Forwarder, WrittenStats } from '../forward/client.js';
import type { PolicyEngine, ProcessResult } from '../pipeline/engine.js';
import { StageRefusal } from '../pipeline/plugins/guard.js';
import type { IngestQueue } from '../queue/queue.js';
import { rateLimited } from '../ratelimit.js';
import type { PayloadCounts, ProxyMetrics } from '../stats/metrics.js';
import type { PolicyStats } from '../stats/policy-stats.js';
import type { BodyPool } from './body.js';
import { negotiate, type ProtocolVersion } from './negotiate.js';

export interface RemoteWriteDeps {
  readonly forwarder: Forwarder;
  readonly metrics: ProxyMetrics;
  readonly maxDecodedBytes: number;
  readonly upstreamProtocol: 'same' | '1.0';
  readonly engine: PolicyEngine;
  readonly policyStats: PolicyStats;
  /**
   * Report samples that policies dropped as written in 2.0 responses. Off by default: the 2.0
   * spec says the headers count what was written, and Prometheus then logs the difference.
   */
  readonly reportDroppedAsWritten: boolean;
  /** With --queue.dir: requests are answered once their data is durably queued, not forwarded. */
  readonly queue?: IngestQueue | undefined;
  /** The door check; undefined turns it off (tests of what lies behind it). */
  readonly checks?: IngestChecks | undefined;
  /**
   * Overload protection: requests being handled, and their bodies' bytes (by Content-Length), at
   * most; beyond, senders get 503 with Retry-After before their body is read. Unset: no bound.
   */
  readonly maxInflightRequests?: number | undefined;
  readonly maxInflightBytes?: number | undefined;
  /** Where request bodies were read into (server.ts); each is given back once nothing needs it. */
  readonly bodies?: BodyPool | undefined;
}

/** The --ingest.* flags: what the door check refuses, and what happens to it. */
export interface IngestChecks {
  readonly maxFutureMs: number;
  readonly maxAgeMs: number;
  readonly names: 'legacy' | 'utf8';
  /** reject: the request gets 400 naming the first bad series; drop: bad series are left out, counted. */
  readonly onInvalid: 'reject' | 'drop';
}

/** The ingest paths: Prometheus's own receiver path, and the short alias some senders use. */
export const REMOTE_WRITE_PATHS = ['/api/v1/write', '/write'] as const;

/**
 * A decoded request, ready to forward. The body is the sender's original compressed bytes when
 * nothing had to change, so the common case costs one decompression and one scan, no re-encoding.
 * `body` is undefined when policies dropped every series and nothing is left to forward.
 */
interface Prepared {
  readonly version: ProtocolVersion;
  readonly body: Uint8Array | undefined;
  readonly received: PayloadCounts;
  readonly forwarded: PayloadCounts;
}

export interface PrepareOptions {
  readonly maxDecodedBytes: number;
  readonly upstreamProtocol: 'same' | '1.0';
  readonly scratch: SeriesIndex | undefined;
  /** Memory to decode the body into, reused like `scratch` (PrepareResult.decodeBuffer). */
  readonly decodeBuffer?: Buffer | undefined;
  readonly engine: PolicyEngine | undefined;
  readonly tenant: string | undefined;
  readonly nowMs: number;
  readonly checks?: IngestChecks | undefined;
  /** Told about series the door check refused or dropped, before any exception is thrown. */
  readonly onInvalid?: ((r: CheckResult, action: 'rejected' | 'dropped') => void) | undefined;
}

type PrepareResult = {
  prepared: Prepared;
  index: SeriesIndex;
  decodedBytes: number;
  /** The buffer the body was decoded into, for the next request's `decodeBuffer`. */
  decodeBuffer: Buffer | undefined;
};

/**
 * Decodes, validates, runs the policies over and prepares one request body. Synchronous on
 * purpose: `scratch` is one SeriesIndex reused by every request, which is safe only because
 * nothing here awaits. Limits are decided by this process alone (PolicyEngine.process).
 */
export function prepareRequest(
  version: ProtocolVersion,
  body: Uint8Array,
  opts: PrepareOptions,
): PrepareResult {
  const c = checkAndScan(version, body, opts);
  const r =
    opts.engine !== undefined && !opts.engine.pipeline.empty
      ? refusedAsError(() => opts.engine!.process(c.checked, c.index, opts.tenant, opts.nowMs))
      : undefined;
  return finishPrepare(version, body, c, r, opts);
}

/**
 * A stage plugin whose failure mode refuses the request: 503 with Retry-After, which senders
 * retry (remote-write 1.0 "Retries & Backoff": 5xx MUST be retried; 2.0 "Retries & Backoff" also
 * honours Retry-After). Nothing of the request is forwarded: the refusal is thrown while it is
 * prepared, before the forward or the queue sees it.
 */
export function refusedAsError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw asRefusal(err);
  }
}

/** The error a stage refusal is answered with; any other error as it is. */
export function asRefusal(err: unknown): unknown {
  return err instanceof StageRefusal
    ? new CardinalError('STAGE_FAILED', err.message, { retryAfterSeconds: 1 })
    : err;
}

/**
 * prepareRequest with limits shared through the engine's store (PolicyEngine.run): synchronous
 * unless the store has to be asked. When it answers with a Promise, `opts.scratch` is in use
 * until the Promise settles; the caller must not hand it to another request meanwhile.
 */
export function prepareRequestShared(
  version: ProtocolVersion,
  body: Uint8Array,
  opts: PrepareOptions,
): PrepareResult | Promise<PrepareResult> {
  const c = checkAndScan(version, body, opts);
  if (opts.engine === undefined || opts.engine.pipeline.empty)
    return finishPrepare(version, body, c, undefined, opts);
  const engine = opts.engine;
  const r = refusedAsError(() => engine.run(c.checked, c.index, opts.tenant, opts.nowMs));
  // The store answered, and the series after it were evaluated then: a refusal there is one too.
  if (r instanceof Promise)
    return r.then(
      (done) => finishPrepare(version, body, c, done, opts),
      (err: unknown) => {
        throw asRefusal(err);
      },
    );
  return finishPrepare(version, body, c, r, opts);
}

interface Checked {
  readonly decoded: Buffer;
  readonly decodeBuffer: Buffer | undefined;
  /** The body after the door check (sorted labels, invalid series cut out), and its index. */
  readonly checked: Buffer;
  readonly index: SeriesIndex;
  readonly received: PayloadCounts;
  readonly forwarded: PayloadCounts;
  readonly changed: boolean;
}

function checkAndScan(version: ProtocolVersion, body: Uint8Array, opts: PrepareOptions): Checked {
  // Nothing of the decoded body outlives the request's preparation (forwarded bodies are the
  // sender's bytes or compressed anew), so it goes into memory reused from request to request.
  const { decoded, buffer: decodeBuffer } = snappyDecodeReusing(
    body,
    opts.maxDecodedBytes,
    opts.decodeBuffer,
  );
  const scan = (b: Buffer, into: SeriesIndex | undefined) =>
    version === '1.0' ? scanWriteRequestV1(b, into) : scanRequestV2(b, into);
  let index = scan(decoded, opts.scratch);
  const received: PayloadCounts = {
    series: index.count,
    samples: index.totalSamples,
    histograms: index.totalHistograms,
    exemplars: index.totalExemplars,
    metadata: index.metadataCount,
  };
  let forwarded = received;
  let checked: Buffer = decoded;
  let changed = false;
  if (opts.checks !== undefined) {
    const c = checkRequest(decoded, index, { ...opts.checks, nowMs: opts.nowMs });
    if (c.first !== undefined) {
      const action = opts.checks.onInvalid === 'reject' ? 'rejected' : 'dropped';
      opts.onInvalid?.(c, action);
      if (action === 'rejected') throw new CardinalError('INVALID_SERIES', c.first.detail);
    }
    if (c.sorted !== undefined) {
      checked = c.sorted;
      changed = true;
    }
    if (c.bad !== undefined) {
      checked = withoutSeries(checked, index, c.bad);
      changed = true;
      index = scan(checked, index);
      forwarded = {
        series: index.count,
        samples: index.totalSamples,
        histograms: index.totalHistograms,
        exemplars: index.totalExemplars,
        metadata: index.metadataCount,
      };
    }
  }
  return { decoded, decodeBuffer, checked, index, received, forwarded, changed };
}

function finishPrepare(
  version: ProtocolVersion,
  body: Uint8Array,
  c: Checked,
  r: ProcessResult | undefined,
  opts: PrepareOptions,
): PrepareResult {
  const { decoded, index, received } = c;
  let forwarded = c.forwarded;
  let raw: Uint8Array = c.checked;
  let changed = c.changed;
  if (r !== undefined) {
    // v1 metadata are top-level records and always forwarded; v2 metadata ride on series, so
    // none is left when every series was dropped (the count is otherwise the request's).
    const metadata = version === '2.0' && r.series === 0 ? 0 : index.metadataCount;
    forwarded = {
      series: r.series,
      samples: r.samples,
      histograms: r.histograms,
      exemplars: r.exemplars,
      metadata,
    };
    if (!r.unchanged) {
      raw = r.body!;
      changed = true;
    }
  }
  const done = (v: ProtocolVersion, out: Uint8Array | undefined) => ({
    prepared: { version: v, body: out, received, forwarded },
    index,
    decodedBytes: decoded.length,
    decodeBuffer: c.decodeBuffer,
  });
  if (forwarded.series === 0 && forwarded.metadata === 0 && received.series > 0)
    return done(version, undefined);
  if (version === '2.0' && opts.upstreamProtocol === '1.0') {
    // Down-conversion for receivers that only speak 1.0: the one path that decodes every field.
    return done('1.0', snappyEncode(encodeWriteRequestV1(requestV2ToWriteRequestV1(decodeRequestV2(raw)))));
  }
  return done(version, changed ? snappyEncode(raw) : body);
}

export function registerRemoteWrite(app: FastifyInstance, deps: RemoteWriteDeps): void {
  let scratch: SeriesIndex | undefined;
  let decodeBuffer: Buffer | undefined;
  const logRejection = createRejectionLogger(10_000);
  const logDropped = rateLimited(10_000);
  const countInvalid = (r: CheckResult, action: 'rejected' | 'dropped'): void => {
    for (const [reason, n] of Object.entries(r.series) as [CheckReason, number][]) {
      deps.metrics.invalid(reason, n, r.samples[reason] ?? 0, action);
    }
    if (action === 'dropped' && r.first !== undefined) {
      const detail = r.first.detail;
      logDropped('invalid', (suppressed) =>
        app.log.warn({ suppressed }, `dropped series a receiver would refuse: ${detail}`),
      );
    }
  };

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    let version: ProtocolVersion | 'unknown' = 'unknown';
    // Aborted when the connection closes before the answer was written: the sender gave up.
    const gone = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) gone.abort();
    });
    deps.metrics.inflight(1);
    // Whether the sender's body may still be read after this handler (by a forward that did not
    // complete, or by the queue): then it is not given back to the pool.
    let keep = false;
    try {
      version = negotiate(request.headers['content-type'], request.headers['content-encoding']);
      const body = request.body instanceof Buffer ? request.body : Buffer.alloc(0);
      // Authenticated, the credential's tenant; otherwise the sender's X-Scope-OrgID.
      const tenant = requestTenant(request);
      let prepared: Prepared;
      // This request owns the scratch index and decode buffer until it is prepared; requests
      // that start while it waits for the limit store scan and decode into their own.
      const mine = scratch;
      const mineBuffer = decodeBuffer;
      scratch = undefined;
      decodeBuffer = undefined;
      try {
        let r = prepareRequestShared(version, body, {
          maxDecodedBytes: deps.maxDecodedBytes,
          upstreamProtocol: deps.upstreamProtocol,
          scratch: mine,
          decodeBuffer: mineBuffer,
          engine: deps.engine,
          tenant: tenant.match,
          nowMs: Date.now(),
          checks: deps.checks,
          onInvalid: countInvalid,
        });
        if (r instanceof Promise) r = await r;
        scratch = r.index;
        decodeBuffer = r.decodeBuffer;
        prepared = r.prepared;
        deps.metrics.received(version, prepared.received, body.length, r.decodedBytes);
      } finally {
        scratch ??= mine;
        decodeBuffer ??= mineBuffer;
        deps.policyStats.flush();
      }

      // A sender that went away is not acknowledged and nothing is sent for it: it retries.
      if (gone.signal.aborted) throw new CardinalError('SENDER_GONE');
      let written: WrittenStats | undefined;
      keep = prepared.body === body;
      if (prepared.body !== undefined && deps.queue !== undefined) {
        const f = prepared.forwarded;
        await deps.queue.append({
          version: prepared.version,
          tenant: tenant.forward,
          enqueuedAtMs: Date.now(),
          series: f.series,
          samples: f.samples,
          histograms: f.histograms,
          exemplars: f.exemplars,
          metadata: f.metadata,
          body: prepared.body,
        });
      } else if (prepared.body !== undefined) {
        const result = await deps.forwarder.send({
          body: prepared.body,
          version: prepared.version,
          tenant: tenant.forward,
          signal: gone.signal,
        });
        // The upstream answered: no attempt is still sending the body.
        keep = false;
        written = result.written;
      }
      deps.metrics.forwarded(version, prepared.forwarded);
      deps.metrics.request(version, 204, 'ok');

      if (version === '2.0') {
        // Remote-write 2.0 "Response": what was written. When the upstream said it (a 2.0
        // receiver), that is the truth; otherwise everything forwarded was accepted. Samples a
        // policy dropped were not written, unless the operator chose to report them as written.
        // Counts are never invented: a receiver that got 2.0 and said nothing (Prometheus 2.42
        // answers 204 to a 2.0 body and stores nothing) wrote nothing the proxy knows of, so no
        // headers are sent and the sender can tell (2.0, "Required Written Response Headers":
        // a 2xx without them to a 2.0 request means an unsupported receiver). A 1.0 receiver's
        // 2xx means everything was written (down-conversion), and so does the durable queue's.
        const dropped = deps.reportDroppedAsWritten ? subtract(prepared.received, prepared.forwarded) : ZERO;
        const base: WrittenStats | undefined =
          written ??
          (prepared.body === undefined || deps.queue !== undefined || prepared.version === '1.0'
            ? prepared.forwarded
            : undefined);
        if (base !== undefined) {
          written = {
            samples: base.samples + dropped.samples,
            histograms: base.histograms + dropped.histograms,
            exemplars: base.exemplars + dropped.exemplars,
          };
          void reply
            .header('X-Prometheus-Remote-Write-Samples-Written', written.samples)
            .header('X-Prometheus-Remote-Write-Histograms-Written', written.histograms)
            .header('X-Prometheus-Remote-Write-Exemplars-Written', written.exemplars);
        }
      }
      return reply.code(204).send();
    } catch (err) {
      if (!(err instanceof CardinalError)) throw err;
      deps.metrics.request(version, err.status, err.code);
      logRejection(request, err);
      if (
        deps.queue !== undefined &&
        (err.code === 'QUEUE_FULL' ||
          err.code === 'QUEUE_FULL_UNAVAILABLE' ||
          err.code === 'QUEUE_DISK_FULL' ||
          err.code === 'QUEUE_WRITE_FAILED')
      ) {
        void reply.header('Retry-After', deps.queue.retryAfterSeconds);
      } else if (err.retryAfterSeconds !== undefined) {
        void reply.header('Retry-After', err.retryAfterSeconds);
      }
      if (version === '2.0' && err.status < 500) {
        // Nothing was written; say so explicitly (remote-write 2.0 "Response").
        void reply
          .header('X-Prometheus-Remote-Write-Samples-Written', 0)
          .header('X-Prometheus-Remote-Write-Histograms-Written', 0)
          .header('X-Prometheus-Remote-Write-Exemplars-Written', 0);
      }
      return reply.code(err.status).type('text/plain; charset=utf-8').send(`${err.message}\n`);
    } finally {
      deps.metrics.inflight(-1);
      if (!keep) deps.bodies?.release(request.body);
    }
  };

  // Overload protection, before the body is read: a request beyond the bounds costs nothing more.
  let inflight = 0;
  let inflightBytes = 0;
  const maxRequests = deps.maxInflightRequests ?? Number.POSITIVE_INFINITY;
  const maxBytes = deps.maxInflightBytes ?? Number.POSITIVE_INFINITY;
  const admit = async (request: FastifyRequest, reply: FastifyReply) => {
    const bytes = Number(request.headers['content-length'] ?? 0) || 0;
    // One request always fits, however large: the body limit bounds it.
    if (inflight >= maxRequests || (inflight > 0 && inflightBytes + bytes > maxBytes)) {
      const err = new CardinalError(
        'OVERLOADED',
        `${inflight} requests with ${inflightBytes} bytes in flight (--max-inflight-requests ${deps.maxInflightRequests ?? 'unbounded'}, --max-inflight-bytes ${deps.maxInflightBytes ?? 'unbounded'})`,
      );
      deps.metrics.request('unknown', err.status, err.code);
      logRejection(request, err);
      return reply
        .code(err.status)
        .header('Retry-After', 1)
        .type('text/plain; charset=utf-8')
        .send(`${err.message}\n`);
    }
    inflight++;
    inflightBytes += bytes;
    reply.raw.once('close', () => {
      inflight--;
      inflightBytes -= bytes;
    });
    return undefined;
  };

  for (const url of REMOTE_WRITE_PATHS) {
    const config = { access: 'ingest', ingestPath: '/api/v1/write' } as const;
    app.post(url, { config, onRequest: admit }, handler);
    app.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url,
      config,
      handler: async (_req, reply) =>
        reply
          .code(405)
          .header('Allow', 'POST')
          .type('text/plain; charset=utf-8')
          .send('method not allowed; use POST\n'),
    });
  }
}

const ZERO: WrittenStats = { samples: 0, histograms: 0, exemplars: 0 };

function subtract(a: PayloadCounts, b: PayloadCounts): WrittenStats {
  return {
    samples: a.samples - b.samples,
    histograms: a.histograms - b.histograms,
    exemplars: a.exemplars - b.exemplars,
  };
}

/**
 * Client errors are logged at debug (the sender is told; a misconfigured sender would flood the
 * log), upstream trouble at warn, at most once per code per 10 s with the number suppressed.
 */
function createRejectionLogger(intervalMs: number) {
  const limited = rateLimited(intervalMs);
  return (request: FastifyRequest, err: CardinalError): void => {
    if (err.status < 500 && err.code !== 'UPSTREAM_REJECTED' && err.code !== 'UPSTREAM_UNSUPPORTED') {
      request.log.debug({ code: err.code, status: err.status }, err.message);
      return;
    }
    limited(err.code, (suppressed) =>
      request.log.warn({ code: err.code, status: err.status, suppressed }, err.message),
    );
  };
}
