// The Helm chart in tests: helm itself (built from its Go module, see hack/kube-assets.sh), and the
// chart's RBAC installed into a control plane with a kubeconfig for its ServiceAccount, so the
// operator can be run with exactly the permissions the chart grants.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { CHART_DIR } from '../../charts/values.js';
import type { ControlPlane } from './kube.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const RBAC_KINDS = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];

/** The helm binary: CARDINAL_HELM (exported by hack/test.mjs), else the cache kube-assets.sh fills. */
export function helmPath(): string {
  const cache =
    process.env.CARDINAL_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cardinal');
  for (const c of [process.env.CARDINAL_HELM, join(cache, 'helm/3.19.5/helm')]) {
    if (c === undefined || c === '') continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // Try the next candidate.
    }
  }
  throw new Error('helm not found: set CARDINAL_HELM or run `bash hack/deps.sh`');
}

export interface RenderedObject {
  kind: string;
  metadata: { name: string; namespace?: string };
}

/**
 * The chart's ServiceAccount, roles and bindings as `helm template` renders them for a release,
 * with `set` as more `--set` values.
 */
export function renderChartRbac(
  release: string,
  namespace: string,
  set: readonly string[] = [],
): RenderedObject[] {
  const r = spawnSync(
    helmPath(),
    [
      'template',
      release,
      join(ROOT, CHART_DIR),
      '--namespace',
      namespace,
      '--set',
      'upstream=http://upstream:9090/write',
      ...set.flatMap((s) => ['--set', s]),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  const docs = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as RenderedObject | null)
    .filter((d): d is RenderedObject => d !== null && RBAC_KINDS.includes(d.kind));
  const kinds = docs.map((d) => d.kind).sort();
  if (kinds.join() !== [...RBAC_KINDS].sort().join())
    throw new Error(`the chart rendered RBAC kinds ${kinds.join(', ')}`);
  return docs;
}

/**
 * Applies the chart's RBAC for `release` in `namespace` and writes a kubeconfig that
 * authenticates as its ServiceAccount with a fresh token. Returns the kubeconfig's path and the
 * ServiceAccount's name.
 */
export async function installChartRbac(
  plane: ControlPlane,
  release: string,
  namespace: string,
  set: readonly string[] = [],
): Promise<{ kubeconfig: string; serviceAccount: string }> {
  const rbac = renderChartRbac(release, namespace, set);
  const serviceAccount = rbac.find((d) => d.kind === 'ServiceAccount')!.metadata.name;
  await plane.apply(rbac.map((d) => JSON.stringify(d)).join('\n'));
  const r = await plane.kubectl(['-n', namespace, 'create', 'token', serviceAccount, '--duration=1h']);
  if (r.code !== 0) throw new Error(`kubectl create token: ${r.stderr}`);
  const adminConfig = parse(readFileSync(plane.kubeconfig, 'utf8')) as {
    clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  };
  const cluster = adminConfig.clusters[0]!.cluster;
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'cardinal-sa-')), 'kubeconfig');
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'local', cluster }],
      users: [{ name: serviceAccount, user: { token: r.stdout.trim() } }],
      contexts: [{ name: serviceAccount, context: { cluster: 'local', user: serviceAccount, namespace } }],
      'current-context': serviceAccount,
    }),
    { mode: 0o600 },
  );
  return { kubeconfig, serviceAccount };
}
