import { describe, expect, it } from 'vitest';
import type { MetricPolicySpecT } from '../../crds/metric-policy.js';
import {
  decodeRequestV2,
  decodeWriteRequestV1,
  encodeRequestV2,
  encodeWriteRequestV1,
} from '../codec/proto.js';
import { scanRequestV2, scanWriteRequestV1 } from '../codec/scan.js';
import type { Label, RequestV2, TimeSeriesV1, WriteRequestV1 } from '../codec/types.js';
import { compilePipeline, OVERFLOW_VALUE } from './compile.js';
import { type EngineObserver, PolicyEngine } from './engine.js';

const opts = {
  verdictCacheSize: 1000,
  maxTrackedSeries: 1000,
  maxTrackedLabelValues: 1000,
  maxMetricNames: 100,
};

function series(labels: Record<string, string>, samples = 1): TimeSeriesV1 {
  const ls: Label[] = Object.entries(labels)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return {
    labels: ls,
    samples: Array.from({ length: samples }, (_, k) => ({ value: k, timestamp: 1000 + k })),
    exemplars: [],
    histograms: [],
  };
}

interface Counted {
  slots: Map<string, number>;
  forwarded: number;
}

function engineFor(policies: Array<{ name: string; spec: MetricPolicySpecT }>) {
  const pipeline = compilePipeline(policies.map((p) => ({ ...p, namespace: undefined })));
  const counted: Counted = { slots: new Map(), forwarded: 0 };
  const observer: EngineObserver = {
    slot(slot, _metric, samples) {
      const s = pipeline.slots[slot]!;
      const key = `${s.policy}/${s.rule}/${s.reason}/${s.action}/${s.mode}`;
      counted.slots.set(key, (counted.slots.get(key) ?? 0) + samples);
    },
    forwarded() {
      counted.forwarded++;
      return false;
    },
    newSeries() {},
  };
  return { engine: new PolicyEngine(pipeline, opts, observer), counted };
}

function runV1(engine: PolicyEngine, req: WriteRequestV1, tenant?: string) {
  const buf = Buffer.from(encodeWriteRequestV1(req));
  const result = engine.process(buf, scanWriteRequestV1(buf), tenant, Date.now());
  const out = result.unchanged ? req : decodeWriteRequestV1(result.body!);
  return {
    result,
    out,
    names: out.timeseries.map((t) => Object.fromEntries(t.labels.map((l) => [l.name, l.value]))),
  };
}

const req = (...ts: TimeSeriesV1[]): WriteRequestV1 => ({ timeseries: ts, metadata: [] });

describe('PolicyEngine', () => {
  it('without policies forwards the request untouched', () => {
    const { engine } = engineFor([]);
    const { result } = runV1(engine, req(series({ __name__: 'up', job: 'a' })));
    expect(result.unchanged).toBe(true);
    expect(result.samples).toBe(1);
  });

  it('writes each output into the buffer of the last one without keeping any of its bytes', () => {
    // The engine lends one output buffer from request to request: a large request, then a small
    // one, then a rewrite-free one, then the large one again must each come out whole and alone.
    const { engine } = engineFor([
      { name: 'p', spec: { relabel: [{ action: 'replace', target_label: 'team', replacement: 'x' }] } },
    ]);
    const big = req(
      ...Array.from({ length: 200 }, (_, k) => series({ __name__: `m_${k}`, pod: `pod-${k}` }, 3)),
    );
    const small = req(series({ __name__: 'up', job: 'a' }));
    const first = runV1(engine, big).names;
    expect(first).toHaveLength(200);
    expect(first[199]).toEqual({ __name__: 'm_199', pod: 'pod-199', team: 'x' });
    expect(runV1(engine, small).names).toEqual([{ __name__: 'up', job: 'a', team: 'x' }]);
    expect(runV1(engine, big).names).toEqual(first);
    expect(runV1(engine, small).out.timeseries[0]!.samples).toEqual([{ value: 0, timestamp: 1000 }]);
  });

  it('drops metrics by name and counts the samples by policy and rule', () => {
    const { engine, counted } = engineFor([{ name: 'p', spec: { drop: ['debug_.*'] } }]);
    const { result, names } = runV1(
      engine,
      req(series({ __name__: 'debug_x', job: 'a' }, 3), series({ __name__: 'up', job: 'a' }, 2)),
    );
    expect(result.unchanged).toBe(false);
    expect(names).toEqual([{ __name__: 'up', job: 'a' }]);
    expect(result.samples).toBe(2);
    expect(counted.slots.get('p/drop[0]/metric_dropped/dropped/enforce')).toBe(3);
  });

  it('relabels, keeping samples, and re-encodes only the changed series', () => {
    const { engine, counted } = engineFor([
      {
        name: 'p',
        spec: {
          relabel: [
            { source_labels: ['pod'], regex: '(.*)-[a-z0-9]+', target_label: 'workload', replacement: '$1' },
            { action: 'labeldrop', regex: 'pod' },
          ],
        },
      },
    ]);
    const input = req(series({ __name__: 'cpu', pod: 'api-7f9' }, 2), series({ __name__: 'up', job: 'x' }));
    const { out } = runV1(engine, input);
    expect(out.timeseries).toHaveLength(2);
    const rewritten = out.timeseries.find((t) => t.labels.some((l) => l.name === 'workload'))!;
    expect(rewritten.labels).toEqual([
      { name: '__name__', value: 'cpu' },
      { name: 'workload', value: 'api' },
    ]);
    expect(rewritten.samples).toEqual(input.timeseries[0]!.samples);
    expect(counted.slots.get('p/relabel/relabel_rewritten/rewritten/enforce')).toBe(2);
  });

  it('rewrites a 2.0 request, adding the new strings to its symbols', () => {
    const { engine } = engineFor([
      { name: 'p', spec: { relabel: [{ target_label: 'team', replacement: 'payments' }] } },
    ]);
    const v2: RequestV2 = {
      symbols: ['', '__name__', 'up', 'job', 'a'],
      timeseries: [
        {
          labelsRefs: [1, 2, 3, 4],
          samples: [{ value: 1, timestamp: 5 }],
          histograms: [],
          exemplars: [{ labelsRefs: [3, 4], value: 2, timestamp: 5 }],
          metadata: { type: 0, helpRef: 0, unitRef: 0 },
          createdTimestamp: 0,
        },
      ],
    };
    const buf = Buffer.from(encodeRequestV2(v2));
    const result = engine.process(buf, scanRequestV2(buf), undefined, Date.now());
    const out = decodeRequestV2(result.body!);
    const ts = out.timeseries[0]!;
    const labels = [];
    for (let k = 0; k < ts.labelsRefs.length; k += 2)
      labels.push([out.symbols[ts.labelsRefs[k]!], out.symbols[ts.labelsRefs[k + 1]!]]);
    expect(labels).toEqual([
      ['__name__', 'up'],
      ['job', 'a'],
      ['team', 'payments'],
    ]);
    expect(ts.samples).toEqual([{ value: 1, timestamp: 5 }]);
    expect(ts.exemplars[0]!.labelsRefs.map((r) => out.symbols[r])).toEqual(['job', 'a']);
  });

  it('standards: report counts and forwards, drop drops', () => {
    const spec = (onViolation: 'drop' | 'report'): MetricPolicySpecT => ({
      standards: { requiredLabels: ['team'], forbiddenLabels: ['user_id'], onViolation },
    });
    const input = req(
      series({ __name__: 'a', team: 'x' }),
      series({ __name__: 'b' }),
      series({ __name__: 'c', team: 'x', user_id: '1' }),
    );
    const report = engineFor([{ name: 'r', spec: spec('report') }]);
    expect(runV1(report.engine, input).result.unchanged).toBe(true);
    expect(report.counted.slots.get('r/standards.requiredLabels/required_label/reported/enforce')).toBe(1);
    expect(report.counted.slots.get('r/standards.forbiddenLabels/forbidden_label/reported/enforce')).toBe(1);
    const drop = engineFor([{ name: 'd', spec: spec('drop') }]);
    expect(runV1(drop.engine, input).names).toEqual([{ __name__: 'a', team: 'x' }]);
  });

  it('dryRun changes nothing but counts what would have been done', () => {
    const { engine, counted } = engineFor([
      {
        name: 'p',
        spec: { mode: 'dryRun', drop: ['up'], relabel: [{ target_label: 'x', replacement: 'y' }] },
      },
    ]);
    const { result } = runV1(engine, req(series({ __name__: 'up' }, 4), series({ __name__: 'other' })));
    expect(result.unchanged).toBe(true);
    expect(counted.slots.get('p/drop[0]/metric_dropped/dropped/dryRun')).toBe(4);
    expect(counted.slots.get('p/relabel/relabel_rewritten/rewritten/dryRun')).toBe(5);
  });

  it('match: selector and tenants decide which series a policy sees', () => {
    const { engine } = engineFor([
      { name: 'p', spec: { match: { selector: '{job=~"api-.*"}', tenants: ['team-a'] }, drop: ['.*'] } },
    ]);
    const input = req(series({ __name__: 'm', job: 'api-1' }), series({ __name__: 'm', job: 'db' }));
    expect(runV1(engine, input, 'team-a').names).toEqual([{ __name__: 'm', job: 'db' }]);
    expect(runV1(engine, input, 'team-b').result.unchanged).toBe(true);
    expect(runV1(engine, input).result.unchanged).toBe(true);
  });

  it('limits dropNewSeries: series beyond the limit are dropped, admitted ones keep flowing', () => {
    const { engine, counted } = engineFor([
      { name: 'p', spec: { limits: { perMetric: [{ metric: 'http_.*', maxSeries: 2 }] } } },
    ]);
    const s = (id: string) => series({ __name__: 'http_requests_total', id });
    expect(runV1(engine, req(s('1'), s('2'), s('3'))).names.map((n) => n.id)).toEqual(['1', '2']);
    expect(runV1(engine, req(s('4'), s('2'), s('1'))).names.map((n) => n.id)).toEqual(['2', '1']);
    expect(runV1(engine, req(series({ __name__: 'other', id: '9' }))).result.unchanged).toBe(true);
    expect(counted.slots.get('p/limits.perMetric[0]/series_limit/dropped/enforce')).toBe(2);
  });

  it('limits overflow: the offending label is replaced and the collapsed series are aggregated', () => {
    const { engine } = engineFor([
      {
        name: 'p',
        spec: {
          limits: {
            perMetric: [{ metric: 'req', maxSeries: 2, onExceed: 'overflow', overflowLabel: 'user' }],
          },
        },
      },
    ]);
    const s = (u: string, base: number) => ({
      ...series({ __name__: 'req', user: u }),
      samples: [
        { value: 1, timestamp: base },
        { value: 10, timestamp: base + 1 },
      ],
    });
    const first = runV1(engine, req(s('a', 1000), s('b', 1000), s('c', 1000), s('d', 1000)));
    expect(first.names.map((n) => n.user)).toEqual(['a', 'b', OVERFLOW_VALUE]);
    // c and d collapse onto one series; samples at the same timestamp are summed, so the receiver
    // never sees a duplicate timestamp (which it would reject with a 400 for the whole request).
    expect(first.out.timeseries[2]!.samples).toEqual([
      { value: 2, timestamp: 1000 },
      { value: 20, timestamp: 1001 },
    ]);
    expect(first.result.samples).toBe(6);
    // A later request: timestamps up to the newest already forwarded (1001) are left out, newer ones flow.
    const again = runV1(engine, req(s('c', 1000), s('e', 1001), s('d', 2000)));
    expect(again.out.timeseries.map((t) => t.samples)).toEqual([
      [
        { value: 10, timestamp: 1002 },
        { value: 1, timestamp: 2000 },
        { value: 10, timestamp: 2001 },
      ],
    ]);
  });

  it('per-label limits cap distinct values per metric', () => {
    const { engine } = engineFor([
      { name: 'p', spec: { limits: { perLabel: [{ label: 'path', maxValues: 2, onExceed: 'overflow' }] } } },
    ]);
    const s = (path: string, code: string) => series({ __name__: 'hits', path, code });
    const { names } = runV1(engine, req(s('/a', '200'), s('/b', '200'), s('/c', '200'), s('/a', '500')));
    // Rewritten series are appended after the untouched ones; order within a request carries no meaning.
    expect(names.map((n) => `${n.path} ${n.code}`).sort()).toEqual([
      '/a 200',
      '/a 500',
      '/b 200',
      `${OVERFLOW_VALUE} 200`,
    ]);
  });

  it('policies apply in priority order, each seeing what the previous left', () => {
    const { engine } = engineFor([
      { name: 'b-second', spec: { priority: 10, drop: ['renamed'] } },
      {
        name: 'a-first',
        spec: { priority: 1, relabel: [{ target_label: '__name__', replacement: 'renamed' }] },
      },
    ]);
    expect(runV1(engine, req(series({ __name__: 'x' }))).out.timeseries).toEqual([]);
  });

  it('keeps other top-level records (metadata) when series change', () => {
    const { engine } = engineFor([{ name: 'p', spec: { drop: ['a'] } }]);
    const input: WriteRequestV1 = {
      timeseries: [series({ __name__: 'a' }), series({ __name__: 'b' })],
      metadata: [{ type: 1, metricFamilyName: 'b', help: 'help', unit: '' }],
    };
    const { out } = runV1(engine, input);
    expect(out.metadata).toEqual(input.metadata);
    expect(out.timeseries).toHaveLength(1);
  });

  it('a verdict cache smaller than the working set still gives every series its verdict', () => {
    const pipeline = compilePipeline([
      {
        name: 'p',
        namespace: undefined,
        spec: { relabel: [{ source_labels: ['id'], target_label: 'copy' }] },
      },
    ]);
    const observer: EngineObserver = { slot() {}, forwarded: () => false, newSeries() {} };
    const engine = new PolicyEngine(pipeline, { ...opts, verdictCacheSize: 3 }, observer);
    const input = req(...Array.from({ length: 10 }, (_, k) => series({ __name__: 'm', id: String(k) })));
    for (let round = 0; round < 3; round++) {
      const { names } = runV1(engine, input);
      expect(names).toEqual(
        Array.from({ length: 10 }, (_, k) => ({ __name__: 'm', copy: String(k), id: String(k) })),
      );
    }
  });
});

describe('PolicyEngine: unused', () => {
  const usage = { documents: 1, metrics: [{ name: 'used_total', sources: ['Dashboard ns/d'] }] };

  function unusedEngine(spec: MetricPolicySpecT, metrics = usage.metrics) {
    const compile = (m: typeof metrics) =>
      compilePipeline([{ name: 'p', namespace: undefined, spec }], { documents: 1, metrics: m });
    const pipeline = compile(metrics);
    const counted: Counted & { unused: string[] } = { slots: new Map(), forwarded: 0, unused: [] };
    const engine: PolicyEngine = new PolicyEngine(pipeline, opts, {
      slot(slot, _metric, samples) {
        const s = engine.pipeline.slots[slot]!;
        const key = `${s.rule}/${s.reason}/${s.action}/${s.mode}`;
        counted.slots.set(key, (counted.slots.get(key) ?? 0) + samples);
      },
      forwarded() {
        counted.forwarded++;
        return false;
      },
      newSeries() {},
      unused(policy, metric, _hash, samples) {
        counted.unused.push(`${policy}:${engine.interner.name(metric)}:${samples}`);
      },
    });
    return { engine, counted, compile };
  }

  const traffic = () =>
    req(
      series({ __name__: 'used_total', job: 'a' }),
      series({ __name__: 'unused_total', job: 'a' }, 2),
      series({ __name__: 'kept_total', job: 'a' }),
    );

  it('report: everything is forwarded, unused series are counted', () => {
    const { engine, counted } = unusedEngine({ unused: { action: 'report', keep: ['kept_.*'] } });
    const { result, names } = runV1(engine, traffic());
    expect(result.unchanged).toBe(true);
    expect(names.map((n) => n.__name__)).toEqual(['used_total', 'unused_total', 'kept_total']);
    expect(counted.slots.get('unused/metric_unused/reported/enforce')).toBe(2);
    expect(counted.unused).toEqual(['0:unused_total:2']);
  });

  it('drop: only read and kept metrics are forwarded', () => {
    const { engine, counted } = unusedEngine({ unused: { action: 'drop', keep: ['kept_.*'] } });
    const { names } = runV1(engine, traffic());
    expect(names.map((n) => n.__name__)).toEqual(['used_total', 'kept_total']);
    expect(counted.slots.get('unused/metric_unused/dropped/enforce')).toBe(2);
    expect(counted.unused).toEqual(['0:unused_total:2']);
  });

  it('drop in dryRun: counts what it would drop and forwards everything', () => {
    const { engine, counted } = unusedEngine({ mode: 'dryRun', unused: { action: 'drop' } });
    const { result, names } = runV1(engine, traffic());
    expect(result.unchanged).toBe(true);
    expect(names).toHaveLength(3);
    expect(counted.slots.get('unused/metric_unused/dropped/dryRun')).toBe(3);
  });

  it('a metric that becomes read flows again with the next pipeline', () => {
    const { engine, compile } = unusedEngine({ unused: { action: 'drop' } });
    expect(runV1(engine, traffic()).names.map((n) => n.__name__)).toEqual(['used_total']);
    engine.setPipeline(compile([...usage.metrics, { name: 'unused_total', sources: ['Dashboard ns/new'] }]));
    expect(runV1(engine, traffic()).names.map((n) => n.__name__)).toEqual(['used_total', 'unused_total']);
  });

  it('a cached verdict does not outlive the exemption it relied on', () => {
    const expiresAt = '2026-07-01T00:00:00Z';
    const end = Date.parse(expiresAt);
    const { engine } = unusedEngine({
      unused: { action: 'drop', exemptions: [{ metric: 'kept_total', expiresAt }] },
    });
    const run = (nowMs: number) => {
      const buf = Buffer.from(encodeWriteRequestV1(traffic()));
      const r = engine.process(buf, scanWriteRequestV1(buf), undefined, nowMs);
      return (r.unchanged ? traffic() : decodeWriteRequestV1(r.body!)).timeseries.map(
        (t) => t.labels.find((l) => l.name === '__name__')?.value,
      );
    };
    expect(run(end - 1000)).toEqual(['used_total', 'kept_total']);
    expect(run(end - 1)).toEqual(['used_total', 'kept_total']);
    expect(run(end)).toEqual(['used_total']);
  });
});

describe('PolicyEngine: unread labels', () => {
  const usage = {
    documents: 1,
    metrics: [{ name: 'requests_total', sources: ['Dashboard ns/d'], labels: ['job'] }],
  };
  function labelsEngine(spec: MetricPolicySpecT) {
    const pipeline = compilePipeline([{ name: 'p', namespace: undefined, spec }], usage);
    const counted: Counted & { pairs: string[]; unread: number } = {
      slots: new Map(),
      forwarded: 0,
      pairs: [],
      unread: 0,
    };
    const engine: PolicyEngine = new PolicyEngine(pipeline, opts, {
      slot(slot, _metric, samples) {
        const s = engine.pipeline.slots[slot]!;
        const key = `${s.rule}/${s.reason}/${s.action}/${s.mode}`;
        counted.slots.set(key, (counted.slots.get(key) ?? 0) + samples);
      },
      forwarded() {
        counted.forwarded++;
        return false;
      },
      newSeries() {},
      labelPair(metric, label) {
        counted.pairs.push(`${engine.interner.name(metric)}/${label}`);
        return counted.pairs.length;
      },
      unreadLabels(keys) {
        counted.unread += keys.length / 3;
      },
    });
    return { engine, counted };
  }
  const pods = (ts: number) =>
    req(
      ...['a', 'b', 'c'].map((pod, k) => ({
        ...series({ __name__: 'requests_total', job: 'api', pod }),
        samples: [{ value: k + 1, timestamp: ts }],
      })),
    );

  it('aggregate: series differing only in unread labels collapse, summed per timestamp', () => {
    const { engine, counted } = labelsEngine({ unused: { labels: 'aggregate' } });
    const first = runV1(engine, pods(5000));
    expect(first.out.timeseries).toHaveLength(1);
    expect(first.names).toEqual([{ __name__: 'requests_total', job: 'api', pod: '__cardinal_aggregated__' }]);
    expect(first.out.timeseries[0]?.samples).toEqual([{ value: 6, timestamp: 5000 }]);
    expect(counted.slots.get('unused.labels/label_unused/rewritten/enforce')).toBe(3);
    // Named once per new label set (a verdict-cache miss); the statistics intern the pair.
    expect(new Set(counted.pairs)).toEqual(new Set(['requests_total/pod']));
    expect(counted.unread).toBe(3);
    // The same timestamp again would be a duplicate for the receiver: not forwarded twice.
    expect(runV1(engine, pods(5000)).out.timeseries).toHaveLength(0);
    expect(runV1(engine, pods(6000)).out.timeseries[0]?.samples).toEqual([{ value: 6, timestamp: 6000 }]);
  });

  it('report: counts and forwards every series as it is; dryRun aggregate changes nothing', () => {
    for (const spec of [
      { unused: { labels: 'report' as const } },
      { mode: 'dryRun' as const, unused: { labels: 'aggregate' as const } },
    ]) {
      const { engine, counted } = labelsEngine(spec);
      const { result, names } = runV1(engine, pods(5000));
      expect(result.unchanged).toBe(true);
      expect(names.map((n) => n.pod)).toEqual(['a', 'b', 'c']);
      expect([...counted.slots.keys()]).toEqual([
        spec.mode === 'dryRun'
          ? 'unused.labels/label_unused/rewritten/dryRun'
          : 'unused.labels/label_unused/reported/enforce',
      ]);
    }
  });

  it('keepLabels are never aggregated', () => {
    const { engine } = labelsEngine({ unused: { labels: 'aggregate', keepLabels: ['pod'] } });
    expect(runV1(engine, pods(5000)).names.map((n) => n.pod)).toEqual(['a', 'b', 'c']);
  });
});
