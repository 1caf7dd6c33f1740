import { describe, expect, it } from 'vitest';
import { type EndpointSlice, endpointsFromSlices } from './endpoints.js';

type Endpoint = NonNullable<EndpointSlice['endpoints']>[number];

const ready = (...addresses: string[]): Endpoint => ({ addresses, conditions: { ready: true } });
const notReady = (...addresses: string[]): Endpoint => ({ addresses, conditions: { ready: false } });
const unknown = (...addresses: string[]): Endpoint => ({ addresses });

function slice(
  addressType: string,
  endpoints: Endpoint[],
  ports: EndpointSlice['ports'] = [{ name: 'http', port: 8080 }],
): EndpointSlice {
  return { addressType, endpoints, ports };
}

describe('endpointsFromSlices', () => {
  it.each<{ name: string; slices: EndpointSlice[]; portName?: string; want: string[] }>([
    { name: 'no slices', slices: [], want: [] },
    {
      name: 'ready and unset ready count, not-ready does not',
      slices: [slice('IPv4', [ready('10.0.0.1'), unknown('10.0.0.2'), notReady('10.0.0.3')])],
      want: ['10.0.0.1:8080', '10.0.0.2:8080'],
    },
    {
      name: 'every address of an endpoint',
      slices: [slice('IPv4', [ready('10.0.0.1', '10.0.0.2')])],
      want: ['10.0.0.1:8080', '10.0.0.2:8080'],
    },
    {
      name: 'the port named http among several',
      slices: [
        slice(
          'IPv4',
          [ready('10.0.0.1')],
          [
            { name: 'metrics', port: 9090 },
            { name: 'http', port: 8080 },
          ],
        ),
      ],
      want: ['10.0.0.1:8080'],
    },
    {
      name: 'the only port, whatever its name',
      slices: [slice('IPv4', [ready('10.0.0.1')], [{ name: 'web', port: 80 }])],
      want: ['10.0.0.1:80'],
    },
    {
      name: 'the only port, unnamed',
      slices: [slice('IPv4', [ready('10.0.0.1')], [{ port: 80 }])],
      want: ['10.0.0.1:80'],
    },
    {
      name: 'another port name when asked',
      slices: [
        slice(
          'IPv4',
          [ready('10.0.0.1')],
          [
            { name: 'http', port: 8080 },
            { name: 'admin', port: 8081 },
          ],
        ),
      ],
      portName: 'admin',
      want: ['10.0.0.1:8081'],
    },
    {
      name: 'no port when several and none is named http',
      slices: [
        slice(
          'IPv4',
          [ready('10.0.0.1')],
          [
            { name: 'a', port: 1 },
            { name: 'b', port: 2 },
          ],
        ),
      ],
      want: [],
    },
    {
      name: 'no port when the slice has none, or it is unset ("all ports")',
      slices: [
        slice('IPv4', [ready('10.0.0.1')], []),
        slice('IPv4', [ready('10.0.0.2')], [{ name: 'http' }]),
      ],
      want: [],
    },
    {
      name: 'each slice its own port',
      slices: [
        slice('IPv4', [ready('127.0.0.1')], [{ name: 'http', port: 9001 }]),
        slice('IPv4', [ready('127.0.0.1')], [{ name: 'http', port: 9000 }]),
      ],
      want: ['127.0.0.1:9000', '127.0.0.1:9001'],
    },
    {
      name: 'an endpoint in two slices once, ready in one of them enough',
      slices: [
        slice('IPv4', [ready('10.0.0.1'), notReady('10.0.0.2')]),
        slice('IPv4', [ready('10.0.0.1'), ready('10.0.0.2')]),
      ],
      want: ['10.0.0.1:8080', '10.0.0.2:8080'],
    },
    {
      name: 'IPv6 in brackets, in its canonical spelling, deduplicated across spellings',
      slices: [slice('IPv6', [ready('2001:DB8:0:0::1'), ready('2001:db8::1'), ready('fd00::a')])],
      want: ['[2001:db8::1]:8080', '[fd00::a]:8080'],
    },
    {
      name: 'IPv4 before IPv6, IPv4 in numeric order, then by port',
      slices: [
        slice('IPv6', [ready('::1')]),
        slice('IPv4', [ready('10.0.0.10'), ready('10.0.0.9'), ready('9.255.0.1')]),
        slice('IPv4', [ready('10.0.0.9')], [{ name: 'http', port: 80 }]),
      ],
      want: ['9.255.0.1:8080', '10.0.0.9:80', '10.0.0.9:8080', '10.0.0.10:8080', '[::1]:8080'],
    },
    {
      name: 'FQDN slices and addresses not of the slice type are skipped',
      slices: [
        slice('FQDN', [ready('proxy.example.com')]),
        slice('IPv4', [ready('::1', 'not-an-ip', '10.0.0.1')]),
        slice('IPv6', [ready('10.0.0.2', 'fe80::1%eth0')]),
      ],
      want: ['10.0.0.1:8080'],
    },
    {
      name: 'a slice without endpoints',
      slices: [{ addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }] }],
      want: [],
    },
  ])('$name', ({ slices, portName, want }) => {
    const got = endpointsFromSlices(slices, portName);
    expect(got.map((e) => e.endpoint)).toEqual(want);
  });

  it('gives the address, the port and a URL whose host is the endpoint', () => {
    const [v4, v6] = endpointsFromSlices([
      slice('IPv4', [ready('10.1.2.3')]),
      slice('IPv6', [ready('FD00::1')], [{ name: 'http', port: 9000 }]),
    ]);
    expect(v4).toEqual({
      address: '10.1.2.3',
      port: 8080,
      endpoint: '10.1.2.3:8080',
      url: 'http://10.1.2.3:8080',
    });
    expect(v6).toEqual({
      address: 'fd00::1',
      port: 9000,
      endpoint: '[fd00::1]:9000',
      url: 'http://[fd00::1]:9000',
    });
    expect(new URL(v6!.url).host).toBe(v6!.endpoint);
  });
});
