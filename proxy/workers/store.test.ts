import { describe, expect, it } from 'vitest';
import {
  type AdmissionCheck,
  ANSWER_ADMITTED,
  ANSWER_KNOWN,
  ANSWER_REFUSED,
  CHECK_SERIES_START,
  CHECK_STOP,
  MemoryLimitStore,
} from '../limits/store.js';
import { Rpc } from './rpc.js';
import { serveLimits, WorkerLimitStore } from './store.js';

/** A worker's Rpc and the primary's, joined by a channel that copies like IPC does. */
function pair(): { worker: Rpc; primary: Rpc } {
  let worker: Rpc | undefined;
  let primary: Rpc | undefined;
  worker = new Rpc((m) => setImmediate(() => primary?.receive(structuredClone(m))));
  primary = new Rpc((m) => setImmediate(() => worker?.receive(structuredClone(m))));
  return { worker, primary };
}

const check = (member: string, limit: number): AdmissionCheck => ({
  tag: 'p/m',
  sub: '',
  member,
  limit,
  windowSeconds: 600,
  flags: CHECK_SERIES_START | CHECK_STOP,
});

function workerStore(rpc: Rpc, replicas = 2): WorkerLimitStore {
  return new WorkerLimitStore({
    rpc,
    timeoutMs: 5000,
    flushIntervalMs: 60_000,
    maxPendingTouches: 100,
    replicas: () => replicas,
  });
}

describe('the workers’ limit store, held by the primary', () => {
  it('decides one limit for all workers: the places are given once, whoever asks', async () => {
    const held = new MemoryLimitStore(2);
    const a = pair();
    const b = pair();
    serveLimits(a.primary, held);
    serveLimits(b.primary, held);
    const wa = workerStore(a.worker);
    const wb = workerStore(b.worker);
    const now = Date.now();
    const answers = await Promise.all([
      wa.admit([check('1', 3), check('2', 3)], now),
      wb.admit([check('3', 3), check('4', 3)], now),
    ]);
    const all = answers.flatMap((x) => [...(x ?? [])]);
    expect(all.filter((x) => x === ANSWER_ADMITTED)).toHaveLength(3);
    expect(all.filter((x) => x === ANSWER_REFUSED)).toHaveLength(1);
    // A member one worker admitted is known to the other.
    const first = answers[0]![0] === ANSWER_ADMITTED ? '1' : '2';
    expect([...((await wb.admit([check(first, 3)], now)) ?? [])]).toEqual([ANSWER_KNOWN]);
    expect(await wa.counts([{ tag: 'p/m', sub: '', windowSeconds: 600 }], now)).toEqual([3]);
    await wa.close();
    await wb.close();
  });

  it('sends what a worker admitted on its own with its next admission', async () => {
    const held = new MemoryLimitStore(2);
    const { worker, primary } = pair();
    serveLimits(primary, held);
    const w = workerStore(worker);
    w.touch('p/m', '', 'local', 600);
    expect(held.size('p/m')).toBe(0);
    await w.admit([check('x', 10)], Date.now());
    expect(held.size('p/m')).toBe(2);
    await w.close();
  });

  it('falls back to its share when the primary does not answer, and says so', async () => {
    const silent = new Rpc(() => {});
    const w = new WorkerLimitStore({
      rpc: silent,
      timeoutMs: 20,
      flushIntervalMs: 60_000,
      maxPendingTouches: 100,
      replicas: () => 4,
    });
    expect(await w.admit([check('x', 10)], Date.now())).toBeUndefined();
    expect(w.available).toBe(false);
    expect(w.status()).toMatchObject({ state: 'fallback', replicas: 4, url: 'workers:' });
    expect(w.status().lastError).toMatch(/no answer/);
    await w.close();
  });
});

describe('Rpc', () => {
  it('carries a handler’s error back to the caller, and fails calls once closed', async () => {
    const { worker, primary } = pair();
    primary.handle('boom', () => {
      throw new Error('it broke');
    });
    await expect(worker.call('boom', undefined, 5000)).rejects.toThrow('it broke');
    await expect(worker.call('nothing', undefined, 5000)).rejects.toThrow('no handler for nothing');
    worker.close('the primary is gone');
    await expect(worker.call('boom', undefined, 5000)).rejects.toThrow('the primary is gone');
  });
});
