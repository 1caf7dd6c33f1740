// The proxies of an instance, from the EndpointSlices of its Service. Pure: discovery.ts lists the
// slices, this decides which addresses count.
//
// The rules follow the EndpointSlice API (discovery.k8s.io/v1, "EndpointSlices" in the Kubernetes
// Service networking docs): a slice's ports apply to every endpoint in it, so each slice chooses
// its own port; `conditions.ready` unset means ready; and the same endpoint may appear in more
// than one slice while the EndpointSlice controller moves it, so addresses are deduplicated.

import { isIPv4, isIPv6 } from 'node:net';

/** The port name of the proxy's Service (charts/cardinal), `http`. */
export const DEFAULT_PORT_NAME = 'http';

/** The fields of a discovery.k8s.io/v1 EndpointSlice this module reads; V1EndpointSlice fits it. */
export interface EndpointSlice {
  addressType: string;
  endpoints?: readonly {
    addresses: readonly string[];
    conditions?: { ready?: boolean };
  }[];
  ports?: readonly { name?: string; port?: number }[];
}

/** One proxy to poll. */
export interface ProxyEndpoint {
  /** The IP, in its canonical spelling; IPv6 without brackets. */
  readonly address: string;
  readonly port: number;
  /** `host:port` with IPv6 in brackets: the name ProxyReport and EndpointPoll know the proxy by. */
  readonly endpoint: string;
  /** The proxy's base URL, `http://host:port`, without a trailing slash. */
  readonly url: string;
}

/**
 * The ready endpoints of `slices`, each once, sorted: IPv4 before IPv6, addresses in numeric order,
 * then by port. An endpoint counts unless its `conditions.ready` is false. A slice contributes the
 * port named `portName`, or its only port when it has one; a slice without such a port, or of
 * addressType FQDN, contributes nothing. Addresses that are not IPs of the slice's type are skipped.
 */
export function endpointsFromSlices(
  slices: readonly EndpointSlice[],
  portName: string = DEFAULT_PORT_NAME,
): ProxyEndpoint[] {
  const found = new Map<string, ProxyEndpoint>();
  for (const slice of slices) {
    const isIP = slice.addressType === 'IPv4' ? isIPv4 : slice.addressType === 'IPv6' ? isIPv6 : undefined;
    const port = slicePort(slice, portName);
    if (isIP === undefined || port === undefined) continue;
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const raw of e.addresses) {
        // A zone index (`fe80::1%eth0`) names an interface of some node, not of the operator's.
        if (!isIP(raw) || raw.includes('%')) continue;
        // The WHATWG URL parser's spelling (RFC 5952 for IPv6), so that one address written two
        // ways is one proxy, and `endpoint` is what `new URL(url).host` gives back.
        const host = new URL(`http://${slice.addressType === 'IPv6' ? `[${raw}]` : raw}/`).hostname;
        const address = host.startsWith('[') ? host.slice(1, -1) : host;
        const endpoint = `${host}:${port}`;
        if (!found.has(endpoint)) found.set(endpoint, { address, port, endpoint, url: `http://${endpoint}` });
      }
    }
  }
  return [...found.values()].sort(compareEndpoints);
}

function slicePort(slice: EndpointSlice, portName: string): number | undefined {
  const ports = slice.ports ?? [];
  const port = ports.find((p) => p.name === portName) ?? (ports.length === 1 ? ports[0] : undefined);
  // An unset port means "all ports" (the API's wording), which names no port to poll.
  const n = port?.port;
  return n !== undefined && Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

function compareEndpoints(a: ProxyEndpoint, b: ProxyEndpoint): number {
  const fa = isIPv4(a.address) ? 4 : 6;
  const fb = isIPv4(b.address) ? 4 : 6;
  if (fa !== fb) return fa - fb;
  if (fa === 4) {
    const oa = a.address.split('.').map(Number);
    const ob = b.address.split('.').map(Number);
    for (let i = 0; i < 4; i++) {
      const d = (oa[i] ?? 0) - (ob[i] ?? 0);
      if (d !== 0) return d;
    }
  } else if (a.address !== b.address) {
    return a.address < b.address ? -1 : 1;
  }
  return a.port - b.port;
}
