// A configuration version, read and validated in one step: every file's YAML problems, every
// document's kind problems and every spec's validation problems are found together, so one
// broken file does not hide what is wrong elsewhere. The proxy's start and reload, and the
// `cardinal` command, use this.
//
// Each file is checked on its own (checkFile) and the files are then put together (combineFiles),
// which adds the one check that spans files, a policy defined twice. A reload therefore parses
// and validates only the files whose text changed (proxy/config/loader.ts): an edit of one
// policy, in one of the operator's shards, costs that shard, not the whole instance.

import {
  ConfigError,
  type ConfigText,
  configTextsHash,
  type LoadedConfig,
  type PolicyDocument,
  type Problem,
  readConfigText,
  readConfigTexts,
  type UsageDocument,
} from '../../policy/load.js';
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

/**
 * What one file contributes to a configuration, checked on its own. Plain data without functions
 * (the documents lose their `locate`), so it crosses a process boundary and is kept between reloads.
 */
export interface FileCheck {
  /** Every MetricPolicy document of the file, as read. */
  readonly documents: readonly PolicyDocument[];
  /** Each document's `namespace/name` and where its name is written, for the check across files. */
  readonly names: readonly { readonly key: string; readonly where: string }[];
  /** The documents that passed validation. */
  readonly policies: readonly ValidatedPolicy[];
  /** The file's MetricUsage documents, validated together with the other files' in combineFiles. */
  readonly usage: readonly UsageDocument[];
  /** The file's problems: reading, parsing, kinds, and each document's own validation. */
  readonly problems: readonly Problem[];
}

/** Reads and validates one file on its own. */
export function checkFile(t: ConfigText): FileCheck {
  const read = readConfigText(t);
  const policies = checkPolicies(read.policies);
  // Only the problems here: the usage is validated as one over every file (combineFiles).
  const usage = checkUsage(read.usage);
  return {
    documents: read.policies.map(({ locate: _locate, ...doc }) => doc),
    names: read.policies.map((d) => ({
      key: `${d.namespace ?? 'default'}/${d.name}`,
      where: d.locate?.(['metadata', 'name']) ?? d.source,
    })),
    policies: policies.policies,
    usage: read.usage.map(({ locate: _locate, ...doc }) => doc),
    problems: [...read.problems, ...policies.problems, ...usage.problems],
  };
}

/**
 * The configuration of `texts` from each file's check, in the same order: the files' documents and
 * problems, a problem for each policy defined again in a later file (that later one is left out),
 * and the usage of all files validated as one.
 */
export function combineFiles(
  texts: readonly ConfigText[],
  checks: readonly FileCheck[],
): Configuration & { problems: readonly Problem[] } {
  const documents: PolicyDocument[] = [];
  const usageDocs: UsageDocument[] = [];
  const policies: ValidatedPolicy[] = [];
  const problems: Problem[] = [];
  // Where each name is first written; checkPolicies has already refused a name twice in one file.
  const first = new Map<string, string>();
  for (const check of checks) {
    const again = new Set<string>();
    const mine = new Set<string>();
    for (const { key, where } of check.names) {
      const at = first.get(key);
      if (at !== undefined && !mine.has(key)) {
        problems.push({ where, message: `MetricPolicy ${key} is also defined at ${at}` });
        again.add(key);
      } else if (at === undefined) {
        first.set(key, where);
        mine.add(key);
      }
    }
    documents.push(...check.documents);
    usageDocs.push(...check.usage);
    problems.push(...check.problems);
    for (const p of check.policies) if (!again.has(`${p.namespace ?? 'default'}/${p.name}`)) policies.push(p);
  }
  // Every usage problem is one document's own, already among the files' problems.
  const usage = checkUsage(usageDocs).usage;
  const config: LoadedConfig = Object.freeze({
    policies: Object.freeze(documents),
    usage: Object.freeze(usageDocs),
    files: Object.freeze(texts.map((t) => t.file)),
    hash: configTextsHash(texts),
  });
  return { config, policies, usage, problems: sortProblems(problems) };
}

/** Every problem of the configuration at PATH, and what of it is valid. Throws only when PATH cannot be read. */
export function checkConfiguration(
  path: string | undefined,
): Configuration & { problems: readonly Problem[] } {
  const texts = path === undefined ? [] : readConfigTexts(path);
  return combineFiles(texts, texts.map(checkFile));
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
