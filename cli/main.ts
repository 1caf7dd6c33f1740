#!/usr/bin/env node
import { createInterface } from 'node:readline/promises';
import { run } from './cardinal.js';
import type { Io } from './io.js';

function terminalIo(): Io {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readLine: async (prompt) => {
      const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
      try {
        process.stderr.write(prompt);
        for await (const line of rl) return line;
        return undefined;
      } finally {
        rl.close();
      }
    },
  };
}

run(process.argv.slice(2), terminalIo()).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`cardinal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
