// Assertions shared by the integration tests.

import { expect } from 'vitest';
import { eventually } from './poll.js';
import type { PrometheusReceiver } from './prometheus.js';
import type { ScrapeTarget, ServedSample } from './target.js';

/**
 * Waits until the receiver holds exactly `served` (timestamps and values, nothing lost, nothing
 * added) for the target's sequence, and returns that one series.
 */
export async function expectReceivedExactly(
  receiver: PrometheusReceiver,
  target: ScrapeTarget,
  served: ServedSample[],
  timeoutMs = 20_000,
) {
  const first = served[0];
  const last = served.at(-1);
  if (first === undefined || last === undefined) throw new Error('the target served nothing');
  const lookback = Math.ceil((last.timestampMs - first.timestampMs) / 1000) + 60;
  const expected = served.map((s) => [s.timestampMs, s.value]);
  return eventually(
    async () => {
      const series = await receiver.rawSamples(target.sequenceSelector, lookback, last.timestampMs + 1000);
      expect(series).toHaveLength(1);
      expect(series[0]?.samples).toEqual(expected);
      return series[0]!;
    },
    { timeoutMs },
  );
}
