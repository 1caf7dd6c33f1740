// Which proxy instance runs a policy. A proxy instance is one Deployment of cardinal-proxy with its
// own ConfigMap; the convention is that its pods carry the label `cardinal.dev/proxy-instance:
// <instance>`, and a policy selects an instance with exactly that label in
// `spec.proxySelector.matchLabels`. Other labels in the selector are ignored by the operator.
// A policy without it runs on the instance named `default`, as the schema documents.

import type { MetricPolicy } from '../api/types.js';

export const INSTANCE_LABEL = 'cardinal.dev/proxy-instance';
export const DEFAULT_INSTANCE = 'default';

/** The instance whose ConfigMap a policy is rendered into. */
export function selectInstance(policy: Pick<MetricPolicy, 'spec'>): string {
  return policy.spec.proxySelector?.matchLabels?.[INSTANCE_LABEL] ?? DEFAULT_INSTANCE;
}

/** `namespace/name`: how the proxy names a policy in its counters and top-offenders report. */
export function policyId(policy: { metadata: { namespace: string; name: string } }): string {
  return `${policy.metadata.namespace}/${policy.metadata.name}`;
}

/** The ConfigMap an instance's proxies mount. */
export function configMapName(instance: string): string {
  return `cardinal-proxy-${instance}-policies`;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Why `instance` cannot name a proxy instance, or undefined when it can. The name goes into a
 * ConfigMap name and a label value, so it must be an RFC 1123 DNS label (Kubernetes "Object Names
 * and IDs"): at most 63 lowercase letters, digits and '-', starting and ending alphanumeric.
 * The apiserver does not check it, since matchLabels in a custom resource is a plain map; the
 * controller must reject such a policy before it renders.
 */
export function instanceProblem(instance: string): string | undefined {
  if (instance.length > 63)
    return `proxy instance "${instance.slice(0, 63)}..." is longer than 63 characters`;
  if (!DNS_LABEL.test(instance)) {
    return `proxy instance ${JSON.stringify(instance)} must consist of lowercase letters, digits and '-', and start and end with a letter or digit`;
  }
  return undefined;
}
