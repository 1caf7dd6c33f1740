// A watch cache of one kind: list, then watch from the list's resourceVersion, keeping every object
// in memory (client-node's ListWatch, the counterpart of client-go's reflector and store). The
// reconcile loop reads the cache instead of the API server. ListWatch stops for good on a failed
// list or watch; this restarts it with a doubling delay, resuming the watch from the last
// resourceVersion seen, or relisting when the API server no longer has it (410 Gone).

import { type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ObjectList } from './client.js';

export interface InformerOptions<T> {
  /** What the logs call it, such as `metricpolicies`. */
  readonly name: string;
  readonly watch: Watch;
  /** The collection's path, such as /api/v1/namespaces/ns/configmaps. */
  readonly path: string;
  readonly list: () => Promise<ObjectList<T>>;
  readonly labelSelector?: string;
  /** Called for every added, changed or deleted object, after the cache holds the change. */
  readonly onEvent: (object: T, type: 'add' | 'update' | 'delete') => void;
  readonly logger: Logger;
  /** The first restart delay after an error; default 1 s, doubling to 30 s. */
  readonly restartDelayMs?: number;
}

/**
 * `T` is the operator's own type of the objects; the cache holds them as the API server sent them,
 * so `T` must describe JSON, not client-node's deserialised classes (dates stay strings).
 */
export class Informer<T> {
  readonly #options: InformerOptions<T>;
  readonly #listWatch: ListWatch<KubernetesObject>;
  /** Resolves when the first list completed. */
  readonly hasSynced: Promise<void>;
  #markSynced: () => void = () => {};
  #synced = false;
  #stopped = false;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: InformerOptions<T>) {
    this.#options = options;
    this.hasSynced = new Promise((resolve) => {
      this.#markSynced = resolve;
    });
    const list = async () => {
      const result = await options.list();
      this.#synced = true;
      this.#failures = 0;
      this.#markSynced();
      // ListWatch reads only items and metadata.resourceVersion.
      return result as unknown as KubernetesListObject<KubernetesObject>;
    };
    this.#listWatch = new ListWatch(options.path, options.watch, list, false, options.labelSelector);
    for (const type of ['add', 'update', 'delete'] as const) {
      this.#listWatch.on(type, (obj) => options.onEvent(obj as T, type));
    }
    this.#listWatch.on('error', (err: unknown) => this.#restart(err));
  }

  /** True once the first list completed: the cache then holds every object. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Lists and starts watching; resolves once the first list attempt ended, successful or not. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#listWatch.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#listWatch.stop();
  }

  list(): readonly T[] {
    return this.#listWatch.list() as readonly unknown[] as readonly T[];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#listWatch.get(name, namespace) as T | undefined;
  }

  #restart(err: unknown): void {
    if (this.#stopped) return;
    const base = this.#options.restartDelayMs ?? 1_000;
    const delay = Math.min(30_000, base * 2 ** this.#failures);
    this.#failures++;
    this.#options.logger.warn(
      { err, informer: this.#options.name, retryInMs: delay },
      'list or watch failed; restarting',
    );
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.#stopped) return;
      this.#listWatch.start().catch((e: unknown) => this.#restart(e));
    }, delay);
  }
}

export { Watch };
