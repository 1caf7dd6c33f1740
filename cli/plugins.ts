// The stage plugins a command runs the policies with: --stage.plugin PATH (repeatable) and
// --stage.plugin.timeout, loaded and checked by the proxy's own loader, so a policy that names a
// plugin gets the verdicts, and a plugin config gets the problems, that the proxy would give.

import { parseDuration } from '../lib/flags.js';
import { ConfigError } from '../policy/load.js';
import {
  compilePipeline,
  compileProblems,
  type Pipeline,
  type PipelineUsage,
  type PolicyInput,
} from '../proxy/pipeline/compile.js';
import { openStagePlugins, type StagePlugins } from '../proxy/pipeline/plugins/load.js';
import { CommandError, type Io } from './io.js';

export const pluginFlags = {
  'stage.plugin': { type: 'string', multiple: true },
  'stage.plugin.timeout': { type: 'string' },
} as const;

export const pluginUsageText = `  --stage.plugin PATH  load a stage plugin, as cardinal-proxy --stage.plugin does; repeatable
  --stage.plugin.timeout DUR
                       the plugins' time budget per series evaluated (default 500ms)
`;

export interface PluginValues {
  readonly 'stage.plugin'?: string[] | undefined;
  readonly 'stage.plugin.timeout'?: string | undefined;
}

/** The plugins the flags name, or undefined for none; a plugin that does not load is a CommandError. */
export async function loadPlugins(values: PluginValues, io: Io): Promise<StagePlugins | undefined> {
  const timeout = values['stage.plugin.timeout'] ?? '500ms';
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration('--stage.plugin.timeout', timeout);
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
  if (timeoutMs <= 0) throw new CommandError(`--stage.plugin.timeout: "${timeout}" must be longer than zero`);
  try {
    return await openStagePlugins(values['stage.plugin'] ?? [], {
      timeoutMs,
      // The guard rate-limits these; the verdicts printed are those the proxy would give.
      log: (stage, kind, err) =>
        io.stderr(
          kind === 'timeout'
            ? `stage plugin ${stage} ran out of its time budget; the series went on without plugins\n`
            : `stage plugin ${stage} threw (${err instanceof Error ? err.message : String(err)}); the series went on as the stages before it left it\n`,
        ),
    });
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
}

/** compilePipeline, with what it would throw for turned into a ConfigError listing every policy's problem. */
export function compileChecked(
  c: {
    readonly policies: readonly (PolicyInput & { readonly source: string })[];
    readonly usage: PipelineUsage;
  },
  plugins: StagePlugins | undefined,
): Pipeline {
  const problems = compileProblems(c.policies, c.usage, plugins);
  if (problems.length > 0) throw new ConfigError(problems);
  return compilePipeline(c.policies, c.usage, plugins);
}
