// A configuration version, read and validated in one step: every file's YAML problems, every
// document's kind problems and every spec's validation problems are found together, so one
// broken file does not hide what is wrong elsewhere. The proxy's start and reload, and the
// `cardinal` command, use this.

import { ConfigError, type LoadedConfig, type Problem, readConfig } from '../../policy/load.js';
import {
  checkPolicies,
  checkUsage,
  type ValidatedPolicy,
  type ValidatedUsage,
} from '../../policy/validate.js';

export interface Configuration {
  readonly config: LoadedConfig;
  readonly policies: readonly ValidatedPolicy[];
  readonly usage: ValidatedUsage;
}

/** Every problem of the configuration at PATH, and what of it is valid. Throws only when PATH cannot be read. */
export function checkConfiguration(
  path: string | undefined,
): Configuration & { problems: readonly Problem[] } {
  const read = readConfig(path);
  const policies = checkPolicies(read.policies);
  const usage = checkUsage(read.usage);
  return {
    config: read,
    policies: policies.policies,
    usage: usage.usage,
    problems: sortProblems([...read.problems, ...policies.problems, ...usage.problems]),
  };
}

/** Problems in reading order: by file, then line and column; problems without a place last. */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  const place = (p: Problem) => {
    const m = /^(.*?):(\d+)(?::(\d+))?$/.exec(p.where);
    return m === null
      ? { file: p.where, line: 0, col: 0 }
      : { file: m[1]!, line: Number(m[2]), col: Number(m[3] ?? 0) };
  };
  return problems
    .map((p, i) => ({ p, i, at: place(p) }))
    .sort(
      (a, b) =>
        (a.at.file < b.at.file ? -1 : a.at.file > b.at.file ? 1 : 0) ||
        a.at.line - b.at.line ||
        a.at.col - b.at.col ||
        a.i - b.i,
    )
    .map((x) => x.p);
}

/** The configuration at PATH, validated; throws one ConfigError listing every problem. */
export function readConfiguration(path: string | undefined): Configuration {
  const checked = checkConfiguration(path);
  if (checked.problems.length > 0) throw new ConfigError(checked.problems);
  return checked;
}
