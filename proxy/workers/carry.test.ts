import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { addCarried, CounterCarry, countersOf, type MetricsJson } from './carry.js';

/** A worker's registry: a counter with labels, a histogram, a gauge and a restored drop counter. */
function workerRegistry(o: { requests: number; fsync: number[]; inflight: number; dropped: number }) {
  const registry = new Registry();
  const requests = new Counter({ name: 'req_total', help: 'h', labelNames: ['code'], registers: [registry] });
  requests.inc({ code: '204' }, o.requests);
  const h = new Histogram({ name: 'fsync_seconds', help: 'h', buckets: [0.01, 0.1], registers: [registry] });
  for (const v of o.fsync) h.observe(v);
  new Gauge({ name: 'inflight', help: 'h', registers: [registry] }).set(o.inflight);
  new Counter({
    name: 'cardinal_proxy_queue_dropped_samples_total',
    help: 'h',
    registers: [registry],
  }).inc(o.dropped);
  return registry;
}

const json = async (r: Registry) => (await r.getMetricsAsJSON()) as MetricsJson;
const sampleOf = (text: string, line: string) =>
  Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${line} `))
      ?.split(' ')[1],
  );

describe('addCarried', () => {
  it('adds counters and histograms, leaves gauges and restored counters, keeps series only the predecessor had', async () => {
    const before = await json(
      workerRegistry({ requests: 40, fsync: [0.005, 0.05], inflight: 7, dropped: 9 }),
    );
    const after = await json(workerRegistry({ requests: 3, fsync: [0.5], inflight: 1, dropped: 9 }));
    // The predecessor also answered a 500 the successor has not yet.
    const req = before.find((m) => m.name === 'req_total')!;
    req.values.push({ value: 2, labels: { code: '500' } });
    const text = await AggregatorRegistry.aggregate([addCarried(before, after)]).metrics();
    expect(sampleOf(text, 'req_total{code="204"}')).toBe(43);
    expect(sampleOf(text, 'req_total{code="500"}')).toBe(2);
    expect(sampleOf(text, 'fsync_seconds_bucket{le="0.01"}')).toBe(1);
    expect(sampleOf(text, 'fsync_seconds_bucket{le="0.1"}')).toBe(2);
    expect(sampleOf(text, 'fsync_seconds_bucket{le="+Inf"}')).toBe(3);
    expect(sampleOf(text, 'fsync_seconds_count')).toBe(3);
    expect(sampleOf(text, 'fsync_seconds_sum')).toBeCloseTo(0.555);
    expect(sampleOf(text, 'inflight')).toBe(1);
    expect(sampleOf(text, 'cardinal_proxy_queue_dropped_samples_total')).toBe(9);
  });

  it('does not change its inputs', async () => {
    const before = await json(workerRegistry({ requests: 40, fsync: [], inflight: 7, dropped: 0 }));
    const after = await json(workerRegistry({ requests: 3, fsync: [], inflight: 1, dropped: 0 }));
    const copy = structuredClone(after);
    addCarried(before, after);
    expect(after).toEqual(copy);
  });
});

describe('CounterCarry', () => {
  it('keeps the sum over restarts monotonic, and carries the whole chain of predecessors', async () => {
    const carry = new CounterCarry();
    const total = async (raw: MetricsJson | undefined) =>
      sampleOf(await AggregatorRegistry.aggregate([carry.part(1, raw)]).metrics(), 'req_total{code="204"}');
    expect(
      await total(await json(workerRegistry({ requests: 10, fsync: [], inflight: 0, dropped: 0 }))),
    ).toBe(10);
    // Collected again at 25 by the poll, then the worker dies (what came after 25 is lost).
    carry.seen(1, await json(workerRegistry({ requests: 25, fsync: [], inflight: 0, dropped: 0 })));
    carry.died(1);
    // While it is being started again: the last known count.
    expect(await total(undefined)).toBe(25);
    expect(await total(await json(workerRegistry({ requests: 0, fsync: [], inflight: 0, dropped: 0 })))).toBe(
      25,
    );
    expect(await total(await json(workerRegistry({ requests: 5, fsync: [], inflight: 0, dropped: 0 })))).toBe(
      30,
    );
    carry.died(1);
    expect(await total(await json(workerRegistry({ requests: 1, fsync: [], inflight: 0, dropped: 0 })))).toBe(
      31,
    );
  });

  it('keeps worker indexes apart, and a death without a collection carries nothing', async () => {
    const carry = new CounterCarry();
    carry.part(0, await json(workerRegistry({ requests: 8, fsync: [], inflight: 0, dropped: 0 })));
    carry.died(1);
    carry.died(0);
    const text = async (i: number) =>
      AggregatorRegistry.aggregate([
        carry.part(i, await json(workerRegistry({ requests: 1, fsync: [], inflight: 0, dropped: 0 }))),
      ]).metrics();
    expect(sampleOf(await text(0), 'req_total{code="204"}')).toBe(9);
    expect(sampleOf(await text(1), 'req_total{code="204"}')).toBe(1);
  });
});

describe('countersOf', () => {
  it('returns counters and histograms without running gauges', async () => {
    const registry = workerRegistry({ requests: 2, fsync: [0.2], inflight: 3, dropped: 1 });
    let collected = 0;
    new Gauge({
      name: 'expensive',
      help: 'h',
      registers: [registry],
      collect() {
        collected++;
      },
    });
    const got = await countersOf(registry);
    expect(got.map((m) => m.name).sort()).toEqual(['fsync_seconds', 'req_total']);
    expect(collected).toBe(0);
  });
});
