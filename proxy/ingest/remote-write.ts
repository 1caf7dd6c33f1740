import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requestV2ToWriteRequestV1 } from '../codec/convert.js';
import { decodeRequestV2, encodeWriteRequestV1 } from '../codec/proto.js';
import { type SeriesIndex, scanRequestV2, scanWriteRequestV1 } from '../codec/scan.js';
import { snappyDecode, snappyEncode } from '../codec/snappy.js';
import { CardinalError } from '../errors.js';
import type { Forwarder, WrittenStats } from '../forward/client.js';
import type { PayloadCounts, ProxyMetrics } from '../stats/metrics.js';
import { negotiate, type ProtocolVersion } from './negotiate.js';

export interface RemoteWriteDeps {
  readonly forwarder: Forwarder;
  readonly metrics: ProxyMetrics;
  readonly maxDecodedBytes: number;
  readonly upstreamProtocol: 'same' | '1.0';
}

/** The ingest paths: Prometheus's own receiver path, and the short alias some senders use. */
export const REMOTE_WRITE_PATHS = ['/api/v1/write', '/write'] as const;

/**
 * A decoded request, ready to forward. The body is the sender's original compressed bytes when
 * nothing had to change, so the common case costs one decompression and one scan, no re-encoding.
 */
interface Prepared {
  readonly version: ProtocolVersion;
  readonly body: Uint8Array;
  readonly counts: PayloadCounts;
}

/**
 * Decodes, validates and prepares one request body. Synchronous on purpose: `scratch` is one
 * SeriesIndex reused by every request, which is safe only because nothing here awaits.
 */
export function prepareRequest(
  version: ProtocolVersion,
  body: Uint8Array,
  opts: { maxDecodedBytes: number; upstreamProtocol: 'same' | '1.0'; scratch: SeriesIndex | undefined },
): { prepared: Prepared; index: SeriesIndex; decodedBytes: number } {
  const decoded = snappyDecode(body, opts.maxDecodedBytes);
  const index =
    version === '1.0' ? scanWriteRequestV1(decoded, opts.scratch) : scanRequestV2(decoded, opts.scratch);
  const counts: PayloadCounts = {
    series: index.count,
    samples: index.totalSamples,
    histograms: index.totalHistograms,
    exemplars: index.totalExemplars,
    metadata: index.metadataCount,
  };
  if (version === '2.0' && opts.upstreamProtocol === '1.0') {
    // Down-conversion for receivers that only speak 1.0: the one path that decodes every field.
    const v1 = encodeWriteRequestV1(requestV2ToWriteRequestV1(decodeRequestV2(decoded)));
    return {
      prepared: { version: '1.0', body: snappyEncode(v1), counts },
      index,
      decodedBytes: decoded.length,
    };
  }
  return { prepared: { version, body, counts }, index, decodedBytes: decoded.length };
}

export function registerRemoteWrite(app: FastifyInstance, deps: RemoteWriteDeps): void {
  let scratch: SeriesIndex | undefined;
  const logRejection = createRejectionLogger(10_000);

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    let version: ProtocolVersion | 'unknown' = 'unknown';
    deps.metrics.inflight(1);
    try {
      version = negotiate(request.headers['content-type'], request.headers['content-encoding']);
      const body = request.body instanceof Buffer ? request.body : Buffer.alloc(0);
      const { prepared, index, decodedBytes } = prepareRequest(version, body, {
        maxDecodedBytes: deps.maxDecodedBytes,
        upstreamProtocol: deps.upstreamProtocol,
        scratch,
      });
      scratch = index;
      deps.metrics.received(version, prepared.counts, body.length, decodedBytes);

      const tenant = headerValue(request.headers['x-scope-orgid']);
      const result = await deps.forwarder.send({ body: prepared.body, version: prepared.version, tenant });
      deps.metrics.forwarded(version, prepared.counts);
      deps.metrics.request(version, 204, 'ok');

      if (version === '2.0') {
        // Remote-write 2.0 "Response": what was written. When the upstream said it (a 2.0
        // receiver), that is the truth; otherwise everything forwarded was accepted.
        const written: WrittenStats = result.written ?? prepared.counts;
        void reply
          .header('X-Prometheus-Remote-Write-Samples-Written', written.samples)
          .header('X-Prometheus-Remote-Write-Histograms-Written', written.histograms)
          .header('X-Prometheus-Remote-Write-Exemplars-Written', written.exemplars);
      }
      return reply.code(204).send();
    } catch (err) {
      if (!(err instanceof CardinalError)) throw err;
      deps.metrics.request(version, err.status, err.code);
      logRejection(request, err);
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
    }
  };

  for (const url of REMOTE_WRITE_PATHS) {
    app.post(url, handler);
    app.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url,
      handler: async (_req, reply) =>
        reply
          .code(405)
          .header('Allow', 'POST')
          .type('text/plain; charset=utf-8')
          .send('method not allowed; use POST\n'),
    });
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Client errors are logged at debug (the sender is told; a misconfigured sender would flood the
 * log), upstream trouble at warn, at most once per code per 10 s with the number suppressed.
 */
function createRejectionLogger(intervalMs: number) {
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  return (request: FastifyRequest, err: CardinalError): void => {
    if (err.status < 500 && err.code !== 'UPSTREAM_REJECTED' && err.code !== 'UPSTREAM_UNSUPPORTED') {
      request.log.debug({ code: err.code, status: err.status }, err.message);
      return;
    }
    const now = Date.now();
    const entry = lastLogged.get(err.code);
    if (entry !== undefined && now - entry.at < intervalMs) {
      entry.suppressed++;
      return;
    }
    lastLogged.set(err.code, { at: now, suppressed: 0 });
    request.log.warn({ code: err.code, status: err.status, suppressed: entry?.suppressed ?? 0 }, err.message);
  };
}
