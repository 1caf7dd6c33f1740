// Starts the real cardinal-proxy binary (dist/proxy/main.js, built by the integration project's
// global setup) as a separate process, the way users run it.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { metricSum } from './exposition.js';
import { type CloseOptions, freePort, type Program, type StopOptions, startProgram } from './process.js';

export const PROXY_MAIN = fileURLToPath(new URL('../../dist/proxy/main.js', import.meta.url));
export const CLI_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Runs the built `cardinal` command with `input` on its stdin, to its exit. */
export function runCardinal(
  args: readonly string[],
  input = '',
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += String(d);
    });
    child.stderr.on('data', (d) => {
      err += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
    child.stdin.end(input);
  });
}

export interface ProxyOptions {
  /** The upstream's remote-write URL. */
  upstream: string;
  /** More flags, e.g. ['--upstream.protocol', '1.0']; they may refer to files under the program's dir. */
  args?: (dir: string) => string[];
  env?: Record<string, string>;
  port?: number;
}

export interface ProxyProgram {
  readonly program: Program;
  readonly url: string;
  /** The proxy's remote-write ingest URL. */
  readonly writeUrl: string;
  readonly metricsUrl: string;
  /** The sum of a metric of the proxy's own /metrics over the series matching `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  readonly dirs: readonly string[];
  stop(o?: StopOptions): Promise<void>;
  start(): Promise<void>;
  close(o?: CloseOptions): Promise<void>;
}

export async function startProxy(options: ProxyOptions): Promise<ProxyProgram> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const program = await startProgram({
    name: 'cardinal-proxy',
    command: process.execPath,
    args: (dir) => [
      PROXY_MAIN,
      '--listen',
      `127.0.0.1:${port}`,
      '--upstream',
      options.upstream,
      '--log-level',
      'debug',
      ...(options.args?.(dir) ?? []),
    ],
    ...(options.env === undefined ? {} : { env: options.env }),
    readyUrl: `${url}/-/ready`,
  });
  return {
    program,
    url,
    writeUrl: `${url}/api/v1/write`,
    metricsUrl: `${url}/metrics`,
    metric: (name, labels = {}) => metricSum(`${url}/metrics`, name, labels),
    get dirs() {
      return program.dirs;
    },
    stop: (o) => program.stop(o),
    start: () => program.start(),
    close: (o) => program.close(o),
  };
}
