// Series the proxy synthesizes never collide: relabel results that make series of one request the
// same are merged (spec.onCollision), synthesized series carry the replica label, and samples a
// replica already sent for its own synthesized series are left out and counted.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
} from '../codec/proto.js';
import { scanRequestV2, scanWriteRequestV1 } from '../codec/scan.js';
import type { TimeSeriesV1 } from '../codec/types.js';
import { compilePipeline, OVERFLOW_VALUE } from './compile.js';
import { PolicyEngine } from './engine.js';

function ts(labels: Record<string, string>, samples: [number, number][]): TimeSeriesV1 {
  return {
    labels: Object.entries(labels)
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    samples: samples.map(([value, timestamp]) => ({ value, timestamp })),
    exemplars: [],
    histograms: [],
  };
}

function engineFor(spec: MetricPolicySpecT, replica: string | null = 'r1') {
  const pipeline = compilePipeline([{ name: 'p', namespace: undefined, spec }]);
  const slots = new Map<string, number>();
  const engine = new PolicyEngine(
    pipeline,
    {
      verdictCacheSize: 1000,
      maxTrackedSeries: 1000,
      maxTrackedLabelValues: 1000,
      maxMetricNames: 100,
      replicaLabel: replica === null ? undefined : { name: 'cardinal_replica', value: replica },
    },
    {
      slot(slot, _m, samples) {
        const s = pipeline.slots[slot]!;
        slots.set(`${s.rule}/${s.reason}`, (slots.get(`${s.rule}/${s.reason}`) ?? 0) + samples);
      },
      forwarded: () => false,
      newSeries() {},
    },
  );
  return { engine, slots };
}

type Out = { labels: string; samples: [number, number][] }[];

function send(engine: PolicyEngine, series: TimeSeriesV1[], version: 1 | 2 = 1): Out {
  if (version === 1) {
    const req = { timeseries: series, metadata: [] };
    const buf = Buffer.from(encodeWriteRequestV1(req));
    const r = engine.process(buf, scanWriteRequestV1(buf), undefined, Date.now());
    const out = r.unchanged ? req : r.body === undefined ? { timeseries: [] } : decodeWriteRequestV1(r.body);
    return out.timeseries.map((t) => ({
      labels: t.labels.map((l) => `${l.name}=${l.value}`).join(','),
      samples: t.samples.map((s) => [s.value, s.timestamp]),
    }));
  }
  const symbols = [''];
  const ref = (s: string) => {
    let i = symbols.indexOf(s);
    if (i < 0) i = symbols.push(s) - 1;
    return i;
  };
  const req = {
    symbols,
    timeseries: series.map((t) => ({
      labelsRefs: t.labels.flatMap((l) => [ref(l.name), ref(l.value)]),
      samples: t.samples,
      histograms: [],
      exemplars: [],
      metadata: { type: 0, helpRef: 0, unitRef: 0 },
      createdTimestamp: 0,
    })),
  };
  const buf = Buffer.from(encodeRequestV2(req as Parameters<typeof encodeRequestV2>[0]));
  const r = engine.process(buf, scanRequestV2(buf), undefined, Date.now());
  const out = r.unchanged ? decodeRequestV2(buf) : decodeRequestV2(r.body!);
  return out.timeseries.map((t) => {
    const names: string[] = [];
    for (let k = 0; k < t.labelsRefs.length; k += 2)
      names.push(`${out.symbols[t.labelsRefs[k]!]}=${out.symbols[t.labelsRefs[k + 1]!]}`);
    return { labels: names.join(','), samples: t.samples.map((s) => [s.value, Number(s.timestamp)]) };
  });
}

const dropPod: MetricPolicySpecT = { relabel: [{ action: 'labeldrop', regex: 'pod' }] };

describe('collisions of relabel results within a request', () => {
  it.each([1, 2] as const)(
    'merges series a labeldrop made the same, summing samples of one timestamp (v%s)',
    (v) => {
      const { engine, slots } = engineFor(dropPod);
      const out = send(
        engine,
        [
          ts({ __name__: 'exp_coll', pod: 'a' }, [[1, 1000]]),
          ts({ __name__: 'exp_coll', pod: 'b' }, [[2, 1000]]),
        ],
        v,
      );
      expect(out).toEqual([{ labels: '__name__=exp_coll,cardinal_replica=r1', samples: [[3, 1000]] }]);
      expect(slots.get('relabel/collision')).toBe(2);
    },
  );

  it.each([
    ['sum', 6],
    ['max', 3],
    ['min', 1],
    ['last', 2],
  ] as const)('onCollision %s combines to %s', (mode, value) => {
    const { engine } = engineFor({ ...dropPod, onCollision: mode });
    const out = send(engine, [
      ts({ __name__: 'm', pod: 'a' }, [[1, 1000]]),
      ts({ __name__: 'm', pod: 'b' }, [[3, 1000]]),
      ts({ __name__: 'm', pod: 'c' }, [[2, 1000]]),
    ]);
    expect(out).toEqual([{ labels: '__name__=m,cardinal_replica=r1', samples: [[value, 1000]] }]);
  });

  it('merges a replace onto a label set that an untouched series of the request has', () => {
    const { engine, slots } = engineFor({
      relabel: [
        {
          action: 'replace',
          source_labels: ['env'],
          regex: 'production',
          target_label: 'env',
          replacement: 'prod',
        },
      ],
    });
    const out = send(engine, [
      ts({ __name__: 'm', env: 'prod' }, [[1, 1000]]),
      ts({ __name__: 'm', env: 'production' }, [[5, 1000]]),
      ts({ __name__: 'm', env: 'dev' }, [[7, 1000]]),
    ]);
    expect(out).toEqual([
      { labels: '__name__=m,env=dev', samples: [[7, 1000]] },
      { labels: '__name__=m,cardinal_replica=r1,env=prod', samples: [[6, 1000]] },
    ]);
    expect(slots.get('relabel/collision')).toBe(2);
  });

  it('without a replica label (a single replica), the merged series keeps the relabeled labels', () => {
    const { engine } = engineFor(dropPod, null);
    const out = send(engine, [
      ts({ __name__: 'm', pod: 'a' }, [[1, 1000]]),
      ts({ __name__: 'm', pod: 'b' }, [[2, 1000]]),
    ]);
    expect(out).toEqual([{ labels: '__name__=m', samples: [[3, 1000]] }]);
  });

  it('leaves series that do not collide alone', () => {
    const { engine, slots } = engineFor(dropPod);
    const out = send(engine, [
      ts({ __name__: 'm', pod: 'a' }, [[1, 1000]]),
      ts({ __name__: 'n', pod: 'a' }, [[2, 1000]]),
    ]);
    expect(out.map((o) => o.labels)).toEqual(['__name__=m', '__name__=n']);
    expect(slots.get('relabel/collision')).toBeUndefined();
  });

  it('property: no forwarded request holds two series with the same labels, and no sample value is lost', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.constantFrom('a', 'b'), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 3 })),
          {
            minLength: 1,
            maxLength: 20,
          },
        ),
        (rows) => {
          const { engine } = engineFor(dropPod);
          // Unique input series: (name, pod) pairs, each with one sample at one of three times.
          const seen = new Set<string>();
          const input = rows
            .filter(([n, pod]) => !seen.has(`${n}${pod}`) && seen.add(`${n}${pod}`))
            .map(([n, pod, t]) => ts({ __name__: n, pod: String(pod) }, [[pod + 1, t * 1000]]));
          const out = send(engine, input);
          const labels = out.map((o) => o.labels);
          expect(new Set(labels).size).toBe(labels.length);
          const total = (xs: { samples: [number, number][] }[]) =>
            xs.reduce((a, s) => a + s.samples.reduce((b, [v]) => b + v, 0), 0);
          expect(total(out)).toBe(
            total(input.map((t) => ({ samples: t.samples.map((s) => [s.value, s.timestamp]) }))),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('synthesized series', () => {
  const overflow: MetricPolicySpecT = {
    limits: { perMetric: [{ metric: 'm', maxSeries: 1, onExceed: 'overflow', overflowLabel: 'id' }] },
  };

  it('carry the replica label', () => {
    const { engine } = engineFor(overflow, 'proxy-0');
    const out = send(engine, [
      ts({ __name__: 'm', id: '1' }, [[1, 1000]]),
      ts({ __name__: 'm', id: '2' }, [[1, 1000]]),
    ]);
    expect(out.map((o) => o.labels)).toEqual([
      '__name__=m,id=1',
      `__name__=m,cardinal_replica=proxy-0,id=${OVERFLOW_VALUE}`,
    ]);
  });

  it('leave out and count samples this replica already sent for them', () => {
    const { engine, slots } = engineFor(overflow);
    send(engine, [ts({ __name__: 'm', id: '1' }, [[1, 1000]]), ts({ __name__: 'm', id: '2' }, [[1, 2000]])]);
    // An older and an equal timestamp for the overflow series: both left out, not forwarded.
    const out = send(engine, [
      ts({ __name__: 'm', id: '3' }, [
        [1, 1500],
        [1, 2000],
        [1, 2500],
      ]),
    ]);
    expect(out).toEqual([
      { labels: `__name__=m,cardinal_replica=r1,id=${OVERFLOW_VALUE}`, samples: [[1, 2500]] },
    ]);
    expect(slots.get('synthesized/out_of_order')).toBe(2);
  });
});
