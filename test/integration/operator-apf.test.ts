// The operator's writes against a real kube-apiserver whose priority and fairness throttles them:
// a FlowSchema sends a ServiceAccount's requests to a priority level with the smallest share (a
// few seats), no borrowing, and Reject, so concurrent status writes get 429 with Retry-After. Every
// write must land anyway (operator/kube/throttle.ts), and each 429 is counted.

import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { MetricPolicy } from '../../operator/api/types.js';
import { KubeClient } from '../../operator/kube/client.js';
import { startControlPlane, useCleanup } from '../framework/index.js';
import { installCrd, kubectlOrThrow } from '../framework/operator.js';

const POLICIES = 40;

describe('status writes under API priority and fairness', () => {
  const track = useCleanup();

  it('retries every 429 after its Retry-After until each write lands, and counts them', async () => {
    const plane = track(await startControlPlane());
    const kubectl = kubectlOrThrow(plane);
    await installCrd(plane);
    const ns = `cardinal-apf-${randomBytes(4).toString('hex')}`;
    await kubectl(['create', 'namespace', ns]);
    await kubectl(['-n', ns, 'create', 'serviceaccount', 'writer']);
    await plane.apply(`
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ${ns}-writer}
rules:
- {apiGroups: [cardinal.dev], resources: [metricpolicies], verbs: [get, list]}
- {apiGroups: [cardinal.dev], resources: [metricpolicies/status], verbs: [patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ${ns}-writer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ${ns}-writer}
subjects: [{kind: ServiceAccount, name: writer, namespace: ${ns}}]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: ${ns}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {type: Reject}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: ${ns}}
spec:
  matchingPrecedence: 100
  priorityLevelConfiguration: {name: ${ns}}
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects: [{kind: ServiceAccount, serviceAccount: {name: writer, namespace: ${ns}}}]
    resourceRules:
    - {verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true}
`);
    const items = Array.from({ length: POLICIES }, (_, i) => ({
      apiVersion: 'cardinal.dev/v1alpha1',
      kind: 'MetricPolicy',
      metadata: { name: `p-${i}`, namespace: ns },
      spec: { drop: [`team_${i}_debug_.*`] },
    }));
    await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    const token = (await kubectl(['-n', ns, 'create', 'token', 'writer'])).trim();

    const admin = new KubeConfig();
    admin.loadFromFile(plane.kubeconfig);
    const cluster = admin.getCurrentCluster()!;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: cluster.server, caData: cluster.caData }],
      users: [{ name: 'writer', token }],
      contexts: [{ name: 'x', cluster: 'c', user: 'writer' }],
      currentContext: 'x',
    });
    const throttled: string[] = [];
    const kube = new KubeClient(kc, { throttled: (verb, resource) => throttled.push(`${verb} ${resource}`) });
    const policies = (await kube.listPolicies()).items.filter((p) => p.metadata.namespace === ns);
    expect(policies).toHaveLength(POLICIES);

    // The API server's flow control picks up the new FlowSchema within moments: rounds of
    // concurrent writes until one was throttled; every round must land every write.
    let rounds = 0;
    for (; rounds < 20 && throttled.length === 0; rounds++) {
      await Promise.all(
        policies.map((p: MetricPolicy) => {
          // No resourceVersion: each round writes over the last one's status.
          const { resourceVersion: _, ...metadata } = p.metadata;
          return kube.writePolicyStatus({ ...p, metadata }, { observedGeneration: rounds + 1 });
        }),
      );
      const written = JSON.parse(await kubectl(['-n', ns, 'get', 'mp', '-o', 'json'])) as {
        items: { status?: { observedGeneration?: number } }[];
      };
      expect(written.items.map((i) => i.status?.observedGeneration)).toEqual(
        Array.from({ length: POLICIES }, () => rounds + 1),
      );
    }
    console.log(
      `operator-apf: ${throttled.length} writes throttled (429) and retried in ${rounds} round(s) of ${POLICIES}`,
    );
    expect(throttled.length).toBeGreaterThan(0);
    expect(new Set(throttled)).toEqual(new Set(['patch metricpolicies/status']));
  });
});
