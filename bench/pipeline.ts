// The proxy's per-request policy path, assembled in-process the way proxy/main.ts assembles it:
// a configuration directory is loaded, validated and compiled; the engine reports to PolicyStats,
// which feeds the top-offender statistics. Everything the request path does except HTTP and
// forwarding, with the proxy's default sizes.
import { Registry } from 'prom-client';
import { loadConfig } from '../policy/load.js';
import { validatePolicies } from '../policy/validate.js';
import type { SeriesIndex } from '../proxy/codec/scan.js';
import { parseProxyOptions } from '../proxy/config/flags.js';
import { prepareRequest } from '../proxy/ingest/remote-write.js';
import { compilePipeline } from '../proxy/pipeline/compile.js';
import { PolicyEngine } from '../proxy/pipeline/engine.js';
import { Offenders } from '../proxy/stats/offenders.js';
import { PolicyStats } from '../proxy/stats/policy-stats.js';

export interface PolicyPath {
  readonly engine: PolicyEngine;
  /** Runs one snappy-compressed remote-write 1.0 body through the path; returns the samples forwarded. */
  run(body: Uint8Array, nowMs: number): number;
}

/** Builds the path for the policies under `configDir`, with the proxy's defaults for all other flags. */
export function policyPath(configDir: string, flags: readonly string[] = []): PolicyPath {
  const options = parseProxyOptions(['--config', configDir, ...flags], {});
  if (options === 'help' || options === 'version') throw new Error('unreachable: no --help given');
  const pipeline = compilePipeline(validatePolicies(loadConfig(configDir).policies));
  const stats = new PolicyStats(new Registry());
  stats.setPipeline(pipeline);
  const engine = new PolicyEngine(pipeline, options.engine, stats);
  const offenders = new Offenders(engine, options.stats);
  stats.observe({
    slot: offenders.hooks.slot,
    forwarded: offenders.hooks.forwarded,
    newSeries: (metric, labels, nowMs) => offenders.newSeries(metric, labels, nowMs),
  });
  let scratch: SeriesIndex | undefined;
  let decodeBuffer: Buffer | undefined;
  return {
    engine,
    run(body, nowMs) {
      try {
        const r = prepareRequest('1.0', body, {
          maxDecodedBytes: options.maxDecodedBytes,
          upstreamProtocol: options.upstreamProtocol,
          scratch,
          decodeBuffer,
          engine,
          tenant: undefined,
          nowMs,
        });
        scratch = r.index;
        decodeBuffer = r.decodeBuffer;
        return r.prepared.forwarded.samples;
      } finally {
        stats.flush();
      }
    },
  };
}
