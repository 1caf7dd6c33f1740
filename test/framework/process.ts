// Starting and stopping real programs from tests.
//
// Each program runs in its own temporary directory, which holds its configuration, its data and
// one log file with everything it wrote to stdout and stderr. A program can be stopped and started
// again with the same arguments, port and directory, which is how fault tests restart a server.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How many lines of a program's log an error message carries. */
const LOG_TAIL_LINES = 40;

/** Every running child of this test process, so none outlives it (see killOrphansOnExit). */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

// The children are killed synchronously when this process exits for any reason a handler can see:
// a normal exit, an uncaught error, or SIGINT/SIGTERM/SIGHUP from the test runner or a terminal.
// This registry is the one module-level state in the framework; an exit hook is process-wide by nature.
function killOrphansOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const child of running) child.kill('SIGKILL');
    running.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAll();
      // Re-raise with the default action when nobody else handles the signal, so it still ends us.
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Whether temporary directories are kept for inspection even after a passing test. */
export function keepTmpRequested(): boolean {
  return process.env.CARDINAL_KEEP_TMP === '1';
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('freePort: no TCP address');
  return address.port;
}

export interface WaitForHttpOptions {
  timeoutMs?: number;
  /** The status that counts as ready; any 2xx when unset. */
  expectStatus?: number;
  intervalMs?: number;
  /** Stop waiting early, with its log in the error, when this program exits. */
  program?: Program;
}

/** Polls `url` with GET until it answers with the expected status. */
export async function waitForHttp(url: string, options: WaitForHttpOptions = {}): Promise<void> {
  const { timeoutMs = 30_000, expectStatus, intervalMs = 100, program } = options;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (program !== undefined && !program.running) {
      throw new Error(
        `${program.name} exited (${program.exitDescription()}) while waiting for ${url}${logSection(program)}`,
      );
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(intervalMs, 2_000)) });
      await res.body?.cancel();
      const ok = expectStatus === undefined ? res.ok : res.status === expectStatus;
      if (ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last =
        err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    }
    if (Date.now() >= deadline) {
      const tail = program === undefined ? '' : logSection(program);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${url} (${last})${tail}`);
    }
    await sleep(intervalMs);
  }
}

function logSection(program: Program): string {
  return `\n--- last lines of ${program.logPath} ---\n${program.logTail()}\n---`;
}

export interface ProgramOptions {
  /** A short name used in the temp dir's name, in the log file's name and in errors. */
  name: string;
  /** The executable's path. */
  command: string;
  /** Arguments; they may refer to files under `dir`, which exists before this is called. */
  args: (dir: string) => string[];
  /** Run in this directory instead of a fresh temporary one; it is then never removed. */
  dir?: string;
  env?: Record<string, string>;
  /** The program is ready when this URL answers; `start()` waits for it. */
  readyUrl?: string;
  readyStatus?: number;
  readyTimeoutMs?: number;
}

export interface StopOptions {
  /** How long to wait after SIGTERM before SIGKILL. */
  graceMs?: number;
}

export interface CloseOptions extends StopOptions {
  /** Keep the temporary directory (logs and data) instead of removing it. */
  keepDir?: boolean;
}

/** Anything a test starts and must close: a program, a target, a composite of them. */
export interface Closable {
  close(options?: CloseOptions): Promise<void>;
  /** Directories worth keeping when a test fails; reported to the developer. */
  readonly dirs: readonly string[];
}

/**
 * A long-lived handle on one program. `start()` and `stop()` may alternate any number of times;
 * the arguments, the directory and the log file stay the same, so a restarted server finds its data.
 */
export class Program implements Closable {
  readonly name: string;
  readonly dir: string;
  readonly logPath: string;
  readonly #options: ProgramOptions;
  readonly #ownsDir: boolean;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #spawnError: Error | undefined;

  constructor(options: ProgramOptions) {
    this.#options = options;
    this.name = options.name;
    this.#ownsDir = options.dir === undefined;
    this.dir = options.dir ?? mkdtempSync(join(tmpdir(), `cardinal-${options.name}-`));
    this.logPath = join(this.dir, `${options.name}.log`);
  }

  get dirs(): readonly string[] {
    return this.#ownsDir ? [this.dir] : [];
  }

  get running(): boolean {
    return this.#child !== undefined && this.#exit === undefined;
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  /** Spawns the program and, when a ready URL is set, waits until it answers. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    killOrphansOnExit();
    const args = this.#options.args(this.dir);
    // The log is opened for appending, so a restarted program's output follows the earlier run's.
    const log = openSync(this.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.#options.command, args, {
        cwd: this.dir,
        env: { ...process.env, ...this.#options.env },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    this.#child = child;
    this.#exit = undefined;
    this.#spawnError = undefined;
    running.add(child);
    this.#exited = new Promise<void>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        running.delete(child);
        this.#exit ??= { code, signal };
        resolve();
      };
      child.once('exit', done);
      // A missing executable emits 'error' and never 'exit'.
      child.once('error', (err) => {
        this.#exit = { code: null, signal: null };
        this.#spawnError = err;
        done(null, null);
      });
    });
    if (this.#options.readyUrl === undefined) return;
    try {
      await waitForHttp(this.#options.readyUrl, {
        timeoutMs: this.#options.readyTimeoutMs ?? 30_000,
        ...(this.#options.readyStatus === undefined ? {} : { expectStatus: this.#options.readyStatus }),
        program: this,
      });
    } catch (err) {
      await this.stop({ graceMs: 2_000 });
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(
        `${this.name} did not become ready (${this.#options.command} ${args.join(' ')}): ${message}`,
      );
    }
  }

  /** Sends SIGTERM, waits up to `graceMs`, then SIGKILL. Resolves once the program has exited. */
  async stop(options: StopOptions = {}): Promise<void> {
    const child = this.#child;
    if (child === undefined || this.#exit !== undefined) return;
    const { graceMs = 10_000 } = options;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const tooSlow = await Promise.race([this.#exited.then(() => false), graceOver]);
    clearTimeout(timer);
    if (tooSlow) {
      child.kill('SIGKILL');
      await this.#exited;
    }
  }

  /** Sends a signal without waiting; use `stop()` to wait for the exit. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.#child?.kill(signal);
  }

  /** Resolves when the program has exited, however that happened. */
  async exited(): Promise<void> {
    await this.#exited;
  }

  async restart(options: StopOptions = {}): Promise<void> {
    await this.stop(options);
    await this.start();
  }

  /** Stops the program and removes its directory unless asked to keep it. */
  async close(options: CloseOptions = {}): Promise<void> {
    await this.stop(options);
    if (this.#ownsDir && !(options.keepDir ?? false) && !keepTmpRequested()) {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  exitDescription(): string {
    if (this.#spawnError !== undefined) return `could not spawn: ${this.#spawnError.message}`;
    if (this.#exit === undefined) return 'running';
    return this.#exit.signal === null ? `exit code ${this.#exit.code}` : `signal ${this.#exit.signal}`;
  }

  /** The last lines of the program's log. */
  logTail(lines = LOG_TAIL_LINES): string {
    let text: string;
    try {
      text = readFileSync(this.logPath, 'utf8');
    } catch {
      return '(no log)';
    }
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}

/** Creates a program and starts it; on failure the thrown error carries the program's log tail. */
export async function startProgram(options: ProgramOptions): Promise<Program> {
  const program = new Program(options);
  try {
    await program.start();
  } catch (err) {
    await program.close({ keepDir: true });
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${message}\n(directory kept: ${program.dir})`);
  }
  return program;
}
