// `npx vitest bench --run --project unit proxy/ingest/pushgateway/push.bench.ts`: the proxy's CPU
// work per push, in-process and on one core: parse, lint, the standards check, the policy engine
// over the pushed series and the text rendering, for a batch job's push of 100 families (a
// counter, a gauge and a 10-bucket histogram each, 5 label sets apiece: 7,000 samples). It reports
// numbers and asserts nothing; the table's hz times 7,000 is samples per second.
import { bench, describe } from 'vitest';
import { compilePipeline } from '../../pipeline/compile.js';
import { PolicyEngine } from '../../pipeline/engine.js';
import { lintFamilies, parseExposition } from '../exposition/index.js';
import { parseGroupingKey } from './grouping.js';
import { applyPushPolicies, storedLabelSets } from './policies.js';
import { renderText, textFamilies } from './render.js';
import { standardsProblems } from './standards.js';

function body(families: number): string {
  let out = '';
  for (let f = 0; f < families; f++) {
    out += `# HELP batch_rows_${f}_total Rows.\n# TYPE batch_rows_${f}_total counter\n`;
    for (let s = 0; s < 5; s++) out += `batch_rows_${f}_total{shard="s${s}",table="t${f}"} ${s * 10}\n`;
    out += `# HELP batch_lag_${f}_seconds Lag.\n# TYPE batch_lag_${f}_seconds gauge\n`;
    for (let s = 0; s < 5; s++) out += `batch_lag_${f}_seconds{shard="s${s}"} ${s / 10}\n`;
    out += `# HELP batch_run_${f}_seconds Runs.\n# TYPE batch_run_${f}_seconds histogram\n`;
    for (let s = 0; s < 5; s++) {
      for (const le of ['0.1', '0.5', '1', '5', '10', '30', '60', '120', '300', '+Inf']) {
        out += `batch_run_${f}_seconds_bucket{shard="s${s}",le="${le}"} 7\n`;
      }
      out += `batch_run_${f}_seconds_sum{shard="s${s}"} 12\nbatch_run_${f}_seconds_count{shard="s${s}"} 7\n`;
    }
  }
  return out;
}

const text = body(100);
const key = (() => {
  const r = parseGroupingKey('/metrics/job/nightly/instance/host-1');
  if (!r.ok) throw new Error(r.reason);
  return r.key;
})();
const engine = (drop: boolean) =>
  new PolicyEngine(
    compilePipeline(
      drop
        ? [
            { name: 'drops', namespace: 'p', spec: { drop: ['batch_lag_1.*'] } },
            {
              name: 'standards',
              namespace: 'p',
              spec: { standards: { forbiddenLabels: ['user_id'], onViolation: 'drop' } },
            },
            {
              name: 'cap',
              namespace: 'p',
              spec: { limits: { perMetric: [{ metric: 'batch_rows_.*', maxSeries: 1000 }] } },
            },
          ]
        : [],
    ),
    {
      verdictCacheSize: 100_000,
      maxTrackedSeries: 100_000,
      maxTrackedLabelValues: 10_000,
      maxMetricNames: 10_000,
    },
    { slot: () => {}, forwarded: () => false, newSeries: () => {} },
  );

function push(e: PolicyEngine): number {
  const parsed = parseExposition(text, 'text');
  const stored = e.pipeline.empty ? [] : storedLabelSets(parsed.families, key);
  const problems =
    lintFamilies(parsed.families).length +
    standardsProblems(e, parsed.families, stored, undefined).rejected.length;
  const r = applyPushPolicies({
    engine: e,
    families: parsed.families,
    stored,
    tenant: undefined,
    nowMs: Date.now(),
    scratch: undefined,
  });
  // Without a shared limit store the answer is synchronous.
  if (r instanceof Promise) throw new Error('unexpected asynchronous push');
  const out = r.unchanged
    ? text
    : renderText(r.series, textFamilies(parsed.families, 'text'), new Set(['job', 'instance']));
  return problems + out.length;
}

describe('one push of 7,000 samples', () => {
  const plain = engine(false);
  const governed = engine(true);
  bench('parse only', () => {
    parseExposition(text, 'text');
  });
  const parsed = parseExposition(text, 'text');
  bench('lint only', () => {
    lintFamilies(parsed.families);
  });
  bench('policies only (none)', () => {
    applyPushPolicies({
      engine: plain,
      families: parsed.families,
      stored: [],
      tenant: undefined,
      nowMs: Date.now(),
      scratch: undefined,
    });
  });
  bench('parse + lint + policies (none)', () => {
    push(plain);
  });
  bench('parse + lint + standards + drop + limit + render', () => {
    push(governed);
  });
});
