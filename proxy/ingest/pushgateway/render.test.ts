import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseExposition } from '../exposition/index.js';
import { formatValue, renderText, textFamilies } from './render.js';

describe('textFamilies + renderText', () => {
  it('renders OpenMetrics types in the text format: counters as _total, created and info as gauges', () => {
    const om = [
      '# TYPE jobs counter',
      '# HELP jobs Jobs.',
      'jobs_total 3',
      'jobs_created 17',
      '# TYPE build info',
      'build_info{version="1"} 1',
      '# TYPE lat histogram',
      'lat_bucket{le="1"} 1',
      'lat_bucket{le="+Inf"} 2',
      'lat_count 2',
      'lat_sum 3',
      '# TYPE mode stateset',
      'mode{mode="a"} 1',
      '# TYPE other unknown',
      'other 4',
      '# EOF',
      '',
    ].join('\n');
    const parsed = parseExposition(om, 'openmetrics');
    expect(parsed.problems).toEqual([]);
    const series = parsed.families.flatMap((f) =>
      f.samples.map((s) => ({ name: s.name, labels: s.labels, value: s.value })),
    );
    expect(renderText(series, textFamilies(parsed.families, 'openmetrics'), new Set())).toBe(
      [
        '# HELP jobs_total Jobs.',
        '# TYPE jobs_total counter',
        'jobs_total 3',
        '# TYPE jobs_created gauge',
        'jobs_created 17',
        '# TYPE build_info gauge',
        'build_info{version="1"} 1',
        '# TYPE lat histogram',
        'lat_bucket{le="1"} 1',
        'lat_bucket{le="+Inf"} 2',
        'lat_count 2',
        'lat_sum 3',
        '# TYPE mode gauge',
        'mode{mode="a"} 1',
        '# TYPE other untyped',
        'other 4',
        '',
      ].join('\n'),
    );
  });

  it('leaves out the grouping labels, groups a family together, and types a renamed series untyped', () => {
    const parsed = parseExposition('# TYPE a gauge\na{x="1"} 1\na{x="2"} 2\n', 'text');
    const out = renderText(
      [
        {
          name: 'a',
          labels: [
            ['job', 'j'],
            ['x', '1'],
          ],
          value: 1,
        },
        { name: 'renamed', labels: [['job', 'j']], value: 5 },
        {
          name: 'a',
          labels: [
            ['job', 'j'],
            ['x', '2'],
          ],
          value: 2,
        },
      ],
      textFamilies(parsed.families, 'text'),
      new Set(['job']),
    );
    expect(out).toBe('# TYPE a gauge\na{x="1"} 1\na{x="2"} 2\n# TYPE renamed untyped\nrenamed 5\n');
  });

  it.each([
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, '+Inf'],
    [Number.NEGATIVE_INFINITY, '-Inf'],
    [1e21, '1e+21'],
    [-0.5, '-0.5'],
  ])('formats %d as %s', (v, text) => {
    expect(formatValue(v)).toBe(text);
  });

  it('what it renders parses back to the same series (property)', () => {
    const name = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,10}$/);
    const labelName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,6}$/).filter((n) => !n.startsWith('__'));
    const series = fc.record({
      name,
      labels: fc.uniqueArray(fc.tuple(labelName, fc.string({ maxLength: 8 })), {
        selector: ([n]) => n,
        maxLength: 3,
      }),
      value: fc.double(),
    });
    fc.assert(
      fc.property(fc.array(series, { maxLength: 8 }), (list) => {
        const text = renderText(list, new Map(), new Set());
        const parsed = parseExposition(text, 'text');
        const back = parsed.families.flatMap((f) =>
          f.samples.map((s) => ({ name: s.name, labels: s.labels, value: s.value })),
        );
        // Rendering groups by name; compare as multisets.
        const key = (s: { name: string; labels: readonly (readonly [string, string])[]; value: number }) =>
          JSON.stringify([s.name, s.labels, Object.is(s.value, -0) ? 0 : s.value]);
        const dup = new Set(list.map(key)).size !== list.length;
        if (!dup) expect(parsed.problems.filter((p) => p.rule !== 'duplicate-series')).toEqual([]);
        expect(back.map(key).sort()).toEqual(list.map(key).sort());
      }),
      { numRuns: 300 },
    );
  });
});
