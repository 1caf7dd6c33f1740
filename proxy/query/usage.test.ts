import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { IngestRow } from '../stats/offenders.js';
import { addExpression, emptyReads } from './extract.js';
import { orphanedStateFiles, UsageService } from './usage.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const logger = pino({ level: 'silent' });

function service(
  stateFile: string | undefined,
  now: { t: number },
  known: string[] = [],
  takeOver: string[] = [],
) {
  return new UsageService({
    recorder: { maxMetrics: 100, maxReaders: 10, readersPerMetric: 3 },
    stateFile,
    takeOver,
    saveIntervalMs: 60_000,
    known: { generation: () => known.length, names: () => known },
    upstreamNamesKnown: () => known.length > 0,
    logger,
    now: () => now.t,
  });
}

const read = (s: UsageService, expr: string, reader: string, t: number) => {
  const r = emptyReads();
  addExpression(r, expr);
  s.record(r, reader, t);
};

const ingest: Record<string, IngestRow> = {
  big_unread: { activeSeries: 1000, samplesPerSecond: 100, droppedSamples: 0 },
  cheap_read: { activeSeries: 10, samplesPerSecond: 1, droppedSamples: 5 },
  costly_read: { activeSeries: 1000, samplesPerSecond: 10, droppedSamples: 0 },
};
const lookup = { lookup: (n: string) => ingest[n], largest: () => Object.keys(ingest) };

describe('UsageService', () => {
  it('joins reads with ingest: unread expensive metrics first by cost, missing ones apart', () => {
    const now = { t: T0 };
    const s = service(undefined, now, ['big_unread', 'cheap_read', 'costly_read']);
    read(s, 'cheap_read + costly_read', 'dashboard:a', T0);
    read(s, 'cheap_read', 'dashboard:b', T0);
    read(s, 'typo_metric', 'agent:curl', T0);
    const r = s.report({ limit: 10, readers: 5, sort: 'cost' }, lookup, true);
    expect(r.metrics.map((m) => [m.metric, m.costPerRead])).toEqual([
      ['big_unread', null],
      ['costly_read', 10000],
      ['cheap_read', 5],
      ['typo_metric', null],
    ]);
    expect(r.missing).toEqual([{ metric: 'typo_metric', reads30d: 1, lastRead: new Date(T0).toISOString() }]);
    expect(r.metrics.find((m) => m.metric === 'cheap_read')).toMatchObject({
      reads: { '1h': 2, '24h': 2, '30d': 2, total: 2 },
      ingest: ingest.cheap_read,
      known: true,
    });
    expect(
      s.report({ limit: 1, readers: 0, sort: 'reads' }, lookup, true).metrics.map((m) => m.metric),
    ).toEqual(['cheap_read']);
  });

  it('writes its state file and a new service continues from it; a broken one starts afresh', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'usage-')), 'usage-state.json');
    const now = { t: T0 };
    const s = service(file, now);
    read(s, 'up', 'agent:a', T0);
    await s.close();
    now.t = T0 + 20 * 86_400_000;
    const again = service(file, now);
    const [row] = again.report(
      { limit: 10, readers: 5, sort: 'reads' },
      { lookup: () => undefined, largest: () => [] },
      true,
    ).metrics;
    expect(row).toMatchObject({
      metric: 'up',
      reads: { '24h': 0, '30d': 1 },
      lastRead: new Date(T0).toISOString(),
    });
    expect(again.report({ limit: 1, readers: 0, sort: 'reads' }, lookup, true).since).toBe(
      new Date(T0).toISOString(),
    );
    expect(JSON.parse(readFileSync(file, 'utf8')).recorder.version).toBe(1);
    writeFileSync(file, '{"recorder":{"version":7}}');
    expect(service(file, now).recorder.trackedMetrics).toBe(0);
  });
});

describe('taking over the read counts of former workers', () => {
  const entries = ['usage.json', 'usage.json.worker-0', 'usage.json.worker-1', 'usage.json.worker-2'];
  it.each([
    [
      'one process: every worker file',
      undefined,
      ['usage.json.worker-0', 'usage.json.worker-1', 'usage.json.worker-2'],
    ],
    [
      'worker 0 of 2: worker-2 and the single process file',
      { index: 0, count: 2 },
      ['usage.json', 'usage.json.worker-2'],
    ],
    ['worker 1 of 2: nothing (worker-1 is its own)', { index: 1, count: 2 }, []],
    ['worker 1 of 3: nothing', { index: 1, count: 3 }, []],
    [
      'worker 0 of 1 is one process',
      undefined,
      ['usage.json.worker-0', 'usage.json.worker-1', 'usage.json.worker-2'],
    ],
  ])('%s', (_name, worker, want) => {
    expect(orphanedStateFiles('/s/usage.json', entries, worker)).toEqual(want.map((n) => `/s/${n}`));
  });

  it('ignores names that are not a former worker state', () => {
    expect(
      orphanedStateFiles(
        '/s/usage.json',
        ['usage.json.worker-3.tmp', 'usage.json.worker-x', 'other.worker-1'],
        undefined,
      ),
    ).toEqual([]);
  });

  it('adds the orphans counts to its own, saves them, and removes the orphans', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usage-takeover-'));
    const now = { t: T0 };
    const w0 = service(join(dir, 'u.json.worker-0'), now);
    read(w0, 'up', 'dashboard:a', T0);
    w0.save();
    const w1 = service(join(dir, 'u.json.worker-1'), now);
    read(w1, 'up', 'dashboard:b', T0);
    read(w1, 'node_load1', 'dashboard:b', T0);
    w1.save();
    writeFileSync(join(dir, 'u.json.worker-2'), '{"recorder":{"version":9}}');
    now.t = T0 + 60_000;
    const files = orphanedStateFiles(
      join(dir, 'u.json'),
      ['u.json.worker-0', 'u.json.worker-1', 'u.json.worker-2'],
      undefined,
    );
    const one = service(join(dir, 'u.json'), now, [], files);
    const r = one.report(
      { limit: 10, readers: 5, sort: 'reads' },
      { lookup: () => undefined, largest: () => [] },
      true,
    );
    expect(r.metrics.map((m) => [m.metric, m.reads.total])).toEqual([
      ['up', 2],
      ['node_load1', 1],
    ]);
    expect(r.readers.map((x) => [x.reader, x.reads])).toEqual([
      ['dashboard:b', 2],
      ['dashboard:a', 1],
    ]);
    expect(existsSync(join(dir, 'u.json.worker-0'))).toBe(false);
    expect(existsSync(join(dir, 'u.json.worker-1'))).toBe(false);
    // Not readable: it stays for the next start.
    expect(existsSync(join(dir, 'u.json.worker-2'))).toBe(true);
    // What was taken over is in the saved state, so nothing is lost once the orphans are gone.
    const again = service(join(dir, 'u.json'), now);
    expect(
      again
        .report(
          { limit: 10, readers: 0, sort: 'reads' },
          { lookup: () => undefined, largest: () => [] },
          true,
        )
        .metrics.map((m) => [m.metric, m.reads.total]),
    ).toEqual([
      ['up', 2],
      ['node_load1', 1],
    ]);
  });
});
