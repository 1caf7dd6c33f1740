// Finds the proxies of an instance through the API server: the EndpointSlices of the instance's
// Service, listed by the label the EndpointSlice controller puts on every slice it manages
// (discovery.k8s.io/v1, "Ownership": kubernetes.io/service-name). A list per call; the reconcile
// loop calls it once per instance and round, which is cheap next to polling the proxies. A watch
// (an informer on the same selector) can replace it without changing the callers.

import type { DiscoveryV1Api } from '@kubernetes/client-node';
import { DEFAULT_PORT_NAME, endpointsFromSlices, type ProxyEndpoint } from './endpoints.js';

/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** A Service's name is an RFC 1035 label (Kubernetes API conventions, "Object names and IDs"). */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface ListProxyEndpointsOptions {
  /** The Service port to poll; default `http`, or the slice's only port. */
  readonly portName?: string;
}

/**
 * The ready endpoints of Service `service` in `namespace`, as endpointsFromSlices picks them.
 * Rejects with the client's error when the list fails, and with a TypeError when `service` is not
 * a valid Service name (it goes into a label selector, which a comma would extend).
 */
export async function listProxyEndpoints(
  api: Pick<DiscoveryV1Api, 'listNamespacedEndpointSlice'>,
  namespace: string,
  service: string,
  options: ListProxyEndpointsOptions = {},
): Promise<ProxyEndpoint[]> {
  if (!SERVICE_NAME.test(service)) throw new TypeError(`service: "${service}" is not a valid Service name`);
  const list = await api.listNamespacedEndpointSlice({
    namespace,
    labelSelector: `${SERVICE_NAME_LABEL}=${service}`,
  });
  return endpointsFromSlices(list.items, options.portName ?? DEFAULT_PORT_NAME);
}
