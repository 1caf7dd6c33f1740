#!/usr/bin/env node
// Writes the generated files from their one source (`npm run generate`, which builds first).
// This reads the compiled modules under dist/ (the ones the programs run), so it needs no TypeScript loader.
//   crds/metricpolicies.yaml and the chart's copy   from crds/metric-policy.ts
//   charts/cardinal/values.schema.json, values.yaml and the README's table of values   from charts/values.ts
//   charts/cardinal/rules/cardinal.rules.yaml   from charts/alerts.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { CRD_FILE, renderCrdYaml } = await import(new URL('../dist/crds/crd.js', import.meta.url).href);
const chart = await import(new URL('../dist/charts/values.js', import.meta.url).href);
const alerts = await import(new URL('../dist/charts/alerts.js', import.meta.url).href);

const write = (file, text) => {
  writeFileSync(`${root}${file}`, text);
  console.warn(`wrote ${file}`);
};

write(CRD_FILE, renderCrdYaml());
write(chart.CHART_CRD_FILE, renderCrdYaml());
write(chart.VALUES_SCHEMA_FILE, chart.renderValuesSchemaJson());
write(chart.VALUES_FILE, chart.renderValuesYaml());
write(alerts.RULES_FILE, alerts.renderRulesYaml());
write(chart.CHART_README, chart.withValuesTable(readFileSync(`${root}${chart.CHART_README}`, 'utf8')));
