import type { SyntaxNode } from '@lezer/common';
import { parser } from '@prometheus-io/lezer-promql';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unquote } from '../../policy/promql.js';
import { addExpression, emptyReads, expressionsOf, readsOf } from './extract.js';

const show = (endpoint: Parameters<typeof readsOf>[0], params: string) => {
  const r = readsOf(endpoint, new URLSearchParams(params));
  return {
    names: [...r.names].sort(),
    patterns: [...r.patterns].sort(),
    parsed: r.parsed,
    unparsed: r.unparsed,
    unnamed: r.unnamed,
  };
};

describe('readsOf', () => {
  it.each([
    ['query', 'query=up', { names: ['up'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 }],
    [
      'query_range',
      `query=${encodeURIComponent('sum(rate(a_total[5m])) / on(job) group_left b')}&step=15`,
      { names: ['a_total', 'b'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 },
    ],
    [
      'query',
      `query=${encodeURIComponent('count({__name__=~"node_.+", job="x"})')}`,
      { names: [], patterns: ['node_.+'], parsed: 1, unparsed: 0, unnamed: 0 },
    ],
    [
      'query',
      `query=${encodeURIComponent('{job="x"}')}`,
      { names: [], patterns: [], parsed: 1, unparsed: 0, unnamed: 1 },
    ],
    [
      'query',
      `query=${encodeURIComponent('{__name__!="up"}')}`,
      { names: [], patterns: [], parsed: 1, unparsed: 0, unnamed: 1 },
    ],
    [
      'query',
      `query=${encodeURIComponent('sum(rate(')}`,
      { names: [], patterns: [], parsed: 0, unparsed: 1, unnamed: 0 },
    ],
    // Prometheus reads the first `query` only.
    ['query', 'query=a&query=b', { names: ['a'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 }],
    [
      'series',
      'match[]=a&match[]=b%7Bjob%3D%22x%22%7D&match[]=%7B',
      { names: ['a', 'b'], patterns: [], parsed: 2, unparsed: 1, unnamed: 0 },
    ],
    ['label_values', 'match[]=up', { names: ['up'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 }],
    ['labels', '', { names: [], patterns: [], parsed: 0, unparsed: 0, unnamed: 0 }],
    [
      'federate',
      'match[]=%7B__name__%3D%22x%22%7D',
      { names: ['x'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 },
    ],
    ['metadata', 'metric=up', { names: [], patterns: [], parsed: 0, unparsed: 0, unnamed: 0 }],
    [
      'query_exemplars',
      'query=rq_total',
      { names: ['rq_total'], patterns: [], parsed: 1, unparsed: 0, unnamed: 0 },
    ],
  ] as const)('%s %s', (endpoint, params, want) => {
    expect(show(endpoint, params)).toEqual(want);
  });

  it('counts an over-long expression as unparsed without parsing it', () => {
    const r = emptyReads();
    addExpression(r, `up${' + up'.repeat(60_000)}`);
    expect(r).toMatchObject({ parsed: 0, unparsed: 1 });
    expect(expressionsOf('other', new URLSearchParams('query=up'))).toEqual([]);
  });
});

// The reference: every VectorSelector of the lezer tree, its name from the identifier or from a
// `__name__` matcher, walked directly and independently of proxy/pipeline/promql.ts.
function reference(expr: string): { names: Set<string>; patterns: Set<string>; unnamed: number } {
  const names = new Set<string>();
  const patterns = new Set<string>();
  let unnamed = 0;
  const tree = parser.parse(expr);
  const visit = (n: SyntaxNode) => {
    if (n.name === 'VectorSelector') {
      let name: string | undefined;
      let pattern: string | undefined;
      const id = n.getChild('Identifier');
      if (id !== null) name = expr.slice(id.from, id.to);
      for (let m = n.getChild('LabelMatchers')?.firstChild ?? null; m !== null; m = m.nextSibling) {
        const label = m.getChild('LabelName');
        const value = m.getChild('StringLiteral');
        if (label === null || value === null || expr.slice(label.from, label.to) !== '__name__') continue;
        const op = m.getChild('MatchOp')?.firstChild?.name;
        if (op === 'EqlSingle') name = unquote(expr, value);
        else if (op === 'EqlRegex' && name === undefined) pattern = unquote(expr, value);
      }
      if (name !== undefined) names.add(name);
      else if (pattern !== undefined && pattern !== '.*' && pattern !== '.+') patterns.add(pattern);
      else unnamed++;
    }
    for (let c = n.firstChild; c !== null; c = c.nextSibling) visit(c);
  };
  visit(tree.topNode);
  return { names, patterns, unnamed };
}

const metric = fc.constantFrom('up', 'http_requests_total', 'node_cpu_seconds_total', 'a:b:rate5m', 'x');
const label = fc.constantFrom('job', 'code', 'instance', 'le');
const value = fc.constantFrom('api', '5..', 'x|y', '');
const matcher = fc.oneof(
  fc
    .tuple(label, fc.constantFrom('=', '!=', '=~', '!~'), value)
    .map(([l, o, v]) => `${l}${o}${JSON.stringify(v)}`),
  metric.map((m) => `__name__="${m}"`),
  fc.constantFrom('node_.*', 'http_.+', '.*', 'up|x').map((p) => `__name__=~"${p}"`),
);
const selector = fc.oneof(
  metric,
  fc.tuple(metric, fc.array(matcher, { maxLength: 3 })).map(([m, ms]) => `${m}{${ms.join(',')}}`),
  fc.array(matcher, { minLength: 1, maxLength: 3 }).map((ms) => `{${ms.join(',')}}`),
);
const expr: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    selector,
    fc.constantFrom('1', '0.5', 'time()'),
    tie('e').map((e) => `(${e})`),
    fc
      .tuple(selector, fc.constantFrom('rate', 'increase', 'avg_over_time'))
      .map(([s, f]) => `${f}(${s}[5m])`),
    fc
      .tuple(
        fc.constantFrom('sum', 'max', 'count'),
        fc.constantFrom('', ' by (job)', ' without (code)'),
        tie('e'),
      )
      .map(([a, m, e]) => `${a}${m} (${e})`),
    fc
      .tuple(tie('e'), fc.constantFrom('+', '/', ' and ', ' or ', ' > bool '), tie('e'))
      .map(([a, o, b]) => `${a}${o}${b}`),
    fc.tuple(tie('e'), tie('e')).map(([a, b]) => `${a} / on (job) group_left (code) ${b}`),
    fc.tuple(selector).map(([s]) => `${s} offset 5m`),
    tie('e').map((e) => `topk(3, ${e})`),
    tie('e').map((e) => `label_replace(${e}, "dst", "$1", "src", "(.*)")`),
    tie('e').map((e) => `max_over_time((${e})[10m:1m])`),
    tie('e').map((e) => `histogram_quantile(0.9, ${e})`),
  ),
})).e;

describe('metric extraction over generated PromQL', () => {
  it('reads exactly what a walk of the lezer tree finds, for every expression the grammar accepts', () => {
    fc.assert(
      fc.property(expr, (e) => {
        let error = false;
        parser.parse(e).iterate({
          enter: (n) => {
            if (n.type.isError) error = true;
          },
        });
        const r = emptyReads();
        addExpression(r, e);
        if (error) {
          expect(r.unparsed).toBe(1);
          return;
        }
        const want = reference(e);
        expect({ names: [...r.names].sort(), patterns: [...r.patterns].sort(), unnamed: r.unnamed }).toEqual({
          names: [...want.names].sort(),
          patterns: [...want.patterns].sort(),
          unnamed: want.unnamed,
        });
      }),
      { numRuns: 500 },
    );
  });
});
