import { setFlagsFromString } from 'node:v8';

/** The V8 flag the proxy sets for itself; `node --no-<flag>` (or the flag given) leaves it alone. */
export const EXTERNAL_MEMORY_FLAG = 'external-memory-accounted-in-global-limit';

/**
 * Garbage collection tuned for the proxy's allocation pattern, set once at start-up in every
 * process (primary and workers). Each request allocates a few hundred kilobytes of short-lived
 * Buffers (the body as read from the socket and joined). By default V8 13 (Node 24) counts
 * ArrayBuffer memory allocated since the last mark-compact against the old generation's limit, so
 * these dead, young buffers set off a full mark-compact every few dozen requests, each a pause of
 * milliseconds on the event loop. With external memory accounted in the global limit instead,
 * scavenges reclaim them and mark-compacts become rare (README "The latency tail"). Returns
 * whether the flag was set here.
 */
export function tuneGarbageCollection(execArgv: readonly string[]): boolean {
  const named = execArgv.some((a) => a.replace(/_/g, '-').replace(/^--(no-)?/, '') === EXTERNAL_MEMORY_FLAG);
  // Older V8s do not have the flag (and collect such buffers with scavenges anyway).
  if (named || Number(process.versions.v8.split('.')[0]) < 13) return false;
  setFlagsFromString(`--${EXTERNAL_MEMORY_FLAG}`);
  return true;
}
