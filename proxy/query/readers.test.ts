import { describe, expect, it } from 'vitest';
import { MAX_READER_PART, readerOf, ruleGroupReader } from './readers.js';

describe('readerOf', () => {
  it.each([
    [
      {
        'x-dashboard-uid': 'abc',
        'x-panel-id': '4',
        'x-grafana-org-id': '1',
        'user-agent': 'Grafana/10.4.1',
      },
      undefined,
      'dashboard:abc panel:4 org:1',
    ],
    [{ 'x-dashboard-uid': 'abc' }, 'team-a', 'dashboard:abc tenant:team-a'],
    [
      { 'x-rule-uid': 'r1', 'x-grafana-org-id': '2', 'user-agent': 'Grafana/11.0.0' },
      undefined,
      'grafana-rule:r1 org:2',
    ],
    [{ 'user-agent': 'promtool/2.42' }, undefined, 'agent:promtool/2.42'],
    [{}, undefined, 'unknown'],
    [{ 'user-agent': ' \u0001bad\nagent ' }, undefined, 'agent:badagent'],
    [{ 'x-dashboard-uid': ['first', 'second'] }, undefined, 'dashboard:first'],
  ])('%j %s', (headers, tenant, want) => {
    expect(readerOf(headers, tenant)).toBe(want);
  });

  it('bounds every part, so a reader name can be stored and shown', () => {
    const long = 'x'.repeat(1000);
    const r = readerOf({ 'x-dashboard-uid': long, 'x-panel-id': long, 'x-grafana-org-id': long }, long);
    expect(r.length).toBeLessThanOrEqual(4 * MAX_READER_PART + 40);
    expect(ruleGroupReader('/etc/prometheus/rules/shop.yml', 'shop-recording')).toBe(
      'rule-group:shop.yml/shop-recording',
    );
  });
});
