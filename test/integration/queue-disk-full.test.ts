// The durable queue on a file system that fills up: a 20 MiB tmpfs mounted by the test (it runs as
// root), the upstream down, requests until the disk is full. Every acknowledged sample must then
// reach Prometheus exactly once, the proxy must leave the disk-full state by itself (without and
// with a SIGKILL in between), and the space must come back.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWriteRequestV1 } from '../../proxy/codec/proto.js';
import { snappyEncode } from '../../proxy/codec/snappy.js';
import type { TimeSeriesV1 } from '../../proxy/codec/types.js';
import {
  eventually,
  type ProxyProgram,
  startPrometheusReceiver,
  startProxy,
  useCleanup,
} from '../framework/index.js';

const SERIES = 10;
const PER_SERIES = 500;
const MiB = 1 << 20;

/** Request `i`: SERIES series `cardinal_fill{req=i}` with PER_SERIES random (incompressible) samples. */
function request(i: number, t0: number): Uint8Array {
  const timeseries: TimeSeriesV1[] = Array.from({ length: SERIES }, (_, k) => ({
    labels: [
      { name: '__name__', value: 'cardinal_fill' },
      { name: 'req', value: String(i) },
      { name: 's', value: String(k) },
    ],
    samples: Array.from({ length: PER_SERIES }, (_, j) => ({ value: Math.random(), timestamp: t0 + j })),
    exemplars: [],
    histograms: [],
  }));
  return snappyEncode(encodeWriteRequestV1({ timeseries, metadata: [] }));
}

async function post(proxy: ProxyProgram, body: Uint8Array): Promise<{ status: number; text: string }> {
  const res = await fetch(proxy.writeUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    body,
  });
  return { status: res.status, text: await res.text() };
}

const ready = async (proxy: ProxyProgram) => (await fetch(`${proxy.url}/-/ready`)).status;

describe('the durable queue on a full disk', () => {
  const track = useCleanup('all');
  let mount: string;

  beforeAll(() => {
    mount = mkdtempSync(join(tmpdir(), 'cardinal-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mount]);
  });
  afterAll(() => {
    execFileSync('umount', ['-l', mount]);
    rmSync(mount, { recursive: true, force: true });
  });

  it('refuses with 503 once full, delivers every acknowledged sample, and leaves the state by itself, with and without a SIGKILL', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    await receiver.stop();
    const proxy = track(
      await startProxy({
        upstream: receiver.remoteWriteUrl,
        // The default --queue.max-bytes (1 GiB) and segment size (64 MiB) exceed the disk.
        args: () => [
          '--queue.dir',
          join(mount, 'queue'),
          '--forward.min-backoff',
          '50ms',
          '--forward.max-backoff',
          '500ms',
        ],
      }),
    );
    const t0 = Date.now() - 30 * 60_000;
    let next = 0;
    let acknowledged = 0;

    /** Posts until three requests in a row were refused for want of disk; returns what was taken. */
    const fill = async (): Promise<{ accepted: number; refused: number }> => {
      let accepted = 0;
      let refused = 0;
      let inRow = 0;
      while (inRow < 3) {
        expect(next).toBeLessThan(2000);
        const answer = await post(proxy, request(next++, t0));
        if (answer.status === 204) {
          accepted++;
          inRow = 0;
          continue;
        }
        expect(answer.status).toBe(503);
        expect(answer.text).toMatch(/^queue disk full, retry later/);
        refused++;
        inRow++;
      }
      return { accepted, refused };
    };

    // 1: full, not ready, and the counters account for every sample.
    const first = await fill();
    expect(first.accepted).toBeGreaterThan(10);
    acknowledged += first.accepted;
    expect(await ready(proxy)).toBe(503);
    expect(await proxy.metric('cardinal_proxy_queue_disk_full')).toBe(1);
    expect(await proxy.metric('cardinal_proxy_queue_appended_samples_total')).toBe(
      acknowledged * SERIES * PER_SERIES,
    );
    expect(
      await proxy.metric('cardinal_proxy_requests_total', { code: '503', reason: 'QUEUE_DISK_FULL' }),
    ).toBe(first.refused);

    // The upstream comes back: everything is delivered, the space returns, and the proxy is
    // ready and takes data again, without a restart.
    await receiver.start();
    await eventually(async () => expect(await ready(proxy)).toBe(200), { timeoutMs: 120_000 });
    await eventually(
      async () =>
        expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(
          acknowledged * SERIES * PER_SERIES,
        ),
      { timeoutMs: 120_000 },
    );
    await eventually(() => {
      const st = statfsSync(mount);
      expect(st.bavail * st.bsize).toBeGreaterThan(19 * MiB);
    });
    expect((await post(proxy, request(next++, t0))).status).toBe(204);
    acknowledged++;
    expect(await proxy.metric('cardinal_proxy_queue_disk_full')).toBe(0);

    // 2: full again, then SIGKILL; the proxy starts again on the full disk and drains.
    await eventually(async () =>
      expect(await proxy.metric('cardinal_proxy_queue_sent_samples_total')).toBe(
        acknowledged * SERIES * PER_SERIES,
      ),
    );
    await receiver.stop();
    const second = await fill();
    acknowledged += second.accepted;
    proxy.program.kill('SIGKILL');
    await proxy.program.exited();
    await receiver.start();
    await proxy.start();
    // Until the drain frees space, a sender is told to retry, as a real one would.
    await eventually(async () => expect((await post(proxy, request(next++, t0))).status).toBe(204), {
      timeoutMs: 120_000,
    });
    acknowledged++;

    // Prometheus holds every acknowledged sample exactly once, and nothing refused.
    await eventually(
      async () => {
        const [got] = await receiver.query('sum(count_over_time(cardinal_fill[2h]))', t0 + 60_000);
        expect(got?.value).toBe(acknowledged * SERIES * PER_SERIES);
      },
      { timeoutMs: 120_000 },
    );
    const [reqs] = await receiver.query(
      'count(count by (req) (count_over_time(cardinal_fill[2h])))',
      t0 + 60_000,
    );
    expect(reqs?.value).toBe(acknowledged);
    await eventually(() => {
      const st = statfsSync(mount);
      expect(st.bavail * st.bsize).toBeGreaterThan(19 * MiB);
    });
    expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total')).toBe(0);
    console.log(
      `disk-full test: ${acknowledged} requests (${acknowledged * SERIES * PER_SERIES} samples) acknowledged, ${first.refused + second.refused} refused`,
    );
  });
});
