// Containment of stage plugins. A plugin runs only inside `bounded`: a synchronous call whose time
// is limited by the per-request budget (--stage.plugin.timeout). node:vm's timeout terminates the
// running JavaScript when the budget is spent, so even a plugin that never returns gives the
// event loop back; what it was doing is abandoned, and the request goes on without plugins (or
// is refused, for a plugin whose failure mode says so). A plugin that throws is caught per call.
// Failures are counted (cardinal_proxy_stage_plugin_failures_total) and logged, at most once per
// plugin and kind every 10 s.

import { createContext, Script } from 'node:vm';
import { Counter, type Registry } from 'prom-client';

export type FailureKind = 'error' | 'timeout';

export interface GuardOptions {
  /** The time budget for the plugins' work on one request, in ms. */
  readonly timeoutMs: number;
  readonly registry?: Registry | undefined;
  /** Told about failures, rate-limited; `suppressed` counts the ones not told since the last. */
  readonly log?: (stage: string, kind: FailureKind, err: unknown, suppressed: number) => void;
  readonly nowMs?: () => number;
}

/** Thrown out of the pipeline when a plugin with onError refuse fails: the request is refused. */
export class StageRefusal extends Error {
  override name = 'StageRefusal';
  readonly stage: string;
  constructor(stage: string, reason: string) {
    super(`stage plugin ${stage} failed (${reason}) and its failure mode refuses the request`);
    this.stage = stage;
  }
}

const LOG_EVERY_MS = 10_000;

export class PluginGuard {
  readonly timeoutMs: number;
  readonly #failures: Counter<'stage' | 'kind'> | undefined;
  readonly #log: GuardOptions['log'];
  readonly #now: () => number;
  readonly #lastLog = new Map<string, { at: number; suppressed: number }>();
  readonly #context = createContext({});
  readonly #script = new Script('run()');
  #active = false;
  #exhausted = false;
  /** The plugin whose code is running, for blaming a timeout. */
  running: string | undefined;
  /** Its failure mode. */
  runningRefuses = false;

  constructor(opts: GuardOptions) {
    this.timeoutMs = opts.timeoutMs;
    this.#log = opts.log;
    this.#now = opts.nowMs ?? Date.now;
    this.#failures =
      opts.registry === undefined
        ? undefined
        : ((opts.registry.getSingleMetric('cardinal_proxy_stage_plugin_failures_total') as
            | Counter<'stage' | 'kind'>
            | undefined) ??
          new Counter({
            name: 'cardinal_proxy_stage_plugin_failures_total',
            help: 'Calls of a stage plugin that threw (kind error) or ran out of the request time budget (kind timeout).',
            labelNames: ['stage', 'kind'],
            registers: [opts.registry],
          }));
  }

  /** Whether plugins may run now: inside `bounded`, with budget left. */
  get usable(): boolean {
    return this.#active && !this.#exhausted;
  }

  /** Whether the current request's budget ran out (its later series run without plugins). */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** A new request: a fresh budget. */
  begin(): void {
    this.#exhausted = false;
  }

  /**
   * Runs `fn` with the remaining budget. Returns false when the budget ran out; `fn` was then
   * stopped wherever it was, and must be written so that state it touched stays consistent.
   */
  bounded(fn: () => void): boolean {
    if (this.#exhausted) {
      fn();
      return true;
    }
    this.#active = true;
    (this.#context as { run: (() => void) | undefined }).run = fn;
    try {
      this.#script.runInContext(this.#context, { timeout: this.timeoutMs });
      return true;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw err;
      this.#exhausted = true;
      this.failed(this.running ?? '', 'timeout', err);
      if (this.running !== undefined && this.runningRefuses) throw new StageRefusal(this.running, 'timeout');
      return false;
    } finally {
      this.#active = false;
      this.running = undefined;
      (this.#context as { run: (() => void) | undefined }).run = undefined;
    }
  }

  /** Counts a failure and logs it, rate-limited. */
  failed(stage: string, kind: FailureKind, err: unknown): void {
    this.#failures?.labels(stage, kind).inc();
    if (this.#log === undefined) return;
    const key = `${stage}\0${kind}`;
    const now = this.#now();
    const last = this.#lastLog.get(key);
    if (last !== undefined && now - last.at < LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    this.#lastLog.set(key, { at: now, suppressed: 0 });
    this.#log(stage, kind, err, last?.suppressed ?? 0);
  }
}
