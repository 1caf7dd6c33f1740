#!/usr/bin/env node
// The project's one test command (`npm test`, called by .ci/run). It installs the real programs
// the tests need (hack/deps.sh), runs the linter and the type checker, then every vitest project,
// and ends with the line `N passed, N failed` counting each check and each test.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const extraArgs = process.argv.slice(2);
let passed = 0;
let failed = 0;
let total = 0;

// Each phase says how long it took, so a slow CI run shows where the time went.
const since = (start) => `${((performance.now() - start) / 1000).toFixed(0)}s`;

function run(name, cmd, args, opts = {}) {
  console.log(`\n==> ${name}: ${cmd} ${args.join(' ')}`);
  const start = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  console.log(`==> ${name}: ${since(start)}`);
  return r.status === 0;
}

const depsStart = performance.now();
const deps = spawnSync('bash', ['hack/deps.sh'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
console.log(`==> deps (hack/deps.sh: programs and builds): ${since(depsStart)}`);
if (deps.status !== 0) {
  console.log('deps: hack/deps.sh failed; the integration tests cannot start their programs');
  failed++;
} else {
  for (const line of deps.stdout.split('\n')) {
    const m = /^(CARDINAL_[A-Z0-9_]+|KUBEBUILDER_ASSETS)=(.*)$/.exec(line.trim());
    if (m) process.env[m[1]] = m[2];
  }
}

for (const [name, cmd, args] of [
  ['lint', 'npx', ['biome', 'check', '.']],
  ['typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
]) {
  if (run(name, cmd, args)) passed++;
  else failed++;
}

const reports = mkdtempSync(join(tmpdir(), 'cardinal-test-'));
// Two vitest runs, so each prints its own time: the unit and integration tests, then the real-node
// suite (test/cluster: it brings up its cluster, builds and imports the images, runs, and takes
// the cluster down, printing the time of each of those phases). A node that cannot start fails
// the suite with the reason; nothing is skipped.
for (const [name, projects] of [
  ['vitest unit+integration', ['unit', 'integration']],
  ['vitest cluster', ['cluster']],
]) {
  const out = join(reports, `${projects.join('-')}.json`);
  run(name, 'npx', [
    'vitest',
    'run',
    ...projects.flatMap((p) => ['--project', p]),
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${out}`,
    // Arguments that select tests may select none of one run's projects.
    ...(extraArgs.length > 0 ? ['--passWithNoTests'] : []),
    ...extraArgs,
  ]);
  count(name, out);
}
if (extraArgs.length > 0 && total === 0) {
  console.log('vitest: no test ran');
  failed++;
}

function count(name, out) {
  try {
    const report = JSON.parse(readFileSync(out, 'utf8'));
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    total += report.numTotalTests;
    // A file that fails to load or a failing hook reports no failed test; count it so it cannot pass.
    for (const suite of report.testResults ?? []) {
      if (suite.status === 'failed' && !suite.assertionResults?.some((a) => a.status === 'failed')) {
        console.log(`${name}: ${suite.name} failed outside any test: ${suite.message ?? ''}`);
        failed++;
      }
    }
    if (report.numTotalTests === 0 && extraArgs.length === 0) {
      console.log(`${name}: no test ran`);
      failed++;
    }
  } catch (err) {
    console.log(`${name}: no report (${err.message})`);
    failed++;
  }
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
