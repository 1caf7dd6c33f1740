// The test framework: start real programs on 127.0.0.1, talk to them, and stop them.

import { afterAll, afterEach } from 'vitest';
import type { Closable } from './process.js';

export { expectReceivedExactly } from './assert.js';
export { binaryPath, type ProgramKind } from './binaries.js';
export {
  CLI_MAIN,
  PROXY_MAIN,
  type ProxyOptions,
  type ProxyProgram,
  runCardinal,
  startProxy,
} from './cardinal.js';
export { helmPath, installChartRbac, RBAC_KINDS, type RenderedObject, renderChartRbac } from './chart.js';
export {
  type Cluster,
  type ImageName,
  prometheusOperatorDir,
  secondsSince,
  startCluster,
} from './cluster.js';
export {
  type ExpositionSample,
  formatSample,
  formatValue,
  type Labels,
  metricSum,
  parseExposition,
  parseValue,
} from './exposition.js';
export {
  type ControlPlane,
  type ControlPlaneOptions,
  type KubeAssets,
  type KubectlOptions,
  type KubectlResult,
  kubeAssets,
  startControlPlane,
} from './kube.js';
export { type KubectlRunner, projectConfigMap, syncConfigMap } from './kubelet.js';
export {
  applyPolicy,
  CRD_PATH,
  installCrd,
  kubectlOrThrow,
  OPERATOR_MAIN,
  type OperatorProgram,
  projectedConfigDir,
  startOperator,
  startPolicyPlane,
  type Track,
} from './operator.js';
export { type EventuallyOptions, eventually } from './poll.js';
export {
  type Closable,
  type CloseOptions,
  freePort,
  keepTmpRequested,
  Program,
  type ProgramOptions,
  type StopOptions,
  startProgram,
  type WaitForHttpOptions,
  waitForHttp,
} from './process.js';
export {
  type AgentOptions,
  type InstantSample,
  type NativeHistogram,
  type PrometheusAgent,
  type PrometheusProgram,
  type PrometheusReceiver,
  type PrometheusServer,
  type PrometheusVersion,
  type RawSeries,
  type ReceiverOptions,
  type RemoteWriteMessage,
  type RemoteWriteOptions,
  type ServerOptions,
  startPrometheusAgent,
  startPrometheusReceiver,
  startPrometheusServer,
} from './prometheus.js';
export { type RecordedRequest, startRecorder, startSink } from './sink.js';
export {
  type ScrapeTarget,
  type SequenceOptions,
  type ServedSample,
  startTarget,
  type TargetOptions,
  type TargetSeries,
} from './target.js';
export {
  startVmagent,
  startVmagentRelay,
  type VmagentOptions,
  type VmagentProgram,
  type VmagentRelay,
  type VmagentRelayOptions,
} from './vmagent.js';

/**
 * Registers vitest hooks that close what a test file starts. Pass each started thing through the
 * returned function: `const rx = track(await startPrometheusReceiver({ version: 2 }))`.
 *
 * With `scope: 'each'` things are closed after every test, otherwise after the file's last test
 * (or describe block, when called inside one). Things close in reverse order of tracking, so a
 * sender stops before its receiver. When a test failed, or CARDINAL_KEEP_TMP=1, the programs'
 * directories with their logs and data are kept and their paths printed.
 */
export function useCleanup(scope: 'each' | 'all' = 'all'): <T extends Closable>(thing: T) => T {
  let tracked: Closable[] = [];
  let failed = false;
  const closeAll = async (): Promise<void> => {
    const things = tracked.reverse();
    tracked = [];
    const errors: unknown[] = [];
    for (const thing of things) {
      try {
        await thing.close({ keepDir: failed });
      } catch (err) {
        errors.push(err);
      }
    }
    const kept = things.flatMap((t) => t.dirs);
    if (failed && kept.length > 0) console.warn(`kept for inspection:\n  ${kept.join('\n  ')}`);
    if (errors.length > 0) throw new AggregateError(errors, 'closing test programs failed');
  };
  afterEach(async (context) => {
    if (context.task.result?.state === 'fail') failed = true;
    if (scope === 'each') {
      await closeAll();
      failed = false;
    }
  });
  // vitest parses a hook's first parameter as a fixture list, so it has to be an object pattern.
  // biome-ignore lint/correctness/noEmptyPattern: no fixtures are used; the suite is the second parameter.
  afterAll(async ({}, suite) => {
    if (suite.result?.state === 'fail') failed = true;
    await closeAll();
  });
  return (thing) => {
    tracked.push(thing);
    return thing;
  };
}
export { type LoadBalancer, startLoadBalancer } from './haproxy.js';
export { type RedisOptions, type RedisProgram, startRedis, startRedisCluster } from './redis.js';
export { selfSignedCertificate } from './tls.js';
