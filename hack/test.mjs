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

const out = join(mkdtempSync(join(tmpdir(), 'cardinal-test-')), 'vitest.json');
run('vitest', 'npx', [
  'vitest',
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${out}`,
  ...extraArgs,
]);
try {
  const report = JSON.parse(readFileSync(out, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  // A file that fails to load or a failing hook reports no failed test; count it so it cannot pass.
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && !suite.assertionResults?.some((a) => a.status === 'failed')) {
      console.log(`vitest: ${suite.name} failed outside any test: ${suite.message ?? ''}`);
      failed++;
    }
  }
  if (report.numTotalTests === 0) {
    console.log('vitest: no test ran');
    failed++;
  }
} catch (err) {
  console.log(`vitest: no report (${err.message})`);
  failed++;
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
