import { describe, expect, it } from 'vitest';
import { MemoryLimitStore } from '../../limits/store.js';
import { compilePipeline } from '../../pipeline/compile.js';
import { PolicyEngine } from '../../pipeline/engine.js';
import { parseExposition } from '../exposition/index.js';
import { parseGroupingKey } from './grouping.js';
import { applyPushPolicies, storedLabelSets } from './policies.js';

const key = (() => {
  const r = parseGroupingKey('/metrics/job/nightly');
  if (!r.ok) throw new Error(r.reason);
  return r.key;
})();

function replica(store: MemoryLimitStore | undefined, replicas = 2): PolicyEngine {
  return new PolicyEngine(
    compilePipeline([
      {
        name: 'cap',
        namespace: 'p',
        spec: { limits: { perMetric: [{ metric: 'batch_rows_total', maxSeries: 10 }] } },
      },
    ]),
    { verdictCacheSize: 1000, maxTrackedSeries: 1000, maxTrackedLabelValues: 1000, maxMetricNames: 100 },
    { slot: () => {}, forwarded: () => false, newSeries: () => {} },
    store === undefined ? undefined : { store, replicas },
  );
}

/** Pushes `batch_rows_total{shard}` for shards from..from+n-1 and answers the shards forwarded. */
async function push(engine: PolicyEngine, from: number, n: number): Promise<string[]> {
  let text = '# TYPE batch_rows_total counter\n';
  for (let i = from; i < from + n; i++) text += `batch_rows_total{shard="s${i}"} ${i}\n`;
  const parsed = parseExposition(text, 'text');
  const r = applyPushPolicies({
    engine,
    families: parsed.families,
    stored: storedLabelSets(parsed.families, key),
    tenant: undefined,
    nowMs: Date.now(),
    scratch: undefined,
  });
  const done = r instanceof Promise ? await r : r;
  return done.series.map((s) => s.labels.find(([n]) => n === 'shard')?.[1] ?? '').sort();
}

describe('applyPushPolicies', () => {
  it('counts pushes against the global limit when the replicas share a store', async () => {
    const store = new MemoryLimitStore(2);
    const [a, b] = [replica(store), replica(store)];
    expect(await push(a, 0, 8)).toHaveLength(8);
    // 2 places left over both replicas, not b's own 10 or its share of 5.
    expect(await push(b, 8, 8)).toEqual(['s8', 's9']);
    // What either replica admitted passes through the other.
    expect(await push(b, 0, 8)).toHaveLength(8);
    expect(await push(a, 8, 2)).toEqual(['s8', 's9']);
  });

  it('enforces each replica its share while the store does not answer', async () => {
    const store = new MemoryLimitStore(2);
    store.down = true;
    expect(await push(replica(store), 0, 8)).toHaveLength(5);
  });

  it('decides synchronously without a store', () => {
    const parsed = parseExposition('batch_rows_total{shard="a"} 1\n', 'text');
    const r = applyPushPolicies({
      engine: replica(undefined),
      families: parsed.families,
      stored: storedLabelSets(parsed.families, key),
      tenant: undefined,
      nowMs: Date.now(),
      scratch: undefined,
    });
    expect(r).not.toBeInstanceOf(Promise);
  });
});
