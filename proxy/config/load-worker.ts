// The child process of ConfigLoader.load: reads and validates the files it is sent away from the
// proxy's event loop, answers once over IPC and exits. A process rather than a worker thread: RE2's
// native addon, which validation compiles every regex with, is not safe to load in worker threads.

import { checkFile } from './configuration.js';
import type { LoadAnswer, LoadRequest } from './loader.js';

process.once('message', (request: LoadRequest) => {
  let answer: LoadAnswer;
  try {
    answer = { ok: true, checks: request.texts.map((t) => checkFile(t)) };
  } catch (err) {
    answer = { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  process.send?.(answer, () => process.disconnect());
});
