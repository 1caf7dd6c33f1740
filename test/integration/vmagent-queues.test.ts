// vmagent with four parallel remote-write queues, through the durable queue, into Debian's
// Prometheus 2.42, with a SIGKILL of the proxy in between (so that vmagent piles up blocks and
// sends them in parallel, out of order between its queues): every sample the target served is in
// Prometheus or accounted for by the persistent out_of_order count, with the door check on and off.

import { describe, expect, it } from 'vitest';
import {
  eventually,
  metricSum,
  startPrometheusReceiver,
  startProxy,
  startTarget,
  startVmagent,
  useCleanup,
} from '../framework/index.js';

describe('vmagent with 4 queues through the durable queue', () => {
  const track = useCleanup('each');

  it.each(['reject', 'off'])(
    '--ingest.invalid %s: every served sample is stored or counted, across a SIGKILL',
    async (mode) => {
      const receiver = track(await startPrometheusReceiver({ version: 2 }));
      const proxy = track(
        await startProxy({
          upstream: receiver.remoteWriteUrl,
          args: (dir) => [
            '--queue.dir',
            `${dir}/queue`,
            '--ingest.invalid',
            mode,
            '--forward.min-backoff',
            '50ms',
            '--forward.max-backoff',
            '500ms',
          ],
        }),
      );
      const target = track(await startTarget({ sequence: { labels: { suite: `vmagent-queues-${mode}` } } }));
      target.setSeries(
        Array.from({ length: 300 }, (_, i) => ({ name: 'vmq_gauge', labels: { i: String(i) }, value: i })),
      );
      const vmagent = track(
        await startVmagent({
          remoteWriteUrl: proxy.writeUrl,
          scrapeTargets: [target.address],
          scrapeInterval: '200ms',
          extraArgs: ['-remoteWrite.queues=4'],
        }),
      );
      await target.waitForServed(10, 60_000);
      proxy.program.kill('SIGKILL');
      await proxy.program.exited();
      await target.waitForServed(target.served().length + 15, 60_000);
      await proxy.start();
      await target.waitForServed(target.served().length + 10, 60_000);
      const served = target.pauseSequence();

      const outOfOrder = () =>
        proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason: 'out_of_order' });
      let missing = 0;
      await eventually(
        async () => {
          expect(await metricSum(vmagent.metricsUrl, 'vmagent_remotewrite_pending_data_bytes')).toBe(0);
          expect(await proxy.metric('cardinal_proxy_queue_oldest_age_seconds')).toBe(0);
          const first = served[0]!;
          const last = served.at(-1)!;
          const lookback = Math.ceil((last.timestampMs - first.timestampMs) / 1000) + 60;
          const [series] = await receiver.rawSamples(
            target.sequenceSelector,
            lookback,
            last.timestampMs + 1000,
          );
          const have = new Set((series?.samples ?? []).map(([t]) => t));
          missing = served.filter((s) => !have.has(s.timestampMs)).length;
          // What is not in Prometheus was refused as out of order, and is counted so.
          expect(missing).toBeLessThanOrEqual(await outOfOrder());
        },
        { timeoutMs: 90_000 },
      );
      for (const reason of ['rejected', 'too_large', 'corrupt', 'retry_exhausted', 'full']) {
        expect(await proxy.metric('cardinal_proxy_queue_dropped_samples_total', { reason }), reason).toBe(0);
      }
      console.log(
        `vmagent 4 queues (--ingest.invalid ${mode}): ${served.length} sequence samples served, ${missing} not in Prometheus; out_of_order samples counted: ${await outOfOrder()}`,
      );
    },
  );
});
