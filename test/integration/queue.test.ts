// The durable queue (--queue.dir) against real programs: real senders write through the proxy into
// a real Prometheus while the upstream goes away, the proxy is SIGKILLed, and the queue fills.
// PromQL must then show every acknowledged sample exactly once; the proxy's counters must account
// for every sample it refused or dropped.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { TimeSeriesV1 } from '../../proxy/codec/types.js';
import { DiskQueue } from '../../proxy/queue/queue.js';
import {
  eventually,
  expectReceivedExactly,
  type PrometheusReceiver,
  type ProxyProgram,
  startPrometheusAgent,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  useCleanup,
} from '../framework/index.js';

/** Flags that let a restarted upstream be found again within a second. */
const FAST_RETRY = ['--forward.min-backoff', '50ms', '--forward.max-backoff', '500ms'];

async function queuedRecords(proxy: ProxyProgram): Promise<number> {
  return (
    (await proxy.metric('cardinal_proxy_queue_appended_samples_total')) -
    (await proxy.metric('cardinal_proxy_queue_sent_samples_total'))
  );
}

describe('durable queue with real senders', () => {
  const track = useCleanup('each');

  it('an upstream outage: senders keep getting 2xx, and afterwards every sample is in Prometheus exactly once', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, ...FAST_RETRY],
      }),
    );
    const target = track(await startTarget({ sequence: { labels: { suite: 'queue-outage' } } }));
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(4);
    await receiver.stop();
    const servedBeforeRestart = target.served().length;
    await target.waitForServed(servedBeforeRestart + 8, 30_000);
    // The queue holds what the upstream could not take, and it is getting older.
    await eventually(async () => {
      expect(await queuedRecords(proxy)).toBeGreaterThan(0);
      expect(await proxy.metric('cardinal_proxy_queue_oldest_age_seconds')).toBeGreaterThan(0);
    });
    await receiver.start();
    await target.waitForServed(target.served().length + 3, 30_000);
    const served = target.pauseSequence();

    await expectReceivedExactly(receiver, target, served, 60_000);
    // The sender was never told to retry: the queue absorbed the outage.
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '503' })).toBe(0);
    expect(await proxy.metric('cardinal_proxy_queue_retries_total')).toBeGreaterThan(0);
    expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total')).toBe(0);
    expect(await proxy.metric('cardinal_proxy_queue_corruptions_total')).toBe(0);
    // What piled up during the outage went out merged: fewer requests than queued records.
    expect(await proxy.metric('cardinal_proxy_queue_sent_records_total')).toBeGreaterThan(
      await proxy.metric('cardinal_proxy_queue_sent_requests_total'),
    );
  });

  it('SIGKILL of the proxy, with and without data queued: nothing acknowledged is lost (remote-write 2.0)', async () => {
    const receiver = track(
      await startPrometheusReceiver({
        version: 3,
        acceptedProtobufMessages: ['io.prometheus.write.v2.Request'],
      }),
    );
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => ['--queue.dir', `${dir}/queue`, '--queue.batch-max-wait', '500ms', ...FAST_RETRY],
      }),
    );
    const target = track(await startTarget({ sequence: { labels: { suite: 'queue-sigkill' } } }));
    track(
      await startPrometheusAgent({
        version: 3,
        remoteWriteUrl: proxy.writeUrl,
        scrapeTargets: [target.address],
        remoteWrite: { protobufMessage: 'io.prometheus.write.v2.Request' },
      }),
    );

    // 1: killed mid-stream while delivering; the sender retries against the restarted proxy.
    await target.waitForServed(4);
    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await target.waitForServed(target.served().length + 2, 30_000);
    await proxy.start();

    // 2: killed while the queue holds data the upstream never got.
    await target.waitForServed(target.served().length + 2, 30_000);
    await receiver.stop();
    await target.waitForServed(target.served().length + 4, 30_000);
    await eventually(async () => expect(await queuedRecords(proxy)).toBeGreaterThan(0));
    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await proxy.start();
    await receiver.start();
    await target.waitForServed(target.served().length + 3, 30_000);
    const served = target.pauseSequence();

    await expectReceivedExactly(receiver, target, served, 60_000);
    expect(await proxy.metric('cardinal_proxy_queue_corruptions_total', { kind: 'checksum' })).toBe(0);
    // The 2.0 records queued during the outage reached Prometheus 3 as merged requests.
    expect(await proxy.metric('cardinal_proxy_queue_sent_records_total')).toBeGreaterThan(
      await proxy.metric('cardinal_proxy_queue_sent_requests_total'),
    );
  });
});

/** Request `i` of the direct tests: SERIES series `cardinal_queue_test{req=i, s=k}`, one sample each. */
const SERIES = 10;
function request(i: number, t0: number): Uint8Array {
  const timeseries: TimeSeriesV1[] = Array.from({ length: SERIES }, (_, k) => ({
    labels: [
      { name: '__name__', value: 'cardinal_queue_test' },
      { name: 'req', value: String(i).padStart(3, '0') },
      { name: 's', value: String(k) },
    ],
    samples: [{ value: i * SERIES + k, timestamp: t0 + i }],
    exemplars: [],
    histograms: [],
  }));
  return snappyEncode(encodeWriteRequestV1({ timeseries, metadata: [] }));
}

async function post(proxy: ProxyProgram, body: Uint8Array) {
  const res = await fetch(proxy.writeUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'snappy',
      'x-prometheus-remote-write-version': '0.1.0',
    },
    body,
  });
  await res.arrayBuffer();
  return { status: res.status, retryAfter: res.headers.get('retry-after') };
}

/** The request numbers the receiver holds, each series checked to hold exactly its one sample. */
async function receivedRequests(receiver: PrometheusReceiver, t0: number, count: number): Promise<number[]> {
  const series = await receiver.rawSamples('cardinal_queue_test', 3600, t0 + count + 1000);
  const byRequest = new Map<number, number>();
  for (const s of series) {
    const i = Number(s.labels.req);
    expect(s.samples).toEqual([[t0 + i, i * SERIES + Number(s.labels.s)]]);
    byRequest.set(i, (byRequest.get(i) ?? 0) + 1);
  }
  for (const n of byRequest.values()) expect(n).toBe(SERIES);
  return [...byRequest.keys()].sort((a, b) => a - b);
}

describe('a full queue', () => {
  const track = useCleanup('each');
  const COUNT = 60;

  it('reject: senders get 429 with Retry-After and nothing of their request is queued; the counters account for every sample', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    await receiver.stop();
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => [
          ...[
            '--queue.dir',
            `${dir}/queue`,
            '--queue.max-bytes',
            '6000',
            '--queue.segment-max-bytes',
            '1000',
          ],
          ...['--queue.full-retry-after', '7s', ...FAST_RETRY],
        ],
      }),
    );
    const t0 = Date.now() - 60_000;
    const answers: { status: number; retryAfter: string | null }[] = [];
    for (let i = 0; i < COUNT; i++) answers.push(await post(proxy, request(i, t0)));

    const accepted = answers.flatMap((a, i) => (a.status === 204 ? [i] : []));
    const refused = answers.filter((a) => a.status === 429);
    expect(accepted.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(accepted.length + refused.length).toBe(COUNT);
    for (const a of refused) expect(a.retryAfter).toBe('7');
    // Once full, everything after is refused until the upstream drains the queue.
    expect(accepted).toEqual(Array.from({ length: accepted.length }, (_, i) => i));
    expect((await fetch(`${proxy.url}/-/ready`)).status).toBe(503);
    expect(await proxy.metric('cardinal_proxy_queue_full')).toBe(1);
    expect(await proxy.metric('cardinal_proxy_queue_refused_samples_total')).toBe(refused.length * SERIES);
    expect(await proxy.metric('cardinal_proxy_requests_total', { code: '429', reason: 'QUEUE_FULL' })).toBe(
      refused.length,
    );

    await receiver.start();
    await eventually(async () => expect(await receivedRequests(receiver, t0, COUNT)).toEqual(accepted), {
      timeoutMs: 30_000,
    });
    await eventually(async () => expect((await fetch(`${proxy.url}/-/ready`)).status).toBe(200));
    expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(accepted.length * SERIES);
    expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total')).toBe(0);
    // With room again, new data is taken.
    expect((await post(proxy, request(COUNT, t0))).status).toBe(204);
  });

  it('drop-oldest: senders always get 2xx; the oldest data is dropped, counted, and the newest arrives', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    await receiver.stop();
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        args: (dir) => [
          ...[
            '--queue.dir',
            `${dir}/queue`,
            '--queue.max-bytes',
            '6000',
            '--queue.segment-max-bytes',
            '1000',
          ],
          ...['--queue.full-policy', 'drop-oldest', ...FAST_RETRY],
        ],
      }),
    );
    const t0 = Date.now() - 60_000;
    for (let i = 0; i < COUNT; i++) expect((await post(proxy, request(i, t0))).status).toBe(204);
    const dropped = await proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'full' });
    expect(dropped).toBeGreaterThan(0);
    expect(dropped % SERIES).toBe(0);
    expect((await fetch(`${proxy.url}/-/ready`)).status).toBe(200);

    await receiver.start();
    // What arrives is exactly the newest requests: the dropped ones are the oldest.
    const keptFrom = COUNT - (COUNT * SERIES - dropped) / SERIES;
    const newest = Array.from({ length: COUNT - keptFrom }, (_, i) => keptFrom + i);
    await eventually(async () => expect(await receivedRequests(receiver, t0, COUNT)).toEqual(newest), {
      timeoutMs: 30_000,
    });
    expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(newest.length * SERIES);
  });
});

/**
 * A process that appends records to a queue as fast as it can, 16 appends in flight, and prints
 * the number of each record once `append` resolved: what the proxy would have acknowledged.
 */
const APPENDER = `
const { DiskQueue } = await import(process.argv[1]);
const [dir, firstId] = [process.argv[2], Number(process.argv[3])];
const quiet = () => undefined;
const q = await DiskQueue.open({
  dir, maxBytes: 1 << 30, segmentMaxBytes: 64 << 10, fullPolicy: 'reject', fullCode: 'QUEUE_FULL',
  metrics: { appended: quiet, refused: quiet, dropped: quiet, sent: quiet, retried: quiet, corruption: quiet, fsync: quiet },
  logger: { info: quiet, warn: quiet, error: quiet },
});
process.stdout.write('open\\n');
let next = firstId;
const worker = async () => {
  for (;;) {
    const id = next++;
    const body = Buffer.alloc(200 + (id % 13) * 97, id % 251);
    await q.append({ version: '1.0', tenant: undefined, enqueuedAtMs: id, series: 1, samples: 1,
      histograms: 0, exemplars: 0, metadata: 0, body });
    process.stdout.write(id + '\\n');
  }
};
await Promise.all(Array.from({ length: 16 }, worker));
`;

describe('the queue under SIGKILL', () => {
  it('a process killed at random moments while appending loses no acknowledged record and duplicates none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-queue-crash-'));
    const queueModule = fileURLToPath(new URL('../../dist/proxy/queue/queue.js', import.meta.url));
    const acked = new Set<number>();
    let firstId = 0;
    try {
      for (let round = 0; round < 8; round++) {
        const child = spawn(
          process.execPath,
          ['--input-type=module', '-e', APPENDER, queueModule, dir, String(firstId)],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        let buffered = '';
        let opened = false;
        child.stdout.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          for (const l of lines) {
            if (l === 'open') opened = true;
            else acked.add(Number(l));
          }
        });
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        for (let i = 0; i < 200 && !opened; i++) await sleep(25);
        expect(opened).toBe(true);
        await sleep(50 + Math.floor(Math.random() * 400));
        child.kill('SIGKILL');
        await exited;
        // Ids of the next round start far above anything this one could have used.
        firstId += 1_000_000;
      }
      expect(acked.size).toBeGreaterThan(100);
      console.log(`crash test: ${acked.size} records acknowledged over 8 kills`);

      const corruptions: string[] = [];
      const quiet = () => undefined;
      const q = await DiskQueue.open({
        dir,
        maxBytes: 1 << 30,
        segmentMaxBytes: 64 << 10,
        fullPolicy: 'reject',
        fullCode: 'QUEUE_FULL',
        metrics: {
          appended: quiet,
          refused: quiet,
          dropped: quiet,
          sent: quiet,
          retried: quiet,
          corruption: (kind) => corruptions.push(kind),
          fsync: quiet,
        },
        logger: { info: quiet, warn: quiet, error: quiet },
      });
      const found: number[] = [];
      const damaged: number[] = [];
      let pos = q.acked;
      for (;;) {
        const r = await q.read(pos);
        if (r === undefined) break;
        const id = r.entry.enqueuedAtMs;
        // Every record is whole: its body is what the appender wrote for its id.
        if (!Buffer.from(r.entry.body).equals(Buffer.alloc(200 + (id % 13) * 97, id % 251))) damaged.push(id);
        found.push(id);
        pos = r.end;
      }
      await q.close();
      expect(damaged).toEqual([]);
      const foundSet = new Set(found);
      expect(foundSet.size).toBe(found.length);
      const lost = [...acked].filter((id) => !foundSet.has(id));
      expect(lost).toEqual([]);
      // A kill can tear the record being written; nothing else may be damaged.
      expect(corruptions.filter((k) => k !== 'truncated')).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
