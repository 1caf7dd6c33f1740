// Counts of queued data that did not reach the upstream, kept in the queue directory so that they
// survive restarts: a sender was told its data was taken, so what became of it must stay visible
// (in /metrics, /api/v1/status/queue and the dashboard) after the process that dropped it is gone.

import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DropReason, QueueMetrics } from './metrics.js';
import type { QueueLogger } from './queue.js';

export type Tallies = Partial<Record<DropReason, { records: number; samples: number }>>;

const FILE = 'dropped.json';

/**
 * Wraps a queue's metrics so that every drop is also added to `<dir>/dropped.json`. The counters
 * start from the file's counts, so they do not reset on restart. A lost write (a crash between a
 * drop and the rename) loses at most that one drop's count, never the file.
 */
export class DropTally {
  readonly #dir: string;
  readonly #logger: QueueLogger;
  readonly #counts: Tallies;
  #write: Promise<void> = Promise.resolve();

  constructor(dir: string, logger: QueueLogger) {
    this.#dir = dir;
    this.#logger = logger;
    this.#counts = {};
    try {
      const raw = JSON.parse(readFileSync(join(dir, FILE), 'utf8')) as unknown;
      if (typeof raw === 'object' && raw !== null) {
        for (const [reason, v] of Object.entries(raw as Record<string, unknown>)) {
          const c = v as { records?: unknown; samples?: unknown };
          if (Number.isSafeInteger(c.records) && Number.isSafeInteger(c.samples)) {
            this.#counts[reason as DropReason] = {
              records: c.records as number,
              samples: c.samples as number,
            };
          }
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        logger.warn({ err, file: join(dir, FILE) }, 'queue drop counts unreadable; starting from zero');
      }
    }
  }

  get counts(): Tallies {
    return structuredClone(this.#counts);
  }

  /** The metrics with drops tallied; the counters are raised to the persisted counts first. */
  wrap(metrics: QueueMetrics): QueueMetrics {
    for (const [reason, c] of Object.entries(this.#counts) as [
      DropReason,
      { records: number; samples: number },
    ][]) {
      metrics.dropped(reason, c.records, c.samples);
    }
    return {
      ...metrics,
      dropped: (reason, records, samples) => {
        metrics.dropped(reason, records, samples);
        const c = this.#counts[reason] ?? { records: 0, samples: 0 };
        this.#counts[reason] = c;
        c.records += records;
        c.samples += samples;
        this.#persist();
      },
    };
  }

  #persist(): void {
    this.#write = this.#write.then(async () => {
      const tmp = join(this.#dir, `${FILE}.tmp`);
      try {
        await writeFile(tmp, `${JSON.stringify(this.#counts)}\n`);
        await rename(tmp, join(this.#dir, FILE));
      } catch (err) {
        this.#logger.warn({ err }, 'writing the queue drop counts failed');
      }
    });
  }

  flush(): Promise<void> {
    return this.#write;
  }
}
