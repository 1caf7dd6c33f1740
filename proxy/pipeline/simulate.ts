// Runs series through the proxy's own engine, one at a time and in order, and says what happened
// to each: for `cardinal test`, `cardinal preview` and the playground page. Nothing here decides a
// verdict: the engine (stateless stages, verdict cache, limits with fresh trackers) does, exactly
// as on the ingest path; this only watches which counter slots it hits and what it forwards.

import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../codec/proto.js';
import { type SeriesIndex, scanWriteRequestV1 } from '../codec/scan.js';
import type { Label } from '../codec/types.js';
import type { Action, Pipeline, Reason } from './compile.js';
import { PolicyEngine } from './engine.js';
import { evaluate, policyMatches } from './evaluate.js';

/** What happened to one series. */
export type Outcome = 'kept' | 'rewritten' | 'dropped';

/** One rule that acted on the series (a counter it bumped). */
export interface Hit {
  readonly policy: string;
  readonly rule: string;
  readonly reason: Reason;
  readonly action: Action;
  readonly mode: 'enforce' | 'dryRun';
}

/** The labels as one policy's stateless stages left them (limits run after every policy). */
export interface Step {
  readonly policy: string;
  readonly matched: boolean;
  readonly dryRun: boolean;
  /** The labels after this policy; null when it dropped the series. */
  readonly labels: readonly Label[] | null;
}

export interface SeriesResult {
  readonly input: readonly Label[];
  readonly outcome: Outcome;
  /** The series forwarded, as the policies left it; null when dropped. */
  readonly output: readonly Label[] | null;
  readonly hits: readonly Hit[];
  readonly steps: readonly Step[];
}

export interface SimulateOptions {
  readonly tenant?: string | undefined;
  /** The time the series are seen at; default now. */
  readonly nowMs?: number;
  /** Bounds of the engine's state; the defaults are the proxy's. */
  readonly maxTrackedSeries?: number;
  /** Compute `steps` (a stateless evaluation per policy); default true. */
  readonly steps?: boolean;
}

/**
 * Each series through a fresh engine on `pipeline`, in order, so limits fill as they would from an
 * empty start: the series beyond a limit are the last ones given.
 */
export function simulate(
  pipeline: Pipeline,
  series: readonly (readonly Label[])[],
  options: SimulateOptions = {},
): SeriesResult[] {
  const nowMs = options.nowMs ?? Date.now();
  let hits: Hit[] = [];
  const engine = new PolicyEngine(
    pipeline,
    {
      verdictCacheSize: 100_000,
      maxTrackedSeries: options.maxTrackedSeries ?? Math.max(1024, series.length * 2),
      maxTrackedLabelValues: Math.max(1024, series.length * 2),
      maxMetricNames: 65_536,
    },
    {
      slot: (slot) => {
        const s = pipeline.slots[slot]!;
        hits.push({ policy: s.policy, rule: s.rule, reason: s.reason, action: s.action, mode: s.mode });
      },
      forwarded: () => false,
      newSeries: () => {},
    },
  );
  let scratch: SeriesIndex | undefined;
  return series.map((input) => {
    hits = [];
    const labels = [...input];
    const buf = Buffer.from(
      encodeWriteRequestV1({
        timeseries: [{ labels, samples: [{ value: 1, timestamp: nowMs }], exemplars: [], histograms: [] }],
        metadata: [],
      }),
    );
    scratch = scanWriteRequestV1(buf, scratch);
    const r = engine.process(buf, scratch, options.tenant, nowMs);
    let output: Label[] | null = labels;
    if (!r.unchanged) {
      const ts = r.body === undefined ? [] : decodeWriteRequestV1(r.body).timeseries;
      output = ts[0]?.labels ?? null;
    }
    const outcome: Outcome = output === null ? 'dropped' : sameLabels(output, labels) ? 'kept' : 'rewritten';
    return {
      input,
      outcome,
      output,
      hits,
      steps: options.steps === false ? [] : steps(pipeline, labels, options.tenant, nowMs),
    };
  });
}

/** The labels after each policy, by evaluating the pipeline's first 1, 2, ... policies. */
function steps(pipeline: Pipeline, input: Label[], tenant: string | undefined, nowMs: number): Step[] {
  const out: Step[] = [];
  let before: Label[] | null = input;
  for (let i = 0; i < pipeline.policies.length; i++) {
    const p = pipeline.policies[i]!;
    const prefix: Pipeline = { ...pipeline, policies: pipeline.policies.slice(0, i + 1) };
    const matched = before !== null && policyMatches(p, before, tenant);
    const after: Label[] | null = before === null ? null : stepLabels(prefix, input, tenant, nowMs);
    out.push({ policy: p.id, matched, dryRun: p.dryRun, labels: after });
    before = after;
  }
  return out;
}

/** evaluate's labels, with stage plugins run within their time budget as the engine runs them. */
function stepLabels(
  pipeline: Pipeline,
  input: Label[],
  tenant: string | undefined,
  nowMs: number,
): Label[] | null {
  let labels: Label[] | null = null;
  const run = () => {
    labels = evaluate(pipeline, input, tenant, nowMs).labels;
  };
  const guard = pipeline.plugins;
  if (guard === undefined) run();
  else {
    guard.begin();
    if (!guard.bounded(run)) run();
  }
  return labels;
}

function sameLabels(a: readonly Label[], b: readonly Label[]): boolean {
  return a.length === b.length && a.every((l, i) => l.name === b[i]!.name && l.value === b[i]!.value);
}
