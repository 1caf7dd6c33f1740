import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { IngestRow } from '../stats/offenders.js';
import { addExpression, emptyReads } from './extract.js';
import { UsageService } from './usage.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const logger = pino({ level: 'silent' });

function service(stateFile: string | undefined, now: { t: number }, known: string[] = []) {
  return new UsageService({
    recorder: { maxMetrics: 100, maxReaders: 10, readersPerMetric: 3 },
    stateFile,
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
