import { Counter, type Registry } from 'prom-client';
import type { Label } from '../codec/types.js';
import type { Pipeline } from '../pipeline/compile.js';
import type { EngineObserver } from '../pipeline/engine.js';

/**
 * Counts what policies did. The engine reports per series into a typed array indexed by counter
 * slot; `flush` moves the request's totals into prom-client once per request, so the per-series
 * cost is one array addition. Label values are policy ids and rule paths from the configuration
 * and a fixed set of reasons: bounded by the configuration, never by the traffic.
 */
export class PolicyStats implements EngineObserver {
  readonly #samples: Counter<'policy' | 'rule' | 'reason' | 'action' | 'mode'>;
  #pipeline: Pipeline | undefined;
  #pending = new Float64Array(0);
  #children: ReturnType<Counter<'policy' | 'rule' | 'reason' | 'action' | 'mode'>['labels']>[] = [];
  #onForwarded: EngineObserver['forwarded'] | undefined;
  #onNewSeries: EngineObserver['newSeries'] | undefined;
  #onSlot: ((slot: number, metric: number, samples: number) => void) | undefined;
  #onUnused: EngineObserver['unused'];
  #onLabelPair: EngineObserver['labelPair'];
  #onUnreadLabels: EngineObserver['unreadLabels'];

  constructor(registry: Registry) {
    this.#samples = new Counter({
      name: 'cardinal_proxy_policy_samples_total',
      help: 'Samples (floats and histograms) of series a policy rule dropped, rewrote or reported, by policy, rule, reason, action and mode (enforce, or dryRun: what would have been done).',
      labelNames: ['policy', 'rule', 'reason', 'action', 'mode'],
      registers: [registry],
    });
  }

  /** Also tell these about every slot hit and forwarded series (top offenders). */
  observe(hooks: {
    slot?: (slot: number, metric: number, samples: number) => void;
    forwarded?: EngineObserver['forwarded'];
    newSeries?: EngineObserver['newSeries'];
    unused?: EngineObserver['unused'];
    labelPair?: EngineObserver['labelPair'];
    unreadLabels?: EngineObserver['unreadLabels'];
  }): void {
    this.#onSlot = hooks.slot;
    this.#onForwarded = hooks.forwarded;
    this.#onNewSeries = hooks.newSeries;
    this.#onUnused = hooks.unused;
    this.#onLabelPair = hooks.labelPair;
    this.#onUnreadLabels = hooks.unreadLabels;
  }

  /** Called when a new pipeline takes effect, before any request runs on it. */
  setPipeline(pipeline: Pipeline): void {
    this.#pipeline = pipeline;
    this.#pending = new Float64Array(pipeline.slots.length);
    this.#children = pipeline.slots.map((s) =>
      this.#samples.labels(s.policy, s.rule, s.reason, s.action, s.mode),
    );
  }

  slot(slot: number, metric: number, samples: number): void {
    this.#pending[slot]! += samples;
    this.#onSlot?.(slot, metric, samples);
  }

  forwarded(metric: number, hash: number, nowMs: number, samples: number): boolean {
    return this.#onForwarded?.(metric, hash, nowMs, samples) ?? false;
  }

  newSeries(metric: number, labels: readonly Label[], nowMs: number): void {
    this.#onNewSeries?.(metric, labels, nowMs);
  }

  unused(policy: number, metric: number, hash: number, samples: number, nowMs: number): void {
    this.#onUnused?.(policy, metric, hash, samples, nowMs);
  }

  labelPair(metric: number, label: string): number {
    return this.#onLabelPair?.(metric, label) ?? -1;
  }

  unreadLabels(keys: Uint32Array, nowMs: number): void {
    this.#onUnreadLabels?.(keys, nowMs);
  }

  flush(): void {
    const pending = this.#pending;
    for (let i = 0; i < pending.length; i++) {
      if (pending[i] !== 0) {
        this.#children[i]!.inc(pending[i]);
        pending[i] = 0;
      }
    }
  }

  get pipeline(): Pipeline | undefined {
    return this.#pipeline;
  }
}

/** One counter's identity: `policy\0rule\0reason\0action\0mode`. */
export function slotKey(s: {
  policy: string;
  rule: string;
  reason: string;
  action: string;
  mode: string;
}): string {
  return `${s.policy}\0${s.rule}\0${s.reason}\0${s.action}\0${s.mode}`;
}
