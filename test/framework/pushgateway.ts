// A real Pushgateway (Debian's prometheus-pushgateway) on loopback, and Python's prometheus_client,
// the reference client that pushes to it.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { binaryPath } from './binaries.js';
import { type ExpositionSample, parseExposition } from './exposition.js';
import { type CloseOptions, freePort, type Program, type StopOptions, startProgram } from './process.js';

export interface PushgatewayProgram {
  readonly program: Program;
  /** The base URL, e.g. http://127.0.0.1:PORT: what a client or --pushgateway is given. */
  readonly url: string;
  /**
   * The pushed series the Pushgateway exposes on /metrics (its own go_, process_, pushgateway_
   * and promhttp_ series, and the push_time_seconds/push_failure_time_seconds it adds per group,
   * left out).
   */
  pushed(): Promise<ExpositionSample[]>;
  /** GET /api/v1/metrics: every group with its metric families. */
  groups(): Promise<PushgatewayGroup[]>;
  readonly dirs: readonly string[];
  stop(o?: StopOptions): Promise<void>;
  start(): Promise<void>;
  close(o?: CloseOptions): Promise<void>;
}

export interface PushgatewayGroup {
  labels: Record<string, string>;
  /** Metric family name -> family, as the API reports it. */
  families: Record<
    string,
    { type: string; help?: string; metrics: { labels: Record<string, string>; value?: string }[] }
  >;
}

const OWN = /^(go_|process_|pushgateway_|promhttp_|push_time_seconds$|push_failure_time_seconds$)/;

export async function startPushgateway(): Promise<PushgatewayProgram> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const program = await startProgram({
    name: 'pushgateway',
    command: binaryPath('pushgateway'),
    // Debian's build persists to /var/lib/prometheus by default; each test gets its own file.
    args: (dir) => [
      `--web.listen-address=127.0.0.1:${port}`,
      `--persistence.file=${join(dir, 'pushgateway.data')}`,
    ],
    readyUrl: `${url}/-/ready`,
  });
  return {
    program,
    url,
    async pushed() {
      const res = await fetch(`${url}/metrics`);
      const text = await res.text();
      return parseExposition(text).filter((s) => !OWN.test(s.name));
    },
    async groups() {
      const res = await fetch(`${url}/api/v1/metrics`);
      const body = (await res.json()) as { data: Record<string, unknown>[] };
      return body.data.map((g) => {
        const families: PushgatewayGroup['families'] = {};
        for (const [name, value] of Object.entries(g)) {
          if (name === 'labels' || name === 'last_push_successful') continue;
          if (name === 'push_time_seconds' || name === 'push_failure_time_seconds') continue;
          families[name] = value as PushgatewayGroup['families'][string];
        }
        return { labels: g.labels as Record<string, string>, families };
      });
    },
    get dirs() {
      return program.dirs;
    },
    stop: (o) => program.stop(o),
    start: () => program.start(),
    close: (o) => program.close(o),
  };
}

export interface PythonResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a Python script with the interpreter that has prometheus_client (hack/python-client.sh).
 * Never throws for a non-zero exit: a refused push is an exception in the client, which the test
 * reads from stderr.
 */
export function runPython(
  script: string,
  args: readonly string[] = [],
  env: Record<string, string> = {},
): Promise<PythonResult> {
  return new Promise((resolve, reject) => {
    execFile(
      binaryPath('python'),
      ['-c', script, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') {
          reject(err);
          return;
        }
        resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr });
      },
    );
  });
}
