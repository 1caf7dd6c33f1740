// VictoriaMetrics' vmagent as a test program: a scraper that remote-writes, or a relay that
// accepts remote write and forwards it (the reference the benchmarks compare against).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { binaryPath } from './binaries.js';
import {
  type Closable,
  type CloseOptions,
  freePort,
  type Program,
  type StopOptions,
  startProgram,
} from './process.js';

export interface VmagentProgram extends Closable {
  readonly program: Program;
  /** `http://127.0.0.1:port` */
  readonly url: string;
  readonly port: number;
  /** vmagent's own metrics page, for `metricSum`. */
  readonly metricsUrl: string;
  /** Stops and starts again on the same port, keeping its on-disk queue. */
  restart(options?: StopOptions): Promise<void>;
  stop(options?: StopOptions): Promise<void>;
  start(): Promise<void>;
}

export interface VmagentRelay extends VmagentProgram {
  /** Where senders remote-write to: `http://127.0.0.1:port/api/v1/write`. */
  readonly writeUrl: string;
}

export interface VmagentOptions {
  remoteWriteUrl: string;
  /** `host:port` of each target, scraped at /metrics by the job `cardinal-target`. */
  scrapeTargets: string[];
  /** `1s` by default. */
  scrapeInterval?: string;
  extraArgs?: string[];
  port?: number;
}

export interface VmagentRelayOptions {
  remoteWriteUrl: string;
  extraArgs?: string[];
  port?: number;
}

interface LaunchOptions {
  name: string;
  port: number | undefined;
  args: (dir: string) => string[];
}

async function launch(options: LaunchOptions): Promise<VmagentProgram> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const program = await startProgram({
    name: options.name,
    command: binaryPath('vmagent'),
    args: (dir) => [
      `-httpListenAddr=127.0.0.1:${port}`,
      `-remoteWrite.tmpDataPath=${join(dir, 'remotewrite-data')}`,
      // Sends small batches promptly; the default waits up to 1s.
      '-remoteWrite.flushInterval=200ms',
      ...options.args(dir),
    ],
    readyUrl: `${url}/health`,
    readyStatus: 200,
  });
  return {
    program,
    port,
    url,
    metricsUrl: `${url}/metrics`,
    dirs: program.dirs,
    restart: (o?: StopOptions) => program.restart(o),
    stop: (o?: StopOptions) => program.stop(o),
    start: () => program.start(),
    close: (o?: CloseOptions) => program.close(o),
  };
}

/** Starts vmagent scraping `scrapeTargets` and remote-writing to `remoteWriteUrl`, honouring the target's timestamps. */
export async function startVmagent(options: VmagentOptions): Promise<VmagentProgram> {
  const interval = options.scrapeInterval ?? '1s';
  return launch({
    name: 'vmagent',
    port: options.port,
    args: (dir) => {
      const configFile = join(dir, 'scrape.yml');
      const config = {
        global: { scrape_interval: interval, scrape_timeout: interval },
        scrape_configs: [
          {
            job_name: 'cardinal-target',
            // Explicit, because vmagent's default changed: from 1.93 it ignores the target's timestamps.
            honor_timestamps: true,
            static_configs: [{ targets: options.scrapeTargets }],
          },
        ],
      };
      writeFileSync(configFile, stringify(config));
      return [
        `-promscrape.config=${configFile}`,
        `-remoteWrite.url=${options.remoteWriteUrl}`,
        ...(options.extraArgs ?? []),
      ];
    },
  });
}

/** Starts vmagent accepting remote write on /api/v1/write and forwarding it to `remoteWriteUrl`. */
export async function startVmagentRelay(options: VmagentRelayOptions): Promise<VmagentRelay> {
  const vmagent = await launch({
    name: 'vmagent-relay',
    port: options.port,
    args: () => [`-remoteWrite.url=${options.remoteWriteUrl}`, ...(options.extraArgs ?? [])],
  });
  return { ...vmagent, writeUrl: `${vmagent.url}/api/v1/write` };
}
