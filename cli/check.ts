// `cardinal check PATH...`: the proxy's own loader and validator, offline. Every problem of every
// file at once, each at its file:line:column, then a one-line summary; exit 1 on any problem, so
// CI and pre-commit hooks can run it.

import { type Problem, readConfig } from '../policy/load.js';
import { checkPolicies, checkUsage } from '../policy/validate.js';
import { sortProblems } from '../proxy/config/configuration.js';
import { CommandError, type Io, parseFlags } from './io.js';

export const checkUsageText = `Usage: cardinal check PATH...

Validates MetricPolicy and MetricUsage files (a file, or a directory of *.yaml, *.yml and *.json)
exactly as the proxy does when it loads them. Prints every problem as file:line:column: message
and exits 1 when there is any.
`;

export async function check(argv: readonly string[], io: Io): Promise<number> {
  const { positionals, values } = parseFlags(argv, { help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    io.stdout(checkUsageText);
    return 0;
  }
  if (positionals.length === 0) throw new CommandError('check needs at least one file or directory');
  const problems: Problem[] = [];
  const policies = [];
  const usage = [];
  let files = 0;
  for (const path of positionals) {
    const read = readConfig(path);
    files += read.files.length;
    problems.push(...read.problems);
    policies.push(...read.policies);
    usage.push(...read.usage);
  }
  // Checked together: two files defining one policy clash wherever they are.
  const p = checkPolicies(policies);
  const u = checkUsage(usage);
  problems.push(...p.problems, ...u.problems);
  for (const problem of sortProblems(problems)) io.stdout(`${problem.where}: ${problem.message}\n`);
  const counts = `${files} file${files === 1 ? '' : 's'}, ${policies.length} polic${policies.length === 1 ? 'y' : 'ies'}, ${usage.length} usage document${usage.length === 1 ? '' : 's'}`;
  if (problems.length > 0) {
    io.stderr(`${counts}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
    return 1;
  }
  io.stderr(`${counts}: ok\n`);
  return 0;
}
