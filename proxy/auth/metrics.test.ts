import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createAuthMetrics } from './metrics.js';

describe('auth metrics', () => {
  it('export no reload gauge until credentials are loaded, so a proxy without auth never reads as failed', async () => {
    const registry = new Registry();
    const metrics = createAuthMetrics(registry);
    expect(await registry.metrics()).not.toMatch(/cardinal_proxy_auth_last_reload_successful/);
    metrics.reload(true);
    expect(await registry.metrics()).toMatch(/^cardinal_proxy_auth_last_reload_successful 1$/m);
    metrics.reload(false);
    expect(await registry.metrics()).toMatch(/^cardinal_proxy_auth_last_reload_successful 0$/m);
  });
});
