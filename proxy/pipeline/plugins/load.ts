// Loading stage plugins (--stage.plugin PATH, repeatable): each PATH is an ES module whose default
// export is a StagePlugin (proxy/pipeline/stage.ts). Everything the contract requires is checked
// here, at start-up, with errors naming the file and what is wrong; a plugin is never half-loaded.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Kind, type TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { STAGE_API_VERSION, type StagePlugin } from '../stage.js';
import { type GuardOptions, PluginGuard } from './guard.js';

export interface LoadedPlugin {
  readonly path: string;
  readonly plugin: StagePlugin<unknown>;
  readonly check: TypeCheck<TSchema>;
}

/** The plugins a pipeline may run, by name, and the guard that contains them. */
export interface StagePlugins {
  readonly byName: ReadonlyMap<string, LoadedPlugin>;
  readonly guard: PluginGuard;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const REASON = /^[a-z][a-z0-9_]*$/;

/** Checks that `value`, the default export of `path`, keeps the stage contract. */
export function checkPlugin(path: string, value: unknown): LoadedPlugin {
  const fail = (what: string): never => {
    throw new Error(`--stage.plugin ${path}: ${what}`);
  };
  if (typeof value !== 'object' || value === null)
    fail('the module has no default export object (export default { ... })');
  const p = value as Record<string, unknown>;
  if (p.apiVersion !== STAGE_API_VERSION)
    fail(
      `apiVersion ${JSON.stringify(p.apiVersion)} is not supported; this proxy implements stage API version ${STAGE_API_VERSION}`,
    );
  if (p.kind !== 'label') fail(`kind ${JSON.stringify(p.kind)}: plugins are label stages (kind 'label')`);
  if (typeof p.name !== 'string' || !NAME.test(p.name) || p.name.length > 63)
    fail(
      `name ${JSON.stringify(p.name)} must be a DNS label (lowercase letters, digits, '-'), at most 63 characters`,
    );
  if (!Array.isArray(p.reasons) || p.reasons.some((r) => typeof r !== 'string' || !REASON.test(r)))
    fail('reasons must be a list of snake_case names');
  if (p.onError !== undefined && p.onError !== 'forward' && p.onError !== 'refuse')
    fail(`onError ${JSON.stringify(p.onError)} must be forward or refuse`);
  if (typeof p.compile !== 'function') fail('compile(config, ctx) is missing');
  if (typeof p.apply !== 'function') fail('apply(compiled, step) is missing');
  const schema = p.schema as TSchema | undefined;
  if (typeof schema !== 'object' || schema === null || !(Kind in schema))
    fail('schema must be a TypeBox schema (import { Type } from "@sinclair/typebox")');
  let check: TypeCheck<TSchema>;
  try {
    check = TypeCompiler.Compile(schema!);
  } catch (err) {
    return fail(`schema does not compile: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { path, plugin: value as StagePlugin<unknown>, check };
}

/** Imports and checks every plugin; two plugins of one name are refused. */
export async function loadStagePlugins(paths: readonly string[]): Promise<Map<string, LoadedPlugin>> {
  const byName = new Map<string, LoadedPlugin>();
  for (const path of paths) {
    let mod: { default?: unknown };
    try {
      mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown };
    } catch (err) {
      throw new Error(
        `--stage.plugin ${path}: cannot be imported: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const loaded = checkPlugin(path, mod.default);
    const other = byName.get(loaded.plugin.name);
    if (other !== undefined)
      throw new Error(`--stage.plugin ${path}: name ${loaded.plugin.name} is also the name of ${other.path}`);
    byName.set(loaded.plugin.name, loaded);
  }
  return byName;
}

/**
 * The plugins of `--stage.plugin PATH...` with their guard, or undefined when there are none: the
 * one way the proxy and the `cardinal` command load them. Throws an Error naming the file.
 */
export async function openStagePlugins(
  paths: readonly string[],
  guard: GuardOptions,
): Promise<StagePlugins | undefined> {
  if (paths.length === 0) return undefined;
  return { byName: await loadStagePlugins(paths), guard: new PluginGuard(guard) };
}
