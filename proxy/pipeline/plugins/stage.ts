// A plugin as one of a policy's label stages: its config checked by its schema and compiled, its
// calls contained. The plugin sees a recording step: what it says takes effect only when `apply`
// returns, so a plugin that throws halfway leaves the series as the stages before it left it.

import type { Label } from '../../codec/types.js';
import type { BoundLabelStage, CompileContext, LabelStage, LabelStep } from '../stage.js';
import { type PluginGuard, StageRefusal } from './guard.js';
import type { LoadedPlugin } from './load.js';

/** The evaluator's step, as containment needs it: a verdict made without a plugin is not cached. */
export interface ContainedStep extends LabelStep {
  /** The verdict lacks a plugin's say (failed, or not run): use it for this request only. */
  incomplete(): void;
}

interface Compiled {
  readonly inner: unknown;
  readonly loaded: LoadedPlugin;
  readonly guard: PluginGuard;
  /** The counter slots the plugin numbered: the only ones it may count in. */
  readonly owned: ReadonlySet<number>;
}

type Op = readonly [
  kind: 'drop' | 'count' | 'skip' | 'rewrite' | 'aggregate' | 'unused' | 'unread',
  a?: unknown,
  b?: unknown,
];

class Recorder implements LabelStep {
  readonly ops: Op[] = [];
  readonly #step: LabelStep;
  constructor(step: LabelStep) {
    this.#step = step;
  }
  get labels(): readonly Label[] {
    return this.#step.labels;
  }
  get tenant(): string | undefined {
    return this.#step.tenant;
  }
  get nowMs(): number {
    return this.#step.nowMs;
  }
  get policy(): number {
    return this.#step.policy;
  }
  get dryRun(): boolean {
    return this.#step.dryRun;
  }
  skip(): void {
    this.ops.push(['skip']);
  }
  drop(slot: number): void {
    this.ops.push(['drop', slot]);
  }
  count(slot: number): void {
    this.ops.push(['count', slot]);
  }
  rewrite(labels: Label[]): void {
    this.ops.push(['rewrite', labels]);
  }
  aggregate(labels: Label[]): void {
    this.ops.push(['aggregate', labels]);
  }
  unused(): void {
    this.ops.push(['unused']);
  }
  unread(name: string, value: string): void {
    this.ops.push(['unread', name, value]);
  }
}

function replay(ops: readonly Op[], step: LabelStep, owned: ReadonlySet<number>): void {
  for (const [kind, a, b] of ops) {
    if ((kind === 'drop' || kind === 'count') && !owned.has(a as number))
      throw new Error(`slot ${String(a)} is not one the plugin numbered with ctx.slot`);
    if (kind === 'skip') step.skip();
    else if (kind === 'drop') step.drop(a as number);
    else if (kind === 'count') step.count(a as number);
    else if (kind === 'rewrite') step.rewrite(sorted(a as Label[]));
    else if (kind === 'aggregate') step.aggregate(sorted(a as Label[]));
    else if (kind === 'unused') step.unused();
    else step.unread(a as string, b as string);
    if (kind === 'drop' || kind === 'skip') return;
  }
}

/** Labels as remote-write requires them, whatever order a plugin returned them in. */
function sorted(labels: readonly Label[]): Label[] {
  const out = labels.map((l) => ({ name: String(l.name), value: String(l.value) }));
  out.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return out;
}

const wrapper: LabelStage<never, Compiled> = {
  kind: 'label',
  name: 'plugin',
  schema: {} as never,
  reasons: [],
  compile() {
    return undefined;
  },
  apply(c, step) {
    const s = step as ContainedStep;
    const name = c.loaded.plugin.name;
    const refuses = c.loaded.plugin.onError === 'refuse';
    if (!c.guard.usable) {
      // Out of budget for this request (or called outside the engine's bounded run).
      if (c.guard.exhausted && refuses) throw new StageRefusal(name, 'timeout');
      s.incomplete();
      return;
    }
    const recorder = new Recorder(step);
    c.guard.running = name;
    c.guard.runningRefuses = refuses;
    try {
      c.loaded.plugin.apply(c.inner, recorder);
    } catch (err) {
      c.guard.failed(name, 'error', err);
      if (refuses) throw new StageRefusal(name, 'error');
      s.incomplete();
      return;
    } finally {
      c.guard.running = undefined;
    }
    try {
      replay(recorder.ops, step, c.owned);
    } catch (err) {
      // What the plugin said does not hold (a slot it does not own, labels that are not labels).
      c.guard.failed(name, 'error', err);
      if (refuses) throw new StageRefusal(name, 'error');
      s.incomplete();
    }
  },
};

/**
 * Compiles `spec.stages[i]` of a policy: the plugin it names, its config checked by the plugin's
 * schema, then the plugin's compile step. Errors are thrown through `ctx.at`, naming the field.
 */
export function compilePluginStage(
  ref: { readonly name: string; readonly config?: Record<string, unknown> | undefined },
  i: number,
  plugins: { readonly byName: ReadonlyMap<string, LoadedPlugin>; readonly guard: PluginGuard } | undefined,
  ctx: CompileContext,
): BoundLabelStage | undefined {
  const loaded = plugins?.byName.get(ref.name);
  if (loaded === undefined || plugins === undefined) {
    const names = [...(plugins?.byName.keys() ?? [])];
    return ctx.at(`stages[${i}].name`, () => {
      throw new Error(
        `no stage plugin named ${ref.name} is loaded (--stage.plugin PATH loads one)${names.length > 0 ? `; loaded: ${names.join(', ')}` : ''}`,
      );
    });
  }
  const config = ref.config ?? {};
  if (!loaded.check.Check(config)) {
    const e = [...loaded.check.Errors(config)][0];
    ctx.at(`stages[${i}].config${e?.path.replaceAll('/', '.') ?? ''}`, () => {
      throw new Error(`${e?.message ?? 'does not match the schema'} (plugin ${ref.name})`);
    });
  }
  const owned = new Set<number>();
  const own: CompileContext = {
    ...ctx,
    slot: (rule, reason, action) => {
      const s = ctx.slot(rule, reason, action);
      owned.add(s);
      return s;
    },
  };
  const inner = ctx.at(`stages[${i}] (plugin ${ref.name})`, () => loaded.plugin.compile(config, own));
  if (inner === undefined) return undefined;
  const compiled: Compiled = { inner, loaded, guard: plugins.guard, owned };
  return { stage: wrapper as unknown as LabelStage, compiled, plugin: true };
}
