import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CheckOptions, checkRequest, histogramProblem, withoutSeries } from './check.js';
import { decodeRequestV2, decodeWriteRequestV1, encodeRequestV2, encodeWriteRequestV1 } from './proto.js';
import { scanRequestV2, scanWriteRequestV1 } from './scan.js';
import type { Histogram, Label, TimeSeriesV1 } from './types.js';

const NOW = 1_700_000_000_000;
const OPTS: CheckOptions = { nowMs: NOW, maxFutureMs: 600_000, maxAgeMs: 3_600_000, names: 'legacy' };

function series(labels: Label[], over: Partial<TimeSeriesV1> = {}): TimeSeriesV1 {
  return { labels, samples: [{ value: 1, timestamp: NOW }], exemplars: [], histograms: [], ...over };
}

function v1(ts: TimeSeriesV1[]): Buffer {
  return Buffer.from(encodeWriteRequestV1({ timeseries: ts, metadata: [] }));
}

/** The same series as a 2.0 request (labels in the given order, a fresh symbols table). */
function v2(ts: TimeSeriesV1[]): Buffer {
  const symbols = [''];
  const ref = (s: string) => {
    let i = symbols.indexOf(s);
    if (i < 0) i = symbols.push(s) - 1;
    return i;
  };
  const timeseries = ts.map((t) => ({
    labelsRefs: t.labels.flatMap((l) => [ref(l.name), ref(l.value)]),
    samples: t.samples,
    histograms: t.histograms,
    exemplars: [],
    metadata: { type: 0, helpRef: 0, unitRef: 0 },
    createdTimestamp: 0,
  }));
  return Buffer.from(encodeRequestV2({ symbols, timeseries }));
}

function check(version: 1 | 2, ts: TimeSeriesV1[], opts: CheckOptions = OPTS) {
  const buf = version === 1 ? v1(ts) : v2(ts);
  const index = version === 1 ? scanWriteRequestV1(buf) : scanRequestV2(buf);
  return { buf, index, result: checkRequest(buf, index, opts) };
}

const name = (v: string): Label => ({ name: '__name__', value: v });
const l = (n: string, v: string): Label => ({ name: n, value: v });

function histogram(over: Partial<Histogram>): Histogram {
  return {
    countInt: 3,
    sum: 1,
    schema: 0,
    zeroThreshold: 0,
    zeroCountInt: 1,
    negativeSpans: [],
    negativeDeltas: [],
    negativeCounts: [],
    positiveSpans: [{ offset: 0, length: 2 }],
    positiveDeltas: [1, 0],
    positiveCounts: [],
    resetHint: 0,
    timestamp: NOW,
    customValues: [],
    ...over,
  };
}

describe('checkRequest', () => {
  const bad: [string, TimeSeriesV1, string, RegExp][] = [
    [
      'no __name__',
      series([l('a', 'b')]),
      'missing_name',
      /timeseries\[1\] \{a="b"\}: labels: no __name__ label/,
    ],
    ['empty __name__', series([name(''), l('a', 'b')]), 'missing_name', /__name__ is empty/],
    ['an empty label set', series([]), 'empty_labels', /the label set is empty/],
    [
      'a repeated label name',
      series([name('m'), l('a', '1'), l('a', '2')]),
      'duplicate_label',
      /label name "a" is repeated/,
    ],
    [
      'a repeated name in unsorted labels',
      series([name('m'), l('b', '1'), l('a', '2'), l('b', '3')]),
      'duplicate_label',
      /label name "b" is repeated/,
    ],
    [
      'an invalid metric name',
      series([name('1abc')]),
      'invalid_name',
      /labels\[0\]: metric name "1abc" is not valid/,
    ],
    ['an invalid label name', series([name('m'), l('a-b', 'x')]), 'invalid_label_name', /label name "a-b"/],
    ['an empty label name', series([name('m'), l('', 'x')]), 'invalid_label_name', /empty label name/],
    [
      'a sample 2^62 ms',
      series([name('m')], { samples: [{ value: 1, timestamp: 2 ** 62 }] }),
      'too_new',
      /samples\[0\]\.timestamp: 4611686018427388000 is more than 600000 ms ahead/,
    ],
    [
      'a sample two hours old',
      series([name('m')], { samples: [{ value: 1, timestamp: NOW - 7_200_000 }] }),
      'too_old',
      /samples\[0\]\.timestamp/,
    ],
    [
      'a negative timestamp',
      series([name('m')], { samples: [{ value: 1, timestamp: -5 }] }),
      'too_old',
      /-5 is more than/,
    ],
    [
      'a histogram whose count is not its buckets',
      series([name('h')], { samples: [], histograms: [histogram({ countInt: 7 })] }),
      'histogram_count',
      /histograms\[0\]: 3 observations in buckets, but the count is 7/,
    ],
    [
      'a histogram from the future',
      series([name('h')], { samples: [], histograms: [histogram({ timestamp: NOW + 3_600_000 })] }),
      'too_new',
      /histograms\[0\]\.timestamp/,
    ],
  ];

  for (const version of [1, 2] as const) {
    it.each(bad)(
      `remote-write ${version}.0: %s is refused, naming the series and field`,
      (_, s, reason, detail) => {
        const good = series([name('good')]);
        const { result } = check(version, [good, s, good]);
        expect(result.first?.reason).toBe(reason);
        expect(result.first?.series).toBe(1);
        expect(result.first?.detail).toMatch(detail);
        expect([...(result.bad ?? [])]).toEqual([0, 1, 0]);
        expect(result.series[reason as keyof typeof result.series]).toBe(1);
      },
    );

    it(`remote-write ${version}.0: valid series pass and nothing is copied`, () => {
      const { result } = check(
        version,
        [
          series([name('up'), l('instance', 'a:1'), l('job', 'x')]),
          series([name('h')], { samples: [], histograms: [histogram({})] }),
          series([name('ünïcode'), l('ä', 'ö')], {}),
        ],
        { ...OPTS, names: 'utf8' },
      );
      expect(result.first).toBeUndefined();
      expect(result.bad).toBeUndefined();
      expect(result.sorted).toBeUndefined();
    });

    it(`remote-write ${version}.0: unsorted labels are sorted in a copy, other series untouched`, () => {
      const { buf, result } = check(version, [
        series([name('m'), l('z', '1'), l('a', '2')]),
        series([name('n'), l('b', '1')]),
      ]);
      expect(result.first).toBeUndefined();
      expect(result.sorted).toBeDefined();
      expect(result.sorted!.length).toBe(buf.length);
      const labels =
        version === 1
          ? decodeWriteRequestV1(result.sorted!).timeseries.map((t) => t.labels.map((x) => x.name))
          : (() => {
              const r = decodeRequestV2(result.sorted!);
              return r.timeseries.map((t) =>
                t.labelsRefs.filter((_, k) => k % 2 === 0).map((k) => r.symbols[k]),
              );
            })();
      expect(labels).toEqual([
        ['__name__', 'a', 'z'],
        ['__name__', 'b'],
      ]);
    });
  }

  it('utf8 names accept what legacy refuses; both refuse invalid UTF-8', () => {
    const dotted = series([name('http.requests'), l('le.x', '1')]);
    expect(check(1, [dotted], { ...OPTS, names: 'utf8' }).result.first).toBeUndefined();
    expect(check(1, [dotted]).result.first?.reason).toBe('invalid_name');
    const raw = v1([series([name('m'), l('a', 'X')])]);
    raw[raw.lastIndexOf('X'.charCodeAt(0))] = 0xff;
    const index = scanWriteRequestV1(raw);
    expect(checkRequest(raw, index, { ...OPTS, names: 'utf8' }).first?.reason).toBe('invalid_utf8');
  });

  it('a window of 0 turns the timestamp checks off', () => {
    const s = series([name('m')], {
      samples: [
        { value: 1, timestamp: 2 ** 62 },
        { value: 1, timestamp: -1 },
      ],
    });
    expect(check(1, [s], { ...OPTS, maxFutureMs: 0, maxAgeMs: 0 }).result.first).toBeUndefined();
  });

  it('withoutSeries leaves out exactly the marked series (both versions)', () => {
    for (const version of [1, 2] as const) {
      const ts = [series([name('a')]), series([l('x', 'y')]), series([name('c')]), series([])];
      const { buf, index, result } = check(version, ts);
      const out = withoutSeries(buf, index, result.bad!);
      const names =
        version === 1
          ? decodeWriteRequestV1(out).timeseries.map((t) => t.labels[0]?.value)
          : (() => {
              const r = decodeRequestV2(out);
              return r.timeseries.map((t) => r.symbols[t.labelsRefs[1]!]);
            })();
      expect(names).toEqual(['a', 'c']);
    }
  });

  it('property: the verdict matches a model over decoded label sets, and sorting keeps the label set', () => {
    const labelName = fc.constantFrom('__name__', 'a', 'b', 'job', 'le', '0x', '');
    const arb = fc.array(
      fc.array(fc.record({ name: labelName, value: fc.constantFrom('', 'v', 'w') }), { maxLength: 5 }),
      {
        minLength: 1,
        maxLength: 6,
      },
    );
    fc.assert(
      fc.property(arb, fc.constantFrom(1 as const, 2 as const), (sets, version) => {
        const ts = sets.map((labels) => series(labels));
        const { result } = check(version, ts);
        sets.forEach((labels, i) => {
          const names = labels.map((x) => x.name);
          const model =
            labels.length === 0 ||
            new Set(names).size !== names.length ||
            !names.includes('__name__') ||
            labels.some((x) => x.name === '__name__' && x.value === '') ||
            names.some((n) => n === '' || n === '0x');
          expect(result.bad?.[i] === 1).toBe(model);
        });
        if (result.sorted !== undefined) {
          const decoded =
            version === 1
              ? decodeWriteRequestV1(result.sorted).timeseries.map((t) => t.labels)
              : (() => {
                  const r = decodeRequestV2(result.sorted);
                  return r.timeseries.map((t) => {
                    const out: Label[] = [];
                    for (let k = 0; k < t.labelsRefs.length; k += 2) {
                      out.push({
                        name: r.symbols[t.labelsRefs[k]!]!,
                        value: r.symbols[t.labelsRefs[k + 1]!]!,
                      });
                    }
                    return out;
                  });
                })();
          decoded.forEach((labels, i) => {
            if (result.bad?.[i] === 1) return;
            const want = [...sets[i]!].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
            expect(labels).toEqual(want);
          });
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('checkRequest quick paths', () => {
  // The quick paths answer only "valid"; everything else is the full check's. So with them on or
  // off, every result must be the same: verdicts, counts, the first problem's words, sorted bytes.
  const labelName = fc.constantFrom('__name__', 'a', 'b', 'job', 'le', 'x:y', '0x', 'ä', 'name_2', '');
  const labelValue = fc.constantFrom('', 'v', 'up', 'x:y', '0x', 'é', '€uro', '𝄞', 'a'.repeat(130));
  const timestamp = fc.constantFrom(
    NOW,
    NOW - 10,
    NOW + 10_000_000,
    NOW - 10_000_000,
    0,
    -5,
    2 ** 53,
    2 ** 62,
  );
  const arb = fc.array(
    fc.record({
      labels: fc.array(fc.record({ name: labelName, value: labelValue }), { maxLength: 6 }),
      timestamps: fc.array(timestamp, { maxLength: 3 }),
      histogram: fc.boolean(),
    }),
    { minLength: 1, maxLength: 6 },
  );
  const mutation = fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), {
    maxLength: 3,
  });

  it('property: on or off, the same results, for generated and byte-mutated bodies', () => {
    let compared = 0;
    fc.assert(
      fc.property(
        arb,
        fc.constantFrom(1 as const, 2 as const),
        fc.constantFrom('legacy' as const, 'utf8' as const),
        mutation,
        (sets, version, names, flips) => {
          const ts = sets.map((x) =>
            series(x.labels, {
              samples: x.timestamps.map((t, k) => ({ value: k, timestamp: t })),
              histograms: x.histogram ? [histogram({})] : [],
            }),
          );
          const buf = version === 1 ? v1(ts) : v2(ts);
          for (const f of flips) buf[f.at % buf.length] = f.byte;
          let index: ReturnType<typeof scanWriteRequestV1>;
          try {
            index = version === 1 ? scanWriteRequestV1(buf) : scanRequestV2(buf);
          } catch {
            return; // the scanner refuses it: the door check never sees it
          }
          const opts = { ...OPTS, names };
          const quick = checkRequest(buf, index, opts);
          const full = checkRequest(buf, index, { ...opts, fastPath: false });
          expect(quick).toEqual(full);
          compared++;
        },
      ),
      { numRuns: 2000 },
    );
    // Most bodies must get through the scanner, or the comparison says little.
    expect(compared).toBeGreaterThan(1000);
  });

  it('a non-ASCII byte anywhere, at any alignment of the body, gets the full check result', () => {
    // The 1.0 quick path reads label regions four bytes at a time from the body's buffer: every
    // byte position at every start offset within a word must still be seen.
    const ts = [
      series([name('up'), l('job', 'api-server'), l('zone', 'eu-west-1a')]),
      series([name('http_requests_total'), l('code', '200'), l('path', '/healthz')]),
    ];
    const plain = v1(ts);
    let nonAscii = 0;
    for (const names of ['legacy', 'utf8'] as const) {
      for (let shift = 0; shift < 4; shift++) {
        for (let at = 0; at < plain.length; at++) {
          for (const byte of [0x80, 0xc3, 0xff]) {
            const buf = Buffer.from(new ArrayBuffer(plain.length + 8), shift, plain.length);
            plain.copy(buf);
            buf[at] = byte;
            let index: ReturnType<typeof scanWriteRequestV1>;
            try {
              index = scanWriteRequestV1(buf);
            } catch {
              continue; // the scanner refuses it: the door check never sees it
            }
            const opts = { ...OPTS, names };
            const quick = checkRequest(buf, index, opts);
            expect(quick).toEqual(checkRequest(buf, index, { ...opts, fastPath: false }));
            if (quick.first?.reason === 'invalid_utf8') nonAscii++;
          }
        }
      }
    }
    // Most label bytes are text, so most positions must have been refused as bad UTF-8.
    expect(nonAscii).toBeGreaterThan(100);
  });

  it('the common shape passes quickly in both versions and name modes (a valid request is unchanged)', () => {
    for (const version of [1, 2] as const) {
      for (const names of ['legacy', 'utf8'] as const) {
        const ts = [series([name('up'), l('job', 'a'), l('zone', 'é')]), series([l('b', 'x'), name('up')])];
        const { buf, index, result } = check(version, ts, { ...OPTS, names });
        expect(result.first).toBeUndefined();
        expect(result.sorted).toBeDefined();
        expect(checkRequest(buf, index, { ...OPTS, names, fastPath: false })).toEqual(result);
      }
    }
  });
});

describe('histogramProblem', () => {
  it.each([
    ['consistent integer buckets', histogram({}), undefined],
    [
      'a count above the buckets',
      histogram({ countInt: 4 }),
      /3 observations in buckets, but the count is 4/,
    ],
    ['a NaN sum allows a larger count', histogram({ countInt: 4, sum: Number.NaN }), undefined],
    [
      'a negative bucket',
      histogram({ positiveDeltas: [2, -3], countInt: 1 }),
      /positive bucket 1 has the negative count -1/,
    ],
    [
      'spans and deltas disagree',
      histogram({ positiveSpans: [{ offset: 0, length: 3 }] }),
      /spans cover 3 buckets, but 2/,
    ],
    [
      'float buckets above the count',
      histogram({
        countInt: 0,
        countFloat: 2,
        zeroCountInt: 0,
        zeroCountFloat: 1,
        positiveDeltas: [],
        positiveCounts: [1, 1],
      }),
      /3 observations in buckets, but the count is 2/,
    ],
  ])('%s', (_, h, want) => {
    const got = histogramProblem(h);
    if (want === undefined) expect(got).toBeUndefined();
    else expect(got).toMatch(want);
  });
});
