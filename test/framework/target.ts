// An in-process scrape target: node:http on 127.0.0.1 serving the text exposition format with
// content the test decides, and a sequence counter whose every served sample is recorded so a test
// can compare what a receiver holds with exactly what the sender scraped.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ExpositionSample, formatSample, type Labels } from './exposition.js';
import type { Closable } from './process.js';

export interface TargetSeries {
  name: string;
  labels?: Labels;
  value: number;
  /** An explicit sample timestamp; the scraper's own time when unset. */
  timestampMs?: number;
}

export interface SequenceOptions {
  /** Metric name; `cardinal_test_seq_total` by default. */
  name?: string;
  labels?: Labels;
  /** Scrape k serves timestamp `baseTimestampMs + k * stepMs`; by default the base is the first scrape's time, rounded down to the second. */
  baseTimestampMs?: number;
  stepMs?: number;
}

export interface ServedSample {
  timestampMs: number;
  value: number;
}

export interface TargetOptions {
  /** Serve a sequence counter: scrape k (from 1) serves value k with an explicit timestamp. */
  sequence?: SequenceOptions;
  series?: TargetSeries[];
}

export interface ScrapeTarget extends Closable {
  /** `127.0.0.1:port`, as a scrape config's target. */
  readonly address: string;
  /** The page's URL, `http://127.0.0.1:port/metrics`. */
  readonly url: string;
  /** The sequence counter's name and labels, as a PromQL selector. */
  readonly sequenceSelector: string;
  /** Replaces the series served on every scrape besides the sequence. */
  setSeries(series: TargetSeries[]): void;
  /** Requests for /metrics so far, including those that served no sequence sample. */
  readonly scrapes: number;
  /** Every sequence sample served so far, in order. */
  served(): ServedSample[];
  /**
   * Stops serving the sequence: later scrapes leave it out and record nothing. A sample served
   * before this call may still be in flight in the scraper, so compare after it has arrived.
   */
  pauseSequence(): ServedSample[];
  resumeSequence(): void;
  /** Resolves once at least `count` sequence samples have been served. */
  waitForServed(count: number, timeoutMs?: number): Promise<void>;
}

function selector(name: string, labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return `${name}{${pairs.join(',')}}`;
}

/** Starts a scrape target on 127.0.0.1 at a free port. */
export async function startTarget(options: TargetOptions = {}): Promise<ScrapeTarget> {
  const seq = options.sequence;
  const seqName = seq?.name ?? 'cardinal_test_seq_total';
  const seqLabels = seq?.labels ?? {};
  // Prometheus' remote-write WAL watcher skips samples whose timestamp is older than the moment
  // its queue started, so a default base taken when the target starts would lose the first
  // samples of an agent started later. The base is therefore the first scrape's second, which puts
  // every sample at most one step ahead of the scrape that serves it.
  let base = seq?.baseTimestampMs;
  const step = seq?.stepMs ?? 1000;
  let series: TargetSeries[] = options.series ?? [];
  const served: ServedSample[] = [];
  let paused = false;
  let scrapes = 0;

  const page = (): string => {
    const byName = new Map<string, ExpositionSample[]>();
    const add = (s: ExpositionSample): void => {
      const group = byName.get(s.name) ?? [];
      group.push(s);
      byName.set(s.name, group);
    };
    for (const s of series) add({ ...s, labels: s.labels ?? {} });
    if (seq !== undefined && !paused) {
      base ??= Math.floor(Date.now() / 1000) * 1000;
      const k = served.length + 1;
      const sample = { timestampMs: base + k * step, value: k };
      served.push(sample);
      add({ name: seqName, labels: seqLabels, ...sample });
    }
    let text = '';
    for (const [name, group] of byName) {
      // Names ending in _total are counters, as the tests use them; the rest are untyped.
      text += `# TYPE ${name} ${name.endsWith('_total') ? 'counter' : 'untyped'}\n`;
      for (const s of group) text += formatSample(s);
    }
    return text;
  };

  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    scrapes++;
    const body = page();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  const address = `127.0.0.1:${port}`;

  return {
    address,
    url: `http://${address}/metrics`,
    sequenceSelector: selector(seqName, seqLabels),
    dirs: [],
    get scrapes() {
      return scrapes;
    },
    setSeries(next) {
      series = [...next];
    },
    served: () => [...served],
    pauseSequence() {
      paused = true;
      return [...served];
    },
    resumeSequence() {
      paused = false;
    },
    async waitForServed(count, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (served.length < count) {
        if (Date.now() >= deadline) {
          throw new Error(
            `target ${address} served ${served.length} of ${count} sequence samples in ${timeoutMs} ms`,
          );
        }
        await sleep(50);
      }
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
