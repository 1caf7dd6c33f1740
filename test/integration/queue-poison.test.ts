// One request the upstream keeps failing with a 5xx, among good ones, through the durable queue:
// the good ones must arrive within seconds (no head-of-line blocking), the bad one must be retried
// alone, become a dead letter, be listed by the API, survive a SIGKILL, and go out again when it
// is put back after the upstream was fixed. Once with an upstream of the test's own, once with
// Debian's Prometheus 2.42 answering 500 to a repeated label name (the door check is off, so that
// the data reaches the queue as data the proxy cannot know to be bad would).

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyDecode, snappyEncode } from '../../proxy/codec/snappy.js';
import type { Label } from '../../proxy/codec/types.js';
import {
  type Closable,
  eventually,
  type ProxyProgram,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const FAST = [
  '--forward.min-backoff',
  '50ms',
  '--forward.max-backoff',
  '300ms',
  '--queue.batch-max-wait',
  '300ms',
];

function body(labels: Label[], t: number, v: number): Uint8Array {
  return snappyEncode(
    encodeWriteRequestV1({
      timeseries: [{ labels, samples: [{ value: v, timestamp: t }], exemplars: [], histograms: [] }],
      metadata: [],
    }),
  );
}

async function post(proxy: ProxyProgram, b: Uint8Array): Promise<number> {
  const res = await fetch(proxy.writeUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    body: b,
  });
  await res.arrayBuffer();
  return res.status;
}

interface Letter {
  id: number;
  status: string;
  reason: string | null;
  attempts: number;
  lastError: string;
  samples: number;
}

async function letters(proxy: ProxyProgram): Promise<Letter[]> {
  const res = await fetch(`${proxy.url}/api/v1/queue/dead-letter`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { deadLetters: Letter[] }).deadLetters;
}

const good = (i: number): Label[] => [
  { name: '__name__', value: 'hol_good' },
  { name: 'i', value: String(i) },
];

/** A remote-write receiver that answers 500 to any request holding a series labelled poison="1". */
async function startPickyUpstream(): Promise<Closable & { url: string; got: Set<string>; fixed: boolean }> {
  const state = { got: new Set<string>(), fixed: false };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const wr = decodeWriteRequestV1(snappyDecode(Buffer.concat(chunks), 1 << 26));
      const poisoned = wr.timeseries.some((t) =>
        t.labels.some((l) => l.name === 'poison' && l.value === '1'),
      );
      if (poisoned && !state.fixed) {
        res.writeHead(500).end('cannot store this\n');
        return;
      }
      for (const t of wr.timeseries) state.got.add(t.labels.map((l) => `${l.name}=${l.value}`).join(','));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/api/v1/write`,
    dirs: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

describe('a poison request among good ones, through the durable queue', () => {
  const track = useCleanup('each');

  it('own upstream: the good ones arrive at once; the bad one is retried alone, becomes a dead letter, survives SIGKILL and is delivered when put back', async () => {
    const upstream = track(await startPickyUpstream());
    const proxy = track(
      await startProxy({
        upstream: upstream.url,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--queue.max-retry-attempts', '4', ...FAST],
      }),
    );
    const t = Date.now() - 10_000;
    const answers: number[] = [];
    for (let i = 0; i < 51; i++) {
      const labels = i === 5 ? [...good(i), { name: 'poison', value: '1' }] : good(i);
      answers.push(await post(proxy, body(labels, t, i)));
    }
    expect(answers.every((s) => s === 204)).toBe(true);
    // Every good request arrives, while the poison one keeps failing.
    await eventually(() => expect(upstream.got.size).toBe(50), { timeoutMs: 20_000 });
    await eventually(async () => {
      const [l] = await letters(proxy);
      expect(l).toMatchObject({ status: 'dead', reason: 'retry_exhausted', attempts: 4, samples: 1 });
      expect(l?.lastError).toMatch(/^500 cannot store this/);
    });
    expect(
      await proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'retry_exhausted' }),
    ).toBe(1);

    // A SIGKILL keeps the dead letter and its count.
    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await proxy.start();
    const [kept] = await letters(proxy);
    expect(kept).toMatchObject({ status: 'dead', samples: 1 });
    expect(
      await proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'retry_exhausted' }),
    ).toBe(1);
    const status = (await (await fetch(`${proxy.url}/api/v1/status/queue`)).json()) as {
      queues: {
        remote_write: { deadLetters: { dead: number }; dropped: Record<string, { samples: number }> };
      };
    };
    expect(status.queues.remote_write.deadLetters.dead).toBe(1);
    expect(status.queues.remote_write.dropped.retry_exhausted?.samples).toBe(1);

    // Fixed upstream, put back: delivered, and the dead letters are empty.
    upstream.fixed = true;
    expect((await fetch(`${proxy.url}/api/v1/queue/dead-letter/requeue`, { method: 'POST' })).status).toBe(
      400,
    );
    const put = await fetch(`${proxy.url}/api/v1/queue/dead-letter/requeue?id=${kept!.id}`, {
      method: 'POST',
    });
    expect(await put.json()).toEqual({ requeued: 1 });
    await eventually(() => expect(upstream.got.size).toBe(51));
    expect(await letters(proxy)).toEqual([]);
  });

  it('Prometheus 2.42: one request with a repeated label name among 60 good ones; all 60 arrive, the bad one is a dead letter', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => [
          '--queue.dir',
          `${dir}/queue`,
          '--ingest.invalid',
          'off',
          '--queue.max-retry-attempts',
          '3',
          ...FAST,
        ],
      }),
    );
    const t = Date.now() - 10_000;
    for (let i = 0; i < 61; i++) {
      const labels =
        i === 7
          ? [
              { name: '__name__', value: 'hol_good' },
              { name: 'i', value: '7' },
              { name: 'i', value: 'again' },
            ]
          : good(i);
      expect(await post(proxy, body(labels, t, i))).toBe(204);
    }
    await eventually(
      async () => {
        const got = await receiver.rawSamples('hol_good', 3600, t + 60_000);
        expect(got.map((s) => Number(s.labels.i)).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 61 }, (_, i) => i).filter((i) => i !== 7),
        );
      },
      { timeoutMs: 30_000 },
    );
    await eventually(async () => {
      const [l] = await letters(proxy);
      expect(l).toMatchObject({ status: 'dead', reason: 'retry_exhausted', samples: 1 });
      expect(l?.lastError).toMatch(/^500 /);
    });
  });
});
