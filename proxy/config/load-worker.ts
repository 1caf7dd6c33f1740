// The child process of loadValidatedInChild: reads and validates a configuration away from the
// proxy's event loop, answers once over IPC and exits. A process rather than a worker thread: RE2's
// native addon, which validation compiles every regex with, is not safe to load in worker threads.

import { ConfigError } from '../../policy/load.js';
import { loadValidated, transferable } from './loader.js';

const path = process.argv[2] === '' ? undefined : process.argv[2];
let answer: unknown;
try {
  answer = { ok: true, value: transferable(loadValidated(path)) };
} catch (err) {
  answer = {
    ok: false,
    message: err instanceof Error ? err.message : String(err),
    ...(err instanceof ConfigError ? { problems: err.problems } : {}),
  };
}
process.send?.(answer, () => process.disconnect());
