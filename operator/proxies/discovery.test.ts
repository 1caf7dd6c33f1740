import type { DiscoveryV1Api, V1EndpointSliceList } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { listProxyEndpoints } from './discovery.js';

type Lister = Pick<DiscoveryV1Api, 'listNamespacedEndpointSlice'>;

function fakeApi(list: V1EndpointSliceList): { api: Lister; calls: unknown[] } {
  const calls: unknown[] = [];
  const api: Lister = {
    listNamespacedEndpointSlice: async (param) => {
      calls.push(param);
      return list;
    },
  };
  return { api, calls };
}

describe('listProxyEndpoints', () => {
  it("lists the Service's slices by the service-name label and keeps the ready endpoints", async () => {
    const { api, calls } = fakeApi({
      items: [
        {
          addressType: 'IPv4',
          endpoints: [
            { addresses: ['10.0.0.2'], conditions: { ready: true } },
            { addresses: ['10.0.0.3'], conditions: { ready: false } },
          ],
          ports: [{ name: 'http', port: 8080 }],
        },
      ],
    });
    const got = await listProxyEndpoints(api, 'cardinal-system', 'cardinal-proxy');
    expect(calls).toEqual([
      { namespace: 'cardinal-system', labelSelector: 'kubernetes.io/service-name=cardinal-proxy' },
    ]);
    expect(got.map((e) => e.url)).toEqual(['http://10.0.0.2:8080']);
  });

  it('uses the port name given', async () => {
    const { api } = fakeApi({
      items: [
        {
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.0.0.2'] }],
          ports: [
            { name: 'http', port: 8080 },
            { name: 'admin', port: 9000 },
          ],
        },
      ],
    });
    const got = await listProxyEndpoints(api, 'ns', 'svc', { portName: 'admin' });
    expect(got.map((e) => e.endpoint)).toEqual(['10.0.0.2:9000']);
  });

  it.each(['a,b', 'proxy=x', 'Proxy', '', '1proxy', 'x'.repeat(64)])(
    'refuses %j as a Service name before asking the API server',
    async (service) => {
      const { api, calls } = fakeApi({ items: [] });
      await expect(listProxyEndpoints(api, 'ns', service)).rejects.toThrow(TypeError);
      expect(calls).toEqual([]);
    },
  );

  it('passes the API error on', async () => {
    const api: Lister = {
      listNamespacedEndpointSlice: async () => {
        throw new Error('forbidden');
      },
    };
    await expect(listProxyEndpoints(api, 'ns', 'svc')).rejects.toThrow('forbidden');
  });
});
