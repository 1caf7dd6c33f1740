// `cardinal check PATH...`: the proxy's own loader and validator, offline. Every problem of every
// file at once, each at its file:line:column, then a one-line summary; exit 1 on any problem, so
// CI and pre-commit hooks can run it.

import { type Problem, readConfig } from '../policy/load.js';
import { checkPolicies, checkUsage } from '../policy/validate.js';
import { sortProblems } from '../proxy/config/configuration.js';
import { compileProblems } from '../proxy/pipeline/compile.js';
import { CommandError, type Io, parseFlags } from './io.js';
import { loadPlugins, pluginFlags, pluginUsageText } from './plugins.js';

export const checkUsageText = `Usage: cardinal check [--stage.plugin PATH]... PATH...

Validates MetricPolicy and MetricUsage files (a file, or a directory of *.yaml, *.yml and *.json)
exactly as the proxy does when it loads them. Prints every problem as file:line:column: message
and exits 1 when there is any. The spec.stages of policies are checked against the stage plugins
given with --stage.plugin (their names, and their configs by each plugin's schema and compile
step); without it, only their shape is.

Flags:
${pluginUsageText}`;

export async function check(argv: readonly string[], io: Io): Promise<number> {
  const { positionals, values } = parseFlags(argv, {
    ...pluginFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(checkUsageText);
    return 0;
  }
  if (positionals.length === 0) throw new CommandError('check needs at least one file or directory');
  const plugins = await loadPlugins(values, io);
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
  // Compiled as the proxy compiles them, when the plugins they name are given: what the proxy
  // would reject that the schema alone cannot tell (a plugin config, a plugin not loaded).
  const naming = p.policies.filter((x) => (x.spec.stages ?? []).length > 0);
  if (plugins !== undefined) problems.push(...compileProblems(p.policies, u.usage, plugins));
  else if (naming.length > 0)
    io.stderr(
      `note: ${naming.length} polic${naming.length === 1 ? 'y names' : 'ies name'} stage plugins; give them with --stage.plugin PATH to check their configs\n`,
    );
  for (const problem of sortProblems(problems)) io.stdout(`${problem.where}: ${problem.message}\n`);
  const counts = `${files} file${files === 1 ? '' : 's'}, ${policies.length} polic${policies.length === 1 ? 'y' : 'ies'}, ${usage.length} usage document${usage.length === 1 ? '' : 's'}`;
  if (problems.length > 0) {
    io.stderr(`${counts}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
    return 1;
  }
  io.stderr(`${counts}: ok\n`);
  return 0;
}
