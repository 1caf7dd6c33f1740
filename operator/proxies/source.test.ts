import { describe, expect, it } from 'vitest';
import { parseProxyEndpoints, proxyServiceName, unobserved } from './source.js';

describe('proxyServiceName', () => {
  it.each([
    ['cardinal-proxy', 'default', 'cardinal-proxy'],
    ['cardinal-proxy', 'edge', 'cardinal-proxy-edge'],
  ])('%s, instance %s: %s', (base, instance, want) => {
    expect(proxyServiceName(base, instance)).toBe(want);
  });

  it('refuses names that are not Service names', () => {
    expect(() => proxyServiceName('x', 'a'.repeat(62))).toThrow(TypeError);
    expect(() => proxyServiceName('1proxy', 'default')).toThrow('not a valid Service name');
  });
});

describe('parseProxyEndpoints', () => {
  it('names each proxy host:port, with the scheme default port, each once', () => {
    expect(parseProxyEndpoints('http://10.0.0.1:8080,https://proxy.example,http://10.0.0.1:8080/')).toEqual([
      { address: '10.0.0.1', port: 8080, endpoint: '10.0.0.1:8080', url: 'http://10.0.0.1:8080' },
      {
        address: 'proxy.example',
        port: 443,
        endpoint: 'proxy.example:443',
        url: 'https://proxy.example:443',
      },
    ]);
  });

  it.each([
    ['', 'empty entry'],
    ['not a url', 'is not a URL'],
    ['http://u:p@x:1', 'credentials'],
    ['http://x:1/?a=b', 'without a path or query'],
  ])('rejects %j', (list, message) => {
    expect(() => parseProxyEndpoints(list)).toThrow(message);
  });
});

describe('unobserved', () => {
  const endpoints = parseProxyEndpoints('http://127.0.0.1:1');
  it('says why the proxies are not looked at, and nothing when they are', () => {
    expect(unobserved({ kind: 'none' }, 'default')?.reason).toBe('ProxiesNotObserved');
    expect(unobserved({ kind: 'static', endpoints }, 'default')).toBeUndefined();
    expect(unobserved({ kind: 'static', endpoints }, 'edge')?.message).toContain('instance default only');
    expect(unobserved({ kind: 'service', service: 'p' }, 'edge')).toBeUndefined();
  });
});
