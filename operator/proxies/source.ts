// Where the operator finds the proxies of an instance. Two sources, chosen by flags:
//
//   --proxy-service NAME     the EndpointSlices of a Service in the operator's --namespace, one
//                            Service per instance: NAME for the instance `default`, and
//                            NAME-<instance> for any other (the chart names its Services so).
//                            A Service per instance, rather than one selecting every proxy, keeps
//                            an instance's proxies the ready endpoints of exactly its Deployment.
//   --proxy-endpoints URLs   a fixed list of proxy base URLs, for a proxy run as a sidecar or a
//                            cluster without Service discovery. It names the proxies of the
//                            instance `default` only; other instances stay unobserved.
//
// With neither flag, the operator does not look at proxies at all, and says so in each policy's
// Ready and Degraded conditions (Unknown, ProxiesNotObserved) rather than claiming there are none.

import { DEFAULT_INSTANCE } from '../render/instance.js';
import type { ProxyEndpoint } from './endpoints.js';

export type ProxySource =
  | { readonly kind: 'none' }
  | { readonly kind: 'service'; readonly service: string }
  | { readonly kind: 'static'; readonly endpoints: readonly ProxyEndpoint[] };

/** A Service name is an RFC 1035 label (Kubernetes "Object Names and IDs"). */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The Service that fronts the proxies of `instance`, or a TypeError when the name it makes is not
 * a valid Service name (too long, or a base that is not a label).
 */
export function proxyServiceName(base: string, instance: string): string {
  const name = instance === DEFAULT_INSTANCE ? base : `${base}-${instance}`;
  if (!SERVICE_NAME.test(name)) {
    throw new TypeError(
      `"${name}", the Service of proxy instance ${instance}, is not a valid Service name (RFC 1035 label, at most 63 characters)`,
    );
  }
  return name;
}

/**
 * The endpoints of a comma-separated list of base URLs, each `http(s)://host[:port]` with no path,
 * query or credentials, in the order given and each once. Throws a TypeError naming the first
 * entry that is wrong.
 */
export function parseProxyEndpoints(list: string): ProxyEndpoint[] {
  const out = new Map<string, ProxyEndpoint>();
  for (const raw of list.split(',').map((s) => s.trim())) {
    if (raw === '') throw new TypeError(`empty entry in "${list}"`);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new TypeError(`"${raw}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new TypeError(`"${raw}" must be an http or https URL`);
    if (url.username !== '' || url.password !== '')
      throw new TypeError(`"${raw}" must not carry credentials`);
    if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
      throw new TypeError(`"${raw}" must be a base URL, without a path or query`);
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    // hostname keeps the brackets of an IPv6 address, so `endpoint` reads as `new URL(..).host`.
    const endpoint = `${url.hostname}:${port}`;
    const address = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!out.has(endpoint))
      out.set(endpoint, { address, port, endpoint, url: `${url.protocol}//${endpoint}` });
  }
  return [...out.values()];
}

/** Why a policy's proxies were not looked at: the Ready and Degraded conditions say it. */
export interface Unobserved {
  readonly reason: 'ProxiesNotObserved' | 'DiscoveryFailed';
  readonly message: string;
}

/**
 * Why `source` tells nothing about the proxies of `instance`, or undefined when it does: then the
 * caller lists or polls them.
 */
export function unobserved(source: ProxySource, instance: string): Unobserved | undefined {
  if (source.kind === 'none') {
    return {
      reason: 'ProxiesNotObserved',
      message:
        'The operator runs without proxy discovery (--proxy-service or --proxy-endpoints), so whether the proxies run this generation is not known.',
    };
  }
  if (source.kind === 'static' && instance !== DEFAULT_INSTANCE) {
    return {
      reason: 'ProxiesNotObserved',
      message: `--proxy-endpoints names the proxies of instance ${DEFAULT_INSTANCE} only, so whether the proxies of instance ${instance} run this generation is not known.`,
    };
  }
  return undefined;
}
