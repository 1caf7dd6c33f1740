// Helpers for tests that run the operator against a control plane: the CRD, namespaces, kubectl
// that throws, MetricPolicies, and the operator binary as users run it.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ControlPlane, startControlPlane } from './kube.js';
import { projectConfigMap, syncConfigMap } from './kubelet.js';
import { type Closable, freePort, type Program, startProgram } from './process.js';

/** What `useCleanup()` returns: registers a program, plane or sync to be closed after the tests. */
export type Track = <T extends Closable>(thing: T) => T;

export const CRD_PATH = fileURLToPath(new URL('../../crds/metricpolicies.yaml', import.meta.url));
export const OPERATOR_MAIN = fileURLToPath(new URL('../../dist/operator/main.js', import.meta.url));

/** kubectl against the plane that throws with its stderr when it fails, and returns stdout. */
export function kubectlOrThrow(plane: ControlPlane): (args: string[], input?: string) => Promise<string> {
  return async (args, input) => {
    const r = await plane.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

/** Installs the generated MetricPolicy CRD and waits until the API server serves it. */
export async function installCrd(plane: ControlPlane): Promise<void> {
  const kubectl = kubectlOrThrow(plane);
  await kubectl(['apply', '-f', CRD_PATH]);
  await kubectl(['wait', '--for=condition=Established', 'crd/metricpolicies.cardinal.dev', '--timeout=30s']);
}

/**
 * A control plane that serves the MetricPolicy CRD, with `namespaces` created in it, closed with
 * the test's other programs.
 */
export async function startPolicyPlane(
  track: Track,
  namespaces: readonly string[],
): Promise<{ plane: ControlPlane; kubectl: ReturnType<typeof kubectlOrThrow> }> {
  const plane = track(await startControlPlane());
  await installCrd(plane);
  const kubectl = kubectlOrThrow(plane);
  for (const ns of namespaces) await kubectl(['create', 'namespace', ns]);
  return { plane, kubectl };
}

/**
 * A proxy's --config directory in a fresh temporary directory, kept equal to the operator's
 * ConfigMap `name` (and the further shards `names`) in `namespace` by the kubelet-like sync, as a
 * pod's projected volume is. It starts empty, as an optional ConfigMap source does.
 */
export async function projectedConfigDir(
  track: Track,
  options: {
    plane: ControlPlane;
    namespace: string;
    name: string;
    names?: readonly string[];
    prefix: string;
  },
): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), options.prefix)), 'policies');
  await projectConfigMap(dir, {});
  track(
    syncConfigMap({
      kubectl: (args) => options.plane.kubectl(args),
      namespace: options.namespace,
      name: options.name,
      ...(options.names === undefined ? {} : { names: options.names }),
      dir,
      intervalMs: 200,
    }),
  );
  return dir;
}

/** Applies a MetricPolicy with the given spec. */
export function applyPolicy(
  plane: ControlPlane,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
): Promise<string> {
  return kubectlOrThrow(plane)(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'cardinal.dev/v1alpha1',
      kind: 'MetricPolicy',
      metadata: { name, namespace },
      spec,
    }),
  );
}

export interface OperatorProgram {
  readonly program: Program;
  readonly metricsUrl: string;
}

/** Starts `node dist/operator/main.js` with the plane's kubeconfig and waits for /readyz. */
export async function startOperator(options: {
  plane: ControlPlane;
  namespace: string;
  args?: string[];
  env?: Record<string, string>;
  name?: string;
  kubeconfig?: string;
}): Promise<OperatorProgram> {
  const port = await freePort();
  const program = await startProgram({
    name: options.name ?? 'cardinal-operator',
    command: process.execPath,
    ...(options.env === undefined ? {} : { env: options.env }),
    args: () => [
      OPERATOR_MAIN,
      '--kubeconfig',
      options.kubeconfig ?? options.plane.kubeconfig,
      '--namespace',
      options.namespace,
      '--metrics-listen',
      `127.0.0.1:${port}`,
      ...(options.args ?? []),
    ],
    readyUrl: `http://127.0.0.1:${port}/readyz`,
  });
  return { program, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}
