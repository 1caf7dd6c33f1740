// Where the real programs live. hack/test.mjs exports their paths from hack/deps.sh; a developer
// running vitest directly gets the same programs from PATH and from the build cache.

import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

export type ProgramKind = 'prometheus2' | 'promtool' | 'prometheus3' | 'vmagent' | 'pushgateway' | 'python';

interface Lookup {
  env: string;
  /** Executable names searched on PATH. */
  path: string[];
  /** Absolute candidates tried after PATH. */
  files: () => string[];
}

// The cache directory matches the one hack/build-prometheus3.sh writes to.
function cacheBin(): string {
  const base =
    process.env.CARDINAL_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cardinal');
  return join(base, 'bin');
}

const lookups: Record<ProgramKind, Lookup> = {
  prometheus2: { env: 'CARDINAL_PROMETHEUS2', path: ['prometheus'], files: () => ['/usr/bin/prometheus'] },
  // Debian's prometheus package ships promtool beside prometheus.
  promtool: { env: 'CARDINAL_PROMTOOL', path: ['promtool'], files: () => ['/usr/bin/promtool'] },
  prometheus3: {
    env: 'CARDINAL_PROMETHEUS3',
    path: [],
    files: () => [join(cacheBin(), `prometheus-${process.env.PROMETHEUS3_VERSION ?? '3.5.0'}`)],
  },
  vmagent: { env: 'CARDINAL_VMAGENT', path: ['vmagent'], files: () => ['/usr/bin/vmagent'] },
  pushgateway: {
    env: 'CARDINAL_PUSHGATEWAY',
    path: ['prometheus-pushgateway', 'pushgateway'],
    files: () => ['/usr/bin/prometheus-pushgateway'],
  },
  // The interpreter of the virtual environment hack/python-client.sh makes, with prometheus_client.
  python: {
    env: 'CARDINAL_PYTHON',
    path: [],
    files: () => [join(cacheBin(), '..', 'python', 'prometheus-client-0.26.0', 'bin', 'python')],
  },
};

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The path of a program the tests start. Throws, naming the script that installs it, when the
 * program is nowhere to be found.
 */
export function binaryPath(kind: ProgramKind): string {
  const lookup = lookups[kind];
  const fromEnv = process.env[lookup.env];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`${lookup.env}=${fromEnv} is not an executable file; run \`bash hack/deps.sh\``);
  }
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const name of lookup.path) {
    for (const dir of dirs) {
      const file = join(dir, name);
      if (isExecutable(file)) return file;
    }
  }
  for (const file of lookup.files()) if (isExecutable(file)) return file;
  const tried = [...lookup.path.map((n) => `${n} on PATH`), ...lookup.files()].join(', ');
  throw new Error(
    `${kind} not found (${lookup.env} unset; tried ${tried}); run \`bash hack/deps.sh\` to install it`,
  );
}
