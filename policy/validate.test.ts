import { describe, expect, it } from 'vitest';
import { ConfigError, type PolicyDocument } from './load.js';
import { isDateTime, parseDuration, validatePolicies, validateUsage } from './validate.js';

function doc(spec: unknown, over: Partial<PolicyDocument> = {}): PolicyDocument {
  return { name: 'p', namespace: 'team', source: 'policies.yaml:1', spec, ...over };
}

/** The problems validatePolicies reports for one spec, one per line. */
function problems(spec: unknown): string[] {
  try {
    validatePolicies([doc(spec)]);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message.split('\n');
  }
  return [];
}

describe('validatePolicies: structure', () => {
  it.each<[string, unknown, string[]]>([
    [
      'a limit below its minimum',
      { limits: { perMetric: [{ metric: 'x', maxSeries: 0 }] } },
      ['policies.yaml:1: spec.limits.perMetric[0].maxSeries: must be >= 1'],
    ],
    [
      'a missing required field',
      { limits: { perLabel: [{ maxValues: 10 }] } },
      ['policies.yaml:1: spec.limits.perLabel[0].label: is required'],
    ],
    [
      'a misspelt field',
      { limits: { perMetric: [{ metric: 'x', maxSerie: 10, maxSeries: 10 }] } },
      ['policies.yaml:1: spec.limits.perMetric[0].maxSerie: unknown field; did you mean "maxSeries"?'],
    ],
    [
      'a value not in the enum',
      { mode: 'audit' },
      ['policies.yaml:1: spec.mode: must be one of enforce, dryRun, got "audit"'],
    ],
    [
      'a string where a number goes',
      { priority: '5' },
      ['policies.yaml:1: spec.priority: must be an integer, got "5"'],
    ],
    ['a fraction', { priority: 1.5 }, ['policies.yaml:1: spec.priority: must be an integer, got number 1.5']],
    [
      'an object where a list goes',
      { drop: { a: 1 } },
      ['policies.yaml:1: spec.drop: must be a list, got an object'],
    ],
    ['an empty pattern', { drop: [''] }, ['policies.yaml:1: spec.drop[0]: must not be empty']],
    [
      'a malformed duration',
      { limits: { window: '1 hour' } },
      ['policies.yaml:1: spec.limits.window: must be a duration such as 30s, 5m or 1h30m, got "1 hour"'],
    ],
    [
      'a record value of the wrong type',
      { proxySelector: { matchLabels: { 'app.kubernetes.io/name': 3 } } },
      [
        'policies.yaml:1: spec.proxySelector.matchLabels["app.kubernetes.io/name"]: must be a string, got number 3',
      ],
    ],
    [
      'a relabel action Prometheus does not have',
      { relabel: [{ action: 'Replace', target_label: 'a' }] },
      [
        'policies.yaml:1: spec.relabel[0].action: must be one of replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase, got "Replace"; did you mean "replace"?',
      ],
    ],
    [
      'more relabel configs than the CRD allows',
      { relabel: Array.from({ length: 257 }, () => ({ action: 'keep', regex: 'x' })) },
      ['policies.yaml:1: spec.relabel: must have at most 256 items'],
    ],
    [
      'every problem at once, one per field',
      { mode: 'x', limits: { perMetric: [{ metric: '', maxSeries: 0 }, { maxSeries: -1 }] } },
      [
        'policies.yaml:1: spec.mode: must be one of enforce, dryRun, got "x"',
        'policies.yaml:1: spec.limits.perMetric[0].metric: must not be empty',
        'policies.yaml:1: spec.limits.perMetric[0].maxSeries: must be >= 1',
        'policies.yaml:1: spec.limits.perMetric[1].metric: is required',
        'policies.yaml:1: spec.limits.perMetric[1].maxSeries: must be >= 1',
      ],
    ],
  ])('reports %s', (_name, spec, expected) => {
    expect(problems(spec).sort()).toEqual([...expected].sort());
  });

  it('treats null as absent, as the apiserver does', () => {
    expect(problems({ limits: null, match: { selector: null } })).toEqual([]);
  });
});

describe('validatePolicies: semantics', () => {
  it.each<[string, unknown, string[]]>([
    [
      'a selector that does not parse',
      { match: { selector: '{job="api"}}' } },
      ['policies.yaml:1: spec.match.selector: unexpected "}" at column 12'],
    ],
    [
      'a pattern RE2 refuses',
      { drop: ['ok_.*', '(a'], standards: { metricNamePattern: 'a{2,1}' } },
      [
        'policies.yaml:1: spec.drop[1]: invalid regex "(a": missing ): (a',
        'policies.yaml:1: spec.standards.metricNamePattern: invalid regex "a{2,1}": invalid repetition size: {2,1}',
      ],
    ],
    [
      'a backreference, which RE2 does not run',
      { limits: { perLabel: [{ metric: '(a)\\1', label: 'l', maxValues: 1 }] } },
      [
        'policies.yaml:1: spec.limits.perLabel[0].metric: invalid regex "(a)\\\\1": invalid escape sequence: \\1',
      ],
    ],
    [
      'every bad relabel config, not only the first',
      {
        relabel: [
          { action: 'hashmod', source_labels: ['a'], target_label: 'b' },
          { action: 'keep', regex: 'x' },
          { action: 'replace' },
        ],
      },
      [
        'policies.yaml:1: spec.relabel[0]: relabel configuration for hashmod requires non-zero modulus',
        "policies.yaml:1: spec.relabel[2]: relabel configuration for replace action requires 'target_label' value",
      ],
    ],
    [
      'a duration with its units out of order',
      { limits: { window: '30m1h' } },
      [
        'policies.yaml:1: spec.limits.window: "30m1h" is not a duration: units must go from largest to smallest, once each',
      ],
    ],
    [
      'a zero window',
      { limits: { window: '0s' } },
      ['policies.yaml:1: spec.limits.window: "0s" must be longer than zero'],
    ],
    [
      'unused: a keep or exemption pattern RE2 refuses, and an expression that does not parse',
      {
        unused: {
          keep: ['up', '(a'],
          exemptions: [{ metric: '[', expiresAt: '2030-01-01T00:00:00Z' }],
          expressions: ['sum(rate(x[5m])', 'up'],
        },
      },
      [
        'policies.yaml:1: spec.unused.keep[1]: invalid regex "(a": missing ): (a',
        'policies.yaml:1: spec.unused.exemptions[0].metric: invalid regex "[": missing ]: [',
        'policies.yaml:1: spec.unused.expressions[0]: unexpected end of expression at column 16',
      ],
    ],
    [
      'unused: only reads counting, with no window to count them in',
      { unused: { countReferences: false } },
      [
        'policies.yaml:1: spec.unused.countReferences: false needs spec.unused.readWindow (reads are then what counts)',
      ],
    ],
    [
      'unused: a zero read window',
      { unused: { readWindow: '0d' } },
      ['policies.yaml:1: spec.unused.readWindow: "0d" must be longer than zero'],
    ],
    [
      'an overflowLabel without onExceed overflow',
      { limits: { perMetric: [{ metric: 'x', maxSeries: 1, overflowLabel: 'pod' }] } },
      ['policies.yaml:1: spec.limits.perMetric[0].overflowLabel: only used with onExceed overflow'],
    ],
  ])('reports %s', (_name, spec, expected) => {
    expect(problems(spec)).toEqual(expected);
  });

  it('refuses two policies with the same namespace and name, naming both places', () => {
    const docs = [
      doc({}, { source: 'a.yaml:1' }),
      doc({}, { source: 'b.yaml:7' }),
      doc({}, { source: 'c.yaml:1', namespace: 'other' }),
      doc({}, { source: 'd.yaml:1', namespace: undefined, name: 'q' }),
      doc({}, { source: 'e.yaml:3', namespace: 'default', name: 'q' }),
    ];
    expect(() => validatePolicies(docs)).toThrow(
      'b.yaml:7: MetricPolicy team/p is also defined at a.yaml:1\ne.yaml:3: MetricPolicy default/q is also defined at d.yaml:1',
    );
  });

  it('lists the problems of every document in one error', () => {
    const docs = [
      doc({ mode: 'x' }, { source: 'a.yaml:1' }),
      doc({ drop: ['('] }, { source: 'b.yaml:1', name: 'q' }),
    ];
    expect(() => validatePolicies(docs)).toThrow(
      'a.yaml:1: spec.mode: must be one of enforce, dryRun, got "x"\nb.yaml:1: spec.drop[0]: invalid regex "(": missing ): (',
    );
  });
});

describe('validatePolicies: result', () => {
  it('applies the defaults and freezes the spec', () => {
    const input = {
      relabel: [{ source_labels: ['a'], target_label: 'b' }],
      limits: { perMetric: [{ metric: 'x', maxSeries: 5 }] },
    };
    const [p] = validatePolicies([doc(input)]);
    expect(p).toEqual({
      name: 'p',
      namespace: 'team',
      source: 'policies.yaml:1',
      spec: {
        priority: 0,
        mode: 'enforce',
        relabel: [{ source_labels: ['a'], target_label: 'b', action: 'replace' }],
        limits: { window: '1h', perMetric: [{ metric: 'x', maxSeries: 5, onExceed: 'dropNewSeries' }] },
      },
    });
    expect(Object.isFrozen(p!.spec.limits!.perMetric![0])).toBe(true);
    expect(Object.isFrozen(p!.spec.relabel)).toBe(true);
    // The document read from disk is left as it was.
    expect(input.limits.perMetric[0]).toEqual({ metric: 'x', maxSeries: 5 });
  });

  it('accepts an empty spec and an empty configuration', () => {
    expect(validatePolicies([doc({})])[0]!.spec).toEqual({ priority: 0, mode: 'enforce' });
    expect(validatePolicies([])).toEqual([]);
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1d', 86_400_000],
    ['250ms', 250],
    ['1m30s500ms', 90_500],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '1', 'h', '1h1h', '1s1m', '-1s', '1.5h'])('refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow(JSON.stringify(text));
  });
});

describe('validatePolicies: unused', () => {
  it.each<[unknown, string[]]>([
    [
      { unused: { action: 'delete' } },
      ['policies.yaml:1: spec.unused.action: must be one of report, drop, got "delete"'],
    ],
    [
      { unused: { exemptions: [{ metric: 'x', expiresAt: 'next week' }] } },
      [
        'policies.yaml:1: spec.unused.exemptions[0].expiresAt: must be an RFC 3339 date-time such as 2026-12-31T00:00:00Z, got "next week"',
      ],
    ],
    [
      { unused: { exemptions: [{ metric: 'x' }] } },
      ['policies.yaml:1: spec.unused.exemptions[0].expiresAt: is required'],
    ],
    [{ unused: { keep: ['up'], metrics: ['x'], expressions: ['sum by (job) (y)'], action: 'drop' } }, []],
  ])('%j', (spec, expected) => {
    expect(problems(spec)).toEqual(expected);
  });

  it.each([
    ['2026-12-31T00:00:00Z', true],
    ['2026-12-31T00:00:00.5+02:00', true],
    ['2026-12-31', false],
    ['2026-13-31T00:00:00Z', false],
    ['tomorrow', false],
  ])('isDateTime(%j) is %s', (text, ok) => {
    expect(isDateTime(text)).toBe(ok);
  });
});

describe('validateUsage', () => {
  const usageDoc = (spec: unknown) => ({ name: 'u', source: 'usage.yaml:1', spec });
  const usageProblems = (spec: unknown): string[] => {
    try {
      validateUsage([usageDoc(spec)]);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.message.split('\n');
    }
    return [];
  };

  it('merges the reads of every document: the latest start, the latest read per metric', () => {
    const u = validateUsage([
      usageDoc({
        metrics: [],
        reads: { since: '2026-11-01T00:00:00Z', metrics: [{ name: 'a', lastRead: '2026-11-20T00:00:00Z' }] },
      }),
      usageDoc({
        metrics: [],
        reads: { since: '2026-11-10T00:00:00Z', metrics: [{ name: 'a', lastRead: '2026-11-02T00:00:00Z' }] },
      }),
      usageDoc({ metrics: [] }),
    ]);
    expect(u.reads?.sinceMs).toBe(Date.parse('2026-11-10T00:00:00Z'));
    expect(u.reads?.lastRead.get('a')).toBe(Date.parse('2026-11-20T00:00:00Z'));
    expect(validateUsage([usageDoc({ metrics: [] })]).reads).toBeUndefined();
    expect(usageProblems({ metrics: [], reads: { since: 'yesterday', metrics: [] } })).toEqual([
      expect.stringContaining('spec.reads.since'),
    ]);
  });

  it('merges every document and counts them', () => {
    const u = validateUsage([
      usageDoc({ metrics: [{ name: 'up', sources: ['a'] }] }),
      usageDoc({ metrics: [{ pattern: 'node_.*', sources: [], labels: ['job'] }] }),
    ]);
    expect(u.documents).toBe(2);
    expect(u.metrics.map((m) => m.name ?? m.pattern)).toEqual(['up', 'node_.*']);
    expect(validateUsage([]).documents).toBe(0);
  });

  it.each<[unknown, string[]]>([
    [{}, ['usage.yaml:1: spec.metrics: is required']],
    [
      { metrics: [{ sources: [] }] },
      ['usage.yaml:1: spec.metrics[0]: exactly one of name and pattern is required'],
    ],
    [
      { metrics: [{ name: 'a', pattern: 'b', sources: [] }] },
      ['usage.yaml:1: spec.metrics[0]: exactly one of name and pattern is required'],
    ],
    [
      { metrics: [{ pattern: '(', sources: [] }] },
      ['usage.yaml:1: spec.metrics[0].pattern: invalid regex "(": missing ): ('],
    ],
    [
      { metrics: [{ name: 'a', sources: [], labels: [], allLabelsExcept: [] }] },
      ['usage.yaml:1: spec.metrics[0]: labels and allLabelsExcept cannot both be given'],
    ],
    [
      { metrics: [{ name: 'a', sources: [], typo: 1 }] },
      ['usage.yaml:1: spec.metrics[0].typo: unknown field'],
    ],
  ])('reports %j', (spec, expected) => {
    expect(usageProblems(spec)).toEqual(expected);
  });
});
