import { describe, expect, it } from 'vitest';
import { pluginRig, seriesOf } from '../../proxy/pipeline/plugins/testing.js';
import hashBucket, { bucketOf } from './hash-bucket.js';
import sample, { kept } from './sample.js';

describe('hash-bucket', () => {
  it('collapses a label to its buckets, summing the samples of the series that share one', () => {
    const rig = pluginRig(
      [hashBucket],
      [{ stages: [{ name: 'hash-bucket', config: { label: 'user', buckets: 4 } }] }],
    );
    const input = Array.from({ length: 200 }, (_, i) =>
      seriesOf({ __name__: 'hits_total', user: `u${i}` }, i),
    );
    const out = rig.run(input);
    expect(out.length).toBeLessThanOrEqual(4);
    expect(out.length).toBeGreaterThan(1);
    for (const s of out) expect(s.user).toMatch(/^bucket_[0-3]$/);
    // No sample value is lost: the buckets hold the sum of what came in.
    const total = out.reduce((a, s) => a + Number(s['#value']), 0);
    expect(total).toBe((199 * 200) / 2);
    // Each bucket holds exactly the series whose value hashes to it.
    for (const s of out) {
      const want = input.filter(
        (t) => bucketOf(t.labels.find((l) => l.name === 'user')!.value, 4) === s.user,
      );
      expect(Number(s['#value'])).toBe(want.reduce((a, t) => a + t.samples[0]!.value, 0));
    }
    expect(rig.counted.get('label_bucketed/rewritten')).toBe(200);
  });

  it('leaves other metrics and series without the label alone', () => {
    const rig = pluginRig(
      [hashBucket],
      [{ stages: [{ name: 'hash-bucket', config: { label: 'user', buckets: 4, metrics: ['hits_total'] } }] }],
    );
    expect(
      rig.run([seriesOf({ __name__: 'other', user: 'u1' }), seriesOf({ __name__: 'hits_total' })]),
    ).toEqual([
      { __name__: 'other', user: 'u1', '#value': '1' },
      { __name__: 'hits_total', '#value': '1' },
    ]);
  });

  it.each([
    [{ label: 'user' }, /stages\[0\]\.config\.buckets: Expected required property/],
    [
      { label: 'user', buckets: 0 },
      /stages\[0\]\.config\.buckets: Expected integer to be greater or equal to 1/,
    ],
    [{ label: 'user', buckets: 4, extra: 1 }, /stages\[0\]\.config\.extra: Unexpected property/],
  ])('refuses config %j', (config, error) => {
    expect(() => pluginRig([hashBucket], [{ stages: [{ name: 'hash-bucket', config }] }])).toThrow(error);
  });
});

describe('sample', () => {
  it('keeps 1 in N series of the metric, the same ones every time, and no other metric', () => {
    const rig = pluginRig(
      [sample],
      [{ stages: [{ name: 'sample', config: { metric: 'lat', keepOneIn: 10 } }] }],
    );
    const input = Array.from({ length: 1000 }, (_, i) => seriesOf({ __name__: 'lat', id: String(i) }));
    const out = rig.run([...input, seriesOf({ __name__: 'up' })]);
    const keptIds = out.filter((s) => s.__name__ === 'lat').map((s) => s.id);
    // FNV-1a spreads: about a tenth, and exactly the ones `kept` names.
    expect(keptIds.length).toBeGreaterThan(50);
    expect(keptIds.length).toBeLessThan(150);
    expect(keptIds).toEqual(input.filter((t) => kept(t.labels, 10)).map((t) => t.labels[1]!.value));
    expect(out.at(-1)).toEqual({ __name__: 'up', '#value': '1' });
    expect(rig.counted.get('series_sampled/dropped')).toBe(1000 - keptIds.length);
    // A second request (from the verdict cache) keeps the same series.
    expect(rig.run(input).map((s) => s.id)).toEqual(keptIds);
  });
});
