import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { hashSets, type OffendersPart } from '../stats/merge.js';
import { Rpc } from './rpc.js';
import { servePrimaryStats, wholeProxyStats } from './stats.js';

/** A worker's Rpc and the primary's, joined by a channel that copies like IPC does. */
function pair(): { worker: Rpc; primary: Rpc } {
  let worker: Rpc | undefined;
  let primary: Rpc | undefined;
  worker = new Rpc((m) => setImmediate(() => primary?.receive(structuredClone(m))));
  primary = new Rpc((m) => setImmediate(() => worker?.receive(structuredClone(m))));
  return { worker, primary };
}

/** A part holding `hashes` of metric `metric`, and `dropped` samples dropped of it. */
const part = (metric: string, hashes: number[], dropped: number): OffendersPart => ({
  series: hashSets([metric], {
    offsets: Uint32Array.from([0, hashes.length]),
    hashes: Uint32Array.from(hashes),
  }),
  values: hashSets([], { offsets: new Uint32Array(1), hashes: new Uint32Array(0) }),
  drops: [{ metric, policy: 'ns/p', reason: 'metric_dropped', samples: dropped }],
});

function setup(opts: { now?: () => number; silent?: boolean } = {}) {
  const a = pair();
  const b = pair();
  const calls = { a: 0, b: 0 };
  a.worker.handle('stats.part.offenders', () => {
    calls.a++;
    return part('bomb', [1, 2, 3], 5);
  });
  b.worker.handle('stats.part.offenders', () => {
    calls.b++;
    // A worker that does not answer in time.
    if (opts.silent === true) return new Promise(() => {});
    return part('bomb', [3, 4], 7);
  });
  const registry = new Registry();
  const stats = servePrimaryStats({
    workers: 2,
    live: () => [
      { index: 0, rpc: a.primary },
      { index: 1, rpc: b.primary },
    ],
    registry,
    exposeTop: 5,
    partTimeoutMs: 100,
    cacheMs: 1000,
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
  stats.attach(a.primary);
  stats.attach(b.primary);
  return { a, b, calls, registry };
}

describe('servePrimaryStats', () => {
  it('answers a worker with the union of every worker’s series and the sum of their drops', async () => {
    const { a } = setup();
    expect(await a.worker.call('stats.top-offenders', 10, 5000)).toEqual({
      metrics: [{ metric: 'bomb', activeSeries: 4 }],
      labels: [],
      drops: [{ metric: 'bomb', policy: 'ns/p', reason: 'metric_dropped', samples: 12 }],
      workers: { answered: 2, of: 2 },
    });
  });

  it('fills the top-offender gauges from the same merge', async () => {
    const { registry } = setup();
    const text = await registry.metrics();
    expect(text).toContain('cardinal_proxy_active_series 4');
    expect(text).toContain('cardinal_proxy_top_metric_active_series{metric="bomb"} 4');
    expect(text).toContain(
      'cardinal_proxy_top_dropped_samples{metric="bomb",policy="ns/p",reason="metric_dropped"} 12',
    );
  });

  it('keeps a merge for the cache time: a page load and a scrape share it', async () => {
    let t = 0;
    const { a, b, calls, registry } = setup({ now: () => t });
    await a.worker.call('stats.top-offenders', 10, 5000);
    await b.worker.call('stats.top-offenders', 1, 5000);
    await registry.metrics();
    expect(calls).toEqual({ a: 1, b: 1 });
    t = 1500;
    await a.worker.call('stats.top-offenders', 10, 5000);
    expect(calls).toEqual({ a: 2, b: 2 });
  });

  it('answers from the workers that answered in time, and says so', async () => {
    const { a } = setup({ silent: true });
    expect(await a.worker.call('stats.top-offenders', 10, 5000)).toMatchObject({
      metrics: [{ metric: 'bomb', activeSeries: 3 }],
      workers: { answered: 1, of: 2 },
    });
  });
});

describe('wholeProxyStats', () => {
  it('answers with the worker’s own report, saying so, when the primary does not answer', async () => {
    const { worker } = pair();
    worker.close('the primary is gone');
    const own = {
      topOffenders: () => ({ metrics: [{ metric: 'bomb', activeSeries: 3 }], labels: [], drops: [] }),
      unused: () => ({ usageDocuments: 0, policies: [], used: [], usedTotal: 0 }),
      limits: async () => ({ policies: [] }),
    };
    const reports = wholeProxyStats({ index: 1, count: 2, rpc: worker }, own);
    expect(await reports.topOffenders(10)).toEqual({
      ...own.topOffenders(),
      workers: { answered: 1, of: 2 },
    });
    expect(reports.usage).toBeUndefined();
    expect(await reports.limits(10)).toEqual({ policies: [], workers: { answered: 1, of: 2 } });
  });
});
