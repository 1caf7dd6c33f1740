// `cardinal`: the policy tools for people: check, test, preview, retro. The commands, dispatched;
// main.ts runs them on the terminal.

import { didYouMean } from '../lib/suggest.js';
import { readVersion } from '../lib/version.js';
import { ConfigError } from '../policy/load.js';
import { check } from './check.js';
import { CommandError, type Io } from './io.js';
import { preview } from './preview.js';
import { retro } from './retro.js';
import { test } from './test.js';

const usage = `Usage: cardinal COMMAND [flags]

Commands:
  check PATH...                         validate MetricPolicy and MetricUsage files, as the proxy does
  test --config PATH SERIES_FILE        what the policies do to each series, as a table
  test TESTFILE.yaml...                 run policy test files (like promtool test rules)
  preview --config PATH --prometheus URL
                                        what the policies would drop, rewrite or cut from the series a
                                        Prometheus holds, and who reads it
  retro --config PATH --prometheus URL [--apply]
                                        delete from Prometheus the stored series the policies drop
  version                               print the version

cardinal COMMAND --help describes each.
`;

const COMMANDS: Record<string, (argv: readonly string[], io: Io) => Promise<number>> = {
  check,
  test,
  preview,
  retro,
};

export async function run(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.stdout(usage);
    return command === undefined ? 2 : 0;
  }
  if (command === 'version' || command === '--version') {
    io.stdout(`cardinal ${readVersion()} (node ${process.version})\n`);
    return 0;
  }
  const fn = COMMANDS[command];
  if (fn === undefined) {
    io.stderr(
      `cardinal: unknown command ${JSON.stringify(command)}${didYouMean(command, [...Object.keys(COMMANDS), 'version'])}\nRun cardinal --help for the commands.\n`,
    );
    return 2;
  }
  try {
    return await fn(rest, io);
  } catch (err) {
    if (err instanceof CommandError) {
      io.stderr(`cardinal ${command}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.stderr(`cardinal ${command}: the configuration has problems:\n${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
