import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PushForwarder, type PushRequest } from '../forward/pushgateway.js';
import type { QueueMetrics } from './metrics.js';
import { decodePushOp, encodePushOp, PushDrain } from './push.js';
import { DiskQueue } from './queue.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('push operations', () => {
  it.each<PushRequest>([
    { method: 'PUT', path: '/metrics/job/a', body: 'x 1\n' },
    { method: 'POST', path: '/metrics/job/a/instance@base64/aG9zdC8x', body: '' },
    { method: 'DELETE', path: '/metrics/job/%C3%A9' },
  ])('round-trips $method $path', (op) => {
    const back = decodePushOp(encodePushOp(op));
    expect({
      ...back,
      body: back.body === undefined ? undefined : Buffer.from(back.body).toString(),
    }).toEqual({
      ...op,
      body: op.body,
    });
  });

  it.each([
    ['an unknown method', Uint8Array.from([9, 1, 0, 0x2f]), 'not a push operation'],
    ['a path past the end', Uint8Array.from([1, 50, 0, 0x2f]), 'shorter than its path'],
    [
      'no grouping path',
      encodePushOp({ method: 'PUT', path: '/other', body: '' }),
      'without a grouping path',
    ],
  ])('refuses %s', (_name, bytes, message) => {
    expect(() => decodePushOp(bytes)).toThrow(message);
  });
});

/** A Pushgateway stand-in that records what it got and answers with `answer`. */
async function gateway(answer: (n: number) => number) {
  const got: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = answer(got.length);
      got.push(`${status} ${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`.trim());
      res.writeHead(status);
      res.end(status === 400 ? 'inconsistent' : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

async function setup(dir: string, url: string) {
  const counts = { sent: 0, dropped: 0, retried: 0 };
  const metrics: QueueMetrics = {
    appended: () => undefined,
    refused: () => undefined,
    dropped: (_reason, records) => {
      counts.dropped += records;
    },
    sent: (records) => {
      counts.sent += records;
    },
    retried: () => {
      counts.retried++;
    },
    corruption: () => undefined,
    fsync: () => undefined,
  };
  const logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const queue = await DiskQueue.open({
    dir,
    maxBytes: 1 << 20,
    segmentMaxBytes: 1 << 14,
    fullPolicy: 'reject',
    fullCode: 'QUEUE_FULL',
    metrics,
    logger,
  });
  const forwarder = new PushForwarder({
    url,
    retry: { minBackoffMs: 1, maxBackoffMs: 5, budgetMs: 30 },
    attemptTimeoutMs: 1000,
    connections: 1,
    userAgent: 'test',
    metrics: { pushAttempt: () => undefined },
  });
  const drain = new PushDrain({
    queue,
    forwarder,
    metrics,
    logger,
    retry: { minBackoffMs: 1, maxBackoffMs: 5 },
  });
  const append = (op: PushRequest) =>
    queue.append({
      version: '1.0',
      tenant: undefined,
      enqueuedAtMs: Date.now(),
      series: 1,
      samples: 1,
      histograms: 0,
      exemplars: 0,
      metadata: 0,
      body: encodePushOp(op),
    });
  const close = async () => {
    await drain.close();
    await queue.close();
    await forwarder.close();
  };
  return { queue, drain, append, counts, close };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}

describe('PushDrain', () => {
  it('delivers in order, retries an unavailable Pushgateway, and drops what it refuses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-push-queue-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // The second push meets a Pushgateway that is down for a while; the third is refused.
    const gw = await gateway((n) => (n >= 1 && n <= 3 ? 503 : n === 5 ? 400 : 200));
    const q = await setup(dir, gw.url);
    cleanup.push(q.close);
    await q.append({ method: 'PUT', path: '/metrics/job/a', body: 'x 1\n' });
    await q.append({ method: 'POST', path: '/metrics/job/a', body: 'y 2\n' });
    await q.append({ method: 'PUT', path: '/metrics/job/b', body: 'z 3\n' });
    await q.append({ method: 'DELETE', path: '/metrics/job/a' });
    q.drain.start();
    await until(() => q.queue.drained);
    expect(gw.got).toEqual([
      '200 PUT /metrics/job/a x 1',
      '503 POST /metrics/job/a y 2',
      '503 POST /metrics/job/a y 2',
      '503 POST /metrics/job/a y 2',
      '200 POST /metrics/job/a y 2',
      '400 PUT /metrics/job/b z 3',
      '200 DELETE /metrics/job/a',
    ]);
    expect(q.counts).toMatchObject({ sent: 3, dropped: 1 });
  });

  it('keeps undelivered pushes across a restart and delivers them then', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-push-queue-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const down = await gateway(() => 503);
    const first = await setup(dir, down.url);
    await first.append({ method: 'PUT', path: '/metrics/job/a', body: 'x 1\n' });
    await first.append({ method: 'PUT', path: '/metrics/job/b', body: 'x 2\n' });
    first.drain.start();
    await until(() => down.got.length > 0);
    await first.close();

    const up = await gateway(() => 200);
    const second = await setup(dir, up.url);
    cleanup.push(second.close);
    second.drain.start();
    await until(() => second.queue.drained);
    expect(up.got).toEqual(['200 PUT /metrics/job/a x 1', '200 PUT /metrics/job/b x 2']);
  });
});
