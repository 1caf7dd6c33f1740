// `npx vitest bench --run --project unit bench/usage.bench.ts`: what usage-aware
// governance costs. The operator parses each rule and dashboard once per resourceVersion; the proxy
// runs the unused verdict on a verdict-cache miss only (a new label set), never per sample. One
// measured run, printed as a table; it reports numbers and asserts nothing.
import { readFileSync } from 'node:fs';
import { bench, describe } from 'vitest';
import { parse } from 'yaml';
import { dashboardExpressions, ruleExpressions } from '../operator/usage/sources.js';
import { computeUsage, usageSpec } from '../operator/usage/usage.js';
import { extract } from '../policy/promql.js';
import { compileUnused, isUnused, unusedLabels } from '../proxy/pipeline/stages/unused.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../test/fixtures/usage/${name}`, import.meta.url), 'utf8');

function time(n: number, fn: (i: number) => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - start) / n;
}

describe('usage', () => {
  // The benchmark runner calls the function more than once; the measurement is made once.
  let measured = false;
  bench(
    'one measured run',
    () => {
      if (measured) return;
      measured = true;
      const rules = parse(fixture('rules-shop.yaml')).spec;
      const dashboard = JSON.parse(fixture('dashboard-shop.json'));
      const exprs = [
        ...ruleExpressions(rules).exprs,
        ...dashboardExpressions(dashboard).exprs.filter((e) => !e.expr.includes('shop_payment_attempts')),
      ].map((e) => e.expr);
      for (let i = 0; i < 200; i++) for (const e of exprs) extract(e);
      const perExprUs = time(2000, (i) => extract(exprs[i % exprs.length]!)) / 1000;
      const perDashboardUs =
        time(200, () => computeUsage([{ id: 'Dashboard d', exprs: dashboardExpressions(dashboard) }])) / 1000;

      // A used set the size of a large cluster: 5,000 names read, 50 patterns.
      const metrics = [
        ...Array.from({ length: 5000 }, (_, i) => ({
          name: `app_metric_${i}_total`,
          sources: ['d'],
          labels: ['job'],
        })),
        ...Array.from({ length: 50 }, (_, i) => ({ pattern: `family_${i}_.*`, sources: ['d'] })),
      ];
      const u = compileUnused(
        { action: 'drop', labels: 'report' },
        { documents: 1, metrics },
        0,
        (_f, fn) => fn(),
        1,
      )!;
      const now = Date.now();
      const names = Array.from({ length: 10000 }, (_, i) =>
        i % 2 === 0 ? `app_metric_${i % 5000}_total` : `other_${i}`,
      );
      const verdictNs = time(200_000, (i) => isUnused(u, names[i % names.length]!, now));
      const labels = [{ name: '__name__' }, { name: 'job' }, { name: 'instance' }, { name: 'pod' }];
      const labelsNs = time(200_000, (i) => unusedLabels(u, names[(i * 2) % names.length]!, labels));
      const specMs =
        time(5, () =>
          usageSpec(
            computeUsage([
              {
                id: 'x',
                exprs: { exprs: exprs.map((expr, k) => ({ where: String(k), expr })), problems: [] },
              },
            ]),
          ),
        ) / 1e6;

      const rows: [string, string][] = [
        ['extract, per expression (us)', perExprUs.toFixed(1)],
        ['one dashboard of 8 queries, parsed and merged (us)', perDashboardUs.toFixed(1)],
        ['unused verdict on a cache miss, 5,050 entries (ns)', verdictNs.toFixed(0)],
        ['unread labels of a 4-label series (ns)', labelsNs.toFixed(0)],
        ['usage spec of the fixture rules and panels (ms)', specMs.toFixed(2)],
      ];
      process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(52)} ${v}`).join('\n')}\n`);
    },
    { iterations: 1, warmupIterations: 0 },
  );
});
