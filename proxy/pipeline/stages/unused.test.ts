import { describe, expect, it } from 'vitest';
import type { UnusedT } from '../../../crds/metric-policy.js';
import { compileUnused, compileUsed, isUnused, isUsed, nextExpiry, unusedLabels } from './unused.js';

const at = (_field: string, fn: () => unknown) => fn();
const usage = {
  documents: 1,
  metrics: [
    { name: 'up', sources: ['PrometheusRule ns/r'] },
    { pattern: 'node_network_.*_bytes_total', sources: ['Dashboard ns/d'] },
  ],
};
const T0 = Date.parse('2026-06-01T00:00:00Z');

function compiled(spec: UnusedT) {
  const u = compileUnused(spec, usage, 7, at);
  if (u === undefined) throw new Error('not compiled');
  return u;
}

describe('isUnused', () => {
  const u = compiled({
    action: 'drop',
    keep: ['kube_.*'],
    metrics: ['extra_metric'],
    expressions: ['sum by (job) (rate(http_requests_total[5m]))', '{__name__=~"go_gc_.+"}'],
    exemptions: [
      { metric: 'legacy_.*', expiresAt: '2026-07-01T00:00:00Z' },
      { metric: 'old_.*', expiresAt: '2026-05-01T00:00:00Z' },
    ],
  });

  it.each([
    ['up', false, 'read by a rule'],
    ['node_network_receive_bytes_total', false, 'matches a regex matcher on __name__'],
    ['node_network_receive_packets_total', true, 'the regex is anchored'],
    ['extra_metric', false, "listed in the policy's metrics"],
    ['http_requests_total', false, "read by the policy's expressions"],
    ['go_gc_duration_seconds', false, "matched by a regex in the policy's expressions"],
    ['kube_pod_info', false, 'kept'],
    ['legacy_requests', false, 'exempt until July'],
    ['old_requests', true, 'its exemption expired in May'],
    ['container_cpu_usage_seconds_total', true, 'nothing reads it'],
    ['', false, 'a series without a name is never judged'],
  ])('%s: unused=%s (%s)', (name, want) => {
    expect(isUnused(u, name, T0)).toBe(want);
  });

  it('an exemption stops protecting when it expires', () => {
    expect(isUnused(u, 'legacy_requests', Date.parse('2026-07-01T00:00:00Z') - 1)).toBe(false);
    expect(isUnused(u, 'legacy_requests', Date.parse('2026-07-01T00:00:00Z'))).toBe(true);
  });

  it('nextExpiry is the first expiry still to come', () => {
    expect(nextExpiry([u, undefined], T0)).toBe(Date.parse('2026-07-01T00:00:00Z'));
    expect(nextExpiry([u], Date.parse('2026-08-01T00:00:00Z'))).toBe(Number.POSITIVE_INFINITY);
  });

  it('compiles to nothing when no usage is known, so that drop cannot drop everything', () => {
    expect(compileUnused({ action: 'drop' }, { documents: 0, metrics: [] }, 0, at)).toBeUndefined();
    expect(
      compileUnused({ action: 'drop', metrics: ['up'] }, { documents: 0, metrics: [] }, 0, at),
    ).toBeDefined();
    // An empty MetricUsage document is known usage: nothing is read.
    const none = compileUnused({ action: 'drop' }, { documents: 1, metrics: [] }, 0, at)!;
    expect(isUnused(none, 'up', T0)).toBe(true);
  });

  it('the used set compiles every pattern into one program', () => {
    const used = compileUsed([
      { pattern: 'a_.*', sources: [] },
      { pattern: 'b|c', sources: [] },
    ]);
    expect(used.patternSources).toEqual(['a_.*', 'b|c']);
    expect(['a_x', 'b', 'c', 'bc', 'xa_'].map((n) => isUsed(used, n))).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
  });
});

describe('unusedLabels', () => {
  const labelsUsage = {
    documents: 1,
    metrics: [
      { name: 'http_requests_total', sources: ['d'], labels: ['code', 'job'] },
      { name: 'latency_bucket', sources: ['d'], allLabelsExcept: ['pod', 'instance'] },
      { name: 'raw_panel', sources: ['d'], allLabelsExcept: [] },
      { name: 'no_need_given', sources: ['d'] },
      { pattern: 'latency_.*', sources: ['r'], allLabelsExcept: ['pod'] },
      { pattern: 'node_.*', sources: ['r'], labels: ['instance'] },
    ],
  };
  const u = compileUnused(
    { labels: 'aggregate', keepLabels: ['team'], expressions: ['sum by (device) (node_disk_bytes)'] },
    labelsUsage,
    0,
    at,
    1,
  )!;
  const ls = (...names: string[]) => ['__name__', ...names].map((name) => ({ name }));

  it.each([
    ['http_requests_total', ls('code', 'job', 'pod', 'team'), ['pod']],
    // Exact and pattern needs unite: instance is needed by the pattern's "all but pod".
    ['latency_bucket', ls('instance', 'le', 'pod'), ['pod']],
    ['latency_sum', ls('instance', 'pod'), ['pod']],
    ['raw_panel', ls('a', 'b'), []],
    ['no_need_given', ls('a'), []],
    ['node_disk_bytes', ls('device', 'instance', 'mountpoint'), ['mountpoint']],
    ['node_load1', ls('instance', 'cpu'), ['cpu']],
    ['never_read', ls('a'), []],
  ])('%s with %j: %j are unread', (name, labels, want) => {
    expect(unusedLabels(u, name, labels)).toEqual(want);
  });
});

describe('spec.unused.readWindow: reads keep metrics', () => {
  const DAY = 86_400_000;
  const reads = {
    sinceMs: T0 - 10 * DAY,
    lastRead: new Map([
      ['read_yesterday', T0 - DAY],
      ['read_long_ago', T0 - 8 * DAY],
    ]),
  };
  const withReads = { ...usage, reads };
  const compile = (spec: UnusedT, u: Parameters<typeof compileUnused>[1] = withReads) => {
    const c = compileUnused(spec, u, 7, at);
    if (c === undefined) throw new Error('not compiled');
    return c;
  };

  it('never judges a metric read within the window unused; one read before it is, unless referenced', () => {
    const u = compile({ action: 'drop', readWindow: '7d' });
    expect(isUnused(u, 'read_yesterday', T0)).toBe(false);
    expect(isUnused(u, 'read_long_ago', T0)).toBe(true);
    expect(isUnused(u, 'never_read', T0)).toBe(true);
    // Referenced by a rule: used, read or not.
    expect(isUnused(u, 'up', T0)).toBe(false);
    // A week after the read, it is no longer protected.
    expect(isUnused(u, 'read_yesterday', T0 + 6 * DAY + 1)).toBe(true);
  });

  it('with countReferences false, only reads count, once reads cover the whole window', () => {
    const u = compile({ action: 'drop', readWindow: '7d', countReferences: false });
    expect(isUnused(u, 'up', T0)).toBe(true);
    expect(isUnused(u, 'read_yesterday', T0)).toBe(false);
    // Reads recorded for only two days: "not read in the last 7 days" is not known yet.
    const young = compile(
      { action: 'drop', readWindow: '7d', countReferences: false },
      { ...usage, reads: { ...reads, sinceMs: T0 - 2 * DAY } },
    );
    expect(isUnused(young, 'up', T0)).toBe(false);
    expect(isUnused(young, 'up', T0 + 5 * DAY)).toBe(true);
    // No reads known at all: references count.
    expect(
      isUnused(compile({ action: 'drop', readWindow: '7d', countReferences: false }, usage), 'up', T0),
    ).toBe(false);
  });

  it('makes verdicts expire when a read leaves the window and when reads come to cover it', () => {
    const u = compile({ action: 'drop', readWindow: '7d' });
    expect(nextExpiry([u], T0)).toBe(T0 - DAY + 7 * DAY);
    const young = compile(
      { action: 'drop', readWindow: '7d' },
      { ...usage, reads: { sinceMs: T0 - DAY, lastRead: new Map() } },
    );
    expect(nextExpiry([young], T0)).toBe(T0 + 6 * DAY);
    expect(nextExpiry([compile({ action: 'drop' })], T0)).toBe(Number.POSITIVE_INFINITY);
  });
});
