// The Pushgateway-protocol ingest adapter (Pushgateway README, "API"): PUT, POST and DELETE on
// `/metrics/job/<job>{/<label>/<value>}`. A push is parsed strictly, linted, and run through the
// policies; one with problems is answered 400 with every problem and its line, and nothing of it
// is forwarded (unless lint is in warn mode). What is left is forwarded to the Pushgateway with
// the same method and grouping key, and the Pushgateway's answer is the sender's answer.

import { gunzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requestTenant } from '../../auth/http.js';
import type { SeriesIndex } from '../../codec/scan.js';
import { CardinalError } from '../../errors.js';
import type { PushForwarder, PushRequest } from '../../forward/pushgateway.js';
import type { PolicyEngine } from '../../pipeline/engine.js';
import { encodePushOp } from '../../queue/push.js';
import type { IngestQueue } from '../../queue/queue.js';
import type { ProxyMetrics } from '../../stats/metrics.js';
import type { PolicyStats } from '../../stats/policy-stats.js';
import {
  type ExpositionFormat,
  formatProblems,
  lintFamilies,
  type Problem,
  parseExposition,
} from '../exposition/index.js';
import { groupingPath, PUSH_PREFIX, parseGroupingKey } from './grouping.js';
import { applyPushPolicies, storedLabelSets } from './policies.js';
import { isProtobufPush, protobufPushToText } from './protobuf.js';
import { renderText, textFamilies } from './render.js';
import { type StandardsFindings, standardsProblems } from './standards.js';

/** reject: a push with lint problems is refused. warn: it is forwarded and the problems reported. */
export type LintMode = 'reject' | 'warn';

export interface PushgatewayDeps {
  readonly pushForwarder: PushForwarder;
  readonly metrics: ProxyMetrics;
  readonly maxDecodedBytes: number;
  readonly engine: PolicyEngine;
  readonly policyStats: PolicyStats;
  readonly lintMode: LintMode;
  /**
   * With --queue.dir: checked pushes are answered once durably queued (200, or 202 for DELETE, as
   * the Pushgateway answers) and delivered in order by the push queue's drain loop.
   */
  readonly queue?: IngestQueue | undefined;
}

/**
 * Push routes need an ingest credential, whose allowedPaths are matched against the canonical
 * grouping path: the group the push is for, however its key was spelled.
 */
const PUSH_ACCESS = {
  access: 'ingest',
  ingestPath: (target: string) => {
    const parsed = parseGroupingKey(target.split('?', 1)[0] as string);
    return parsed.ok ? groupingPath(parsed.key) : undefined;
  },
} as const;

/** Parse problems and these can never be forwarded: the Pushgateway itself refuses them. */
const HARD_RULES: ReadonlySet<string> = new Set(['timestamp']);

export function registerPushgateway(app: FastifyInstance, deps: PushgatewayDeps): void {
  let scratch: SeriesIndex | undefined;

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    deps.metrics.inflight(1);
    try {
      const method = request.method as 'PUT' | 'POST' | 'DELETE';
      const rawPath = (request.raw.url ?? '').split('?', 1)[0]!;
      const parsedKey = parseGroupingKey(rawPath);
      if (!parsedKey.ok) throw new CardinalError('INVALID_GROUPING_KEY', parsedKey.reason);
      const key = parsedKey.key;
      const path = groupingPath(key);

      if (method === 'DELETE') {
        if (deps.queue !== undefined) {
          await enqueue(deps.queue, { method, path }, 0);
          deps.metrics.request('pushgateway', 202, 'ok');
          return relay(reply, 202, '');
        }
        const res = await deps.pushForwarder.send({ method, path });
        deps.metrics.request('pushgateway', res.status, res.status < 300 ? 'ok' : 'PUSHGATEWAY_ANSWER');
        return relay(reply, res.status, res.body);
      }

      const raw = request.body instanceof Buffer ? request.body : Buffer.alloc(0);
      const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      const decoded = decodeBody(raw, encoding, deps.maxDecodedBytes);
      const protobuf = isProtobufPush(request.headers['content-type']);
      const format = protobuf ? 'text' : pushFormat(request.headers['content-type']);
      const text = protobuf ? protobufPushToText(decoded) : utf8(decoded);

      const parsed = parseExposition(text, format);
      const problems: Problem[] = [...parsed.problems];
      for (const f of parsed.families) {
        for (const s of f.samples) {
          if (s.timestampMs !== undefined) {
            problems.push({
              line: s.line,
              message: 'pushed metrics must not have timestamps; the Pushgateway refuses them',
              rule: 'timestamp',
            });
          }
        }
      }
      const parseFailed = problems.length > 0;
      // Linted even when some lines did not parse, so the answer lists every problem at once.
      const lint = lintFamilies(parsed.families);
      const tenant = requestTenant(request);
      const stored = parseFailed || deps.engine.pipeline.empty ? [] : storedLabelSets(parsed.families, key);
      const standards: StandardsFindings = parseFailed
        ? { rejected: [], reported: [], count: () => {} }
        : standardsProblems(deps.engine, parsed.families, stored, tenant.match);
      problems.push(...lint, ...standards.rejected);

      const hard = parseFailed || problems.some((p) => HARD_RULES.has(p.rule));
      if (hard || (problems.length > 0 && deps.lintMode === 'reject')) {
        deps.metrics.pushProblems(problems, 'rejected');
        standards.count(deps.policyStats);
        deps.policyStats.flush();
        deps.metrics.request('pushgateway', 400, 'INVALID_PUSH');
        const n = problems.length;
        const where = protobuf ? ' (lines of the protobuf push rendered in the text format)' : '';
        return reply
          .code(400)
          .type('text/plain; charset=utf-8')
          .send(
            `push rejected, nothing was forwarded: ${n} problem${n === 1 ? '' : 's'}${where}\n${formatProblems(problems)}`,
          );
      }

      let result: Awaited<ReturnType<typeof applyPushPolicies>>;
      // While the shared limit store is asked, another push gets a scratch index of its own.
      const mine = scratch;
      scratch = undefined;
      try {
        const r = applyPushPolicies({
          engine: deps.engine,
          families: parsed.families,
          stored,
          tenant: tenant.match,
          nowMs: Date.now(),
          scratch: mine,
        });
        result = r instanceof Promise ? await r : r;
        scratch = result.index;
      } finally {
        scratch ??= mine;
        deps.policyStats.flush();
      }
      const counts = {
        series: result.received,
        samples: result.received,
        histograms: 0,
        exemplars: 0,
        metadata: 0,
      };
      deps.metrics.received('pushgateway', counts, raw.length, decoded.length, encoding);

      // Byte for byte when nothing changed and the body is already what the Pushgateway reads;
      // OpenMetrics and changed pushes are rendered in the text format.
      const body =
        result.unchanged && format === 'text' && encoding === 'identity' && !protobuf
          ? decoded
          : renderText(
              result.series,
              textFamilies(parsed.families, format),
              new Set(key.labels.map(([n]) => n)),
            );
      const res =
        deps.queue === undefined
          ? await deps.pushForwarder.send({ method, path, body })
          : await enqueue(deps.queue, { method, path, body }, result.series.length);
      const ok = res.status < 300;
      if (ok) {
        deps.metrics.forwarded('pushgateway', {
          ...counts,
          series: result.series.length,
          samples: result.series.length,
        });
      }
      const warnings = [...problems, ...standards.reported];
      if (warnings.length > 0) deps.metrics.pushProblems(warnings, 'warned');
      deps.metrics.request('pushgateway', res.status, ok ? 'ok' : 'PUSHGATEWAY_ANSWER');
      if (!ok || warnings.length === 0) return relay(reply, res.status, res.body);
      const lines = formatProblems(warnings)
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => `warning: ${l}\n`)
        .join('');
      return reply.code(res.status).type('text/plain; charset=utf-8').send(`${res.body}${lines}`);
    } catch (err) {
      if (!(err instanceof CardinalError)) throw err;
      deps.metrics.request('pushgateway', err.status, err.code);
      if (deps.queue !== undefined && (err.code === 'QUEUE_FULL' || err.code === 'QUEUE_FULL_UNAVAILABLE')) {
        void reply.header('Retry-After', deps.queue.retryAfterSeconds);
      }
      return reply.code(err.status).type('text/plain; charset=utf-8').send(`${err.message}\n`);
    } finally {
      deps.metrics.inflight(-1);
    }
  };

  for (const prefix of [PUSH_PREFIX, `${PUSH_PREFIX}@base64`]) {
    app.route({
      method: ['PUT', 'POST', 'DELETE'],
      url: `${prefix}/*`,
      config: PUSH_ACCESS,
      handler,
    });
    app.route({
      method: ['GET', 'PATCH'],
      url: `${prefix}/*`,
      config: PUSH_ACCESS,
      handler: async (_req, reply) =>
        reply
          .code(405)
          .header('Allow', 'PUT, POST, DELETE')
          .type('text/plain; charset=utf-8')
          .send('method not allowed; use PUT, POST or DELETE\n'),
    });
  }
}

/** Queues a checked push; resolves with the answer the Pushgateway gives a push it takes. */
async function enqueue(queue: IngestQueue, op: PushRequest, samples: number) {
  await queue.append({
    version: '1.0',
    tenant: undefined,
    enqueuedAtMs: Date.now(),
    series: samples,
    samples,
    histograms: 0,
    exemplars: 0,
    metadata: 0,
    body: encodePushOp(op),
  });
  return { status: 200, body: '' };
}

function relay(reply: FastifyReply, status: number, body: string) {
  return reply.code(status).type('text/plain; charset=utf-8').send(body);
}

/**
 * The body's format, from its Content-Type: the text format (any `version`, or no Content-Type at
 * all, as `curl --data-binary` sends) or OpenMetrics; delimited protobuf is told apart before.
 * Anything else is refused with 415 and the formats that are accepted.
 */
export function pushFormat(contentType: string | undefined): ExpositionFormat {
  const media = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (media === '' || media === 'text/plain' || media === 'application/x-www-form-urlencoded') return 'text';
  if (media === 'application/openmetrics-text') return 'openmetrics';
  throw new CardinalError(
    'UNSUPPORTED_CONTENT_TYPE',
    `"${media.slice(0, 80)}"; push the text format (text/plain; version=0.0.4), OpenMetrics (application/openmetrics-text) or delimited protobuf (application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited)`,
  );
}

function decodeBody(raw: Buffer, encoding: string, maxDecodedBytes: number): Buffer {
  if (encoding === 'identity' || encoding === '') return raw;
  if (encoding !== 'gzip')
    throw new CardinalError('UNSUPPORTED_ENCODING', `"${encoding.slice(0, 40)}"; use gzip or none`);
  try {
    return gunzipSync(raw, { maxOutputLength: maxDecodedBytes });
  } catch (err) {
    if (err instanceof RangeError || (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new CardinalError('BODY_TOO_LARGE', `more than ${maxDecodedBytes} bytes once decompressed`);
    }
    throw new CardinalError('INVALID_PUSH', `body is not valid gzip: ${(err as Error).message}`);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function utf8(bytes: Buffer): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new CardinalError('INVALID_PUSH', 'body is not valid UTF-8');
  }
}
