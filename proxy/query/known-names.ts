// The metric names the query API knows (GET /api/v1/label/__name__/values, Prometheus HTTP API
// "Querying label values"), fetched every refresh interval: what a regex matcher on __name__ is
// resolved against, and what tells a metric that is read but does not exist ("missing").
// Bounded: an answer larger than `maxBytes` is abandoned and the last list kept.

import type { Logger } from 'pino';
import type { ReadUpstream } from './http.js';
import type { KnownNames } from './recorder.js';

export interface UpstreamNamesOptions {
  readonly upstream: ReadUpstream;
  readonly refreshMs: number;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly logger: Logger;
}

export class UpstreamNames {
  readonly #opts: UpstreamNamesOptions;
  #names: readonly string[] = [];
  #generation = 0;
  #fetched = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: UpstreamNamesOptions) {
    this.#opts = opts;
  }

  get fetched(): boolean {
    return this.#fetched;
  }

  get generation(): number {
    return this.#generation;
  }

  get names(): readonly string[] {
    return this.#names;
  }

  start(): void {
    const tick = () => {
      void this.refresh().finally(() => {
        if (this.#closed) return;
        this.#timer = setTimeout(tick, this.#opts.refreshMs);
        this.#timer.unref();
      });
    };
    tick();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** Fetches the list once; failures are logged and leave the last list in force. */
  async refresh(): Promise<void> {
    const { upstream, timeoutMs, maxBytes, logger } = this.#opts;
    try {
      const res = await upstream.pool.request({
        path: `${upstream.basePath}/api/v1/label/__name__/values`,
        method: 'GET',
        headers: { accept: 'application/json' },
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > maxBytes) {
          res.body.destroy();
          throw new Error(`answer larger than ${maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
      const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data?: unknown };
      if (!Array.isArray(json.data) || !json.data.every((n) => typeof n === 'string')) {
        throw new Error('data: not a list of names');
      }
      this.#names = json.data as string[];
      this.#generation++;
      this.#fetched = true;
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'fetching the metric names of the query API failed');
    }
  }
}

/** Names known from several sources, as one KnownNames. */
export function unionKnown(sources: readonly KnownNames[]): KnownNames {
  return {
    // Each source's generation only grows, so their sum changes whenever one does.
    generation: () => sources.reduce((g, s) => g + s.generation(), 0),
    names: function* () {
      for (const s of sources) yield* s.names();
    },
  };
}
