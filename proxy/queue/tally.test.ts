import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DropReason, QueueMetrics } from './metrics.js';
import { DropTally } from './tally.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function recorder() {
  const dropped: [DropReason, number, number][] = [];
  const quiet = () => undefined;
  const metrics: QueueMetrics = {
    appended: quiet,
    refused: quiet,
    dropped: (reason, records, samples) => dropped.push([reason, records, samples]),
    sent: quiet,
    retried: quiet,
    corruption: quiet,
    fsync: quiet,
  };
  return { metrics, dropped };
}
const logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('DropTally', () => {
  it('keeps drop counts in the queue directory; a new process starts its counters from them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-tally-'));
    dirs.push(dir);
    const first = recorder();
    const a = new DropTally(dir, logger);
    const m = a.wrap(first.metrics);
    m.dropped('out_of_order', 1, 10);
    m.dropped('out_of_order', 2, 5);
    m.dropped('rejected', 1, 1);
    await a.flush();
    expect(first.dropped).toEqual([
      ['out_of_order', 1, 10],
      ['out_of_order', 2, 5],
      ['rejected', 1, 1],
    ]);
    expect(JSON.parse(readFileSync(join(dir, 'dropped.json'), 'utf8'))).toEqual({
      out_of_order: { records: 3, samples: 15 },
      rejected: { records: 1, samples: 1 },
    });

    // After a restart: the counters are raised to the kept counts before anything else.
    const second = recorder();
    const b = new DropTally(dir, logger);
    const m2 = b.wrap(second.metrics);
    expect(second.dropped).toEqual([
      ['out_of_order', 3, 15],
      ['rejected', 1, 1],
    ]);
    m2.dropped('out_of_order', 1, 1);
    await b.flush();
    expect(b.counts.out_of_order).toEqual({ records: 4, samples: 16 });
  });

  it('an unreadable file starts from zero instead of stopping the proxy', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-tally-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'dropped.json'), '{not json');
    const r = recorder();
    new DropTally(dir, logger).wrap(r.metrics);
    expect(r.dropped).toEqual([]);
  });
});
