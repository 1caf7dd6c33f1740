// Proves the test framework against the real programs with nothing in between: each sender
// scrapes the framework's target and remote-writes straight into a Prometheus receiver, and the
// receiver must hold exactly the samples the target served. Later tests put Cardinal in the middle
// and rely on this baseline: any difference they see is the proxy's doing.

import { describe, expect, it } from 'vitest';
import {
  expectReceivedExactly,
  metricSum,
  startPrometheusAgent,
  startPrometheusReceiver,
  startTarget,
  startVmagent,
  startVmagentRelay,
  useCleanup,
} from '../framework/index.js';

const SEQ_LABELS = { suite: 'programs' };

describe('real programs, no proxy', () => {
  const track = useCleanup('each');

  it('Prometheus 2 agent -> Prometheus 2 receiver: every scraped sample arrives with its timestamp and value', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const target = track(await startTarget({ sequence: { labels: SEQ_LABELS } }));
    target.setSeries([{ name: 'cardinal_test_requests_total', labels: { path: '/a "b"\\c' }, value: 42 }]);
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: receiver.remoteWriteUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(6);
    const served = target.pauseSequence();
    const series = await expectReceivedExactly(receiver, target, served);
    expect(series.labels).toEqual({
      __name__: 'cardinal_test_seq_total',
      ...SEQ_LABELS,
      job: 'cardinal-target',
      instance: target.address,
    });

    // The controlled series arrives with its escaped label value intact.
    const [requests, ...rest] = await receiver.query('cardinal_test_requests_total');
    expect(rest).toEqual([]);
    expect(requests?.labels.path).toBe('/a "b"\\c');
    expect(requests?.value).toBe(42);
  });

  it('vmagent -> Prometheus 2 receiver: every scraped sample arrives with its timestamp and value', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const target = track(await startTarget({ sequence: { labels: SEQ_LABELS } }));
    track(await startVmagent({ remoteWriteUrl: receiver.remoteWriteUrl, scrapeTargets: [target.address] }));

    await target.waitForServed(6);
    const served = target.pauseSequence();
    const series = await expectReceivedExactly(receiver, target, served);
    expect(series.labels).toMatchObject({ job: 'cardinal-target', instance: target.address });
  });

  it('Prometheus 3 agent -> Prometheus 3 receiver over remote write 2.0', async () => {
    // The receiver answers anything but io.prometheus.write.v2.Request with 415, which the agent
    // counts as failed samples. Prometheus 3.5.0 stores such samples all the same, so the stored
    // data alone would not show which message arrived.
    const receiver = track(
      await startPrometheusReceiver({
        version: 3,
        acceptedProtobufMessages: ['io.prometheus.write.v2.Request'],
      }),
    );
    const target = track(await startTarget({ sequence: { labels: SEQ_LABELS } }));
    target.setSeries([{ name: 'cardinal_test_requests_total', labels: { path: '/v2' }, value: 7 }]);
    const agent = track(
      await startPrometheusAgent({
        version: 3,
        remoteWriteUrl: receiver.remoteWriteUrl,
        scrapeTargets: [target.address],
        remoteWrite: { protobufMessage: 'io.prometheus.write.v2.Request' },
      }),
    );

    await target.waitForServed(6);
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served);
    const requests = await receiver.query('cardinal_test_requests_total');
    expect(requests.map((s) => s.value)).toEqual([7]);
    // No sample was refused, so every request was a 2.0 one.
    const sent = await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_total');
    const refused = await metricSum(agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total');
    expect(sent).toBeGreaterThanOrEqual(served.length);
    expect(refused).toBe(0);
  });

  it('vmagent relay forwards what a Prometheus 2 agent writes to it, sample for sample', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const relay = track(await startVmagentRelay({ remoteWriteUrl: receiver.remoteWriteUrl }));
    const target = track(await startTarget({ sequence: { labels: SEQ_LABELS } }));
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: relay.writeUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(5);
    const served = target.pauseSequence();
    await expectReceivedExactly(receiver, target, served);
  });

  it('a receiver restarted on the same port and data directory keeps its data and receives again', async () => {
    const receiver = track(await startPrometheusReceiver({ version: 2 }));
    const target = track(await startTarget({ sequence: { labels: SEQ_LABELS } }));
    track(
      await startPrometheusAgent({
        version: 2,
        remoteWriteUrl: receiver.remoteWriteUrl,
        scrapeTargets: [target.address],
      }),
    );

    await target.waitForServed(4);
    const before = target.pauseSequence();
    await expectReceivedExactly(receiver, target, before);

    await receiver.restart();
    // Nothing is being written now, so what is there after the restart came from disk.
    await expectReceivedExactly(receiver, target, before, 5_000);

    // The agent keeps writing to the same address; the restarted receiver takes the new samples.
    target.resumeSequence();
    await target.waitForServed(before.length + 3);
    const after = target.pauseSequence();
    await expectReceivedExactly(receiver, target, after);
  });
});
