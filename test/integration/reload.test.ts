// Reloading a large configuration off the event loop: while the proxy reads and validates
// thousands of policies, it keeps answering. Reloads asked for over HTTP are rate-limited.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProxyProgram, startProxy, startSink, useCleanup } from '../framework/index.js';

/** `n` policies, each with a drop rule, a rewrite and a limit: seconds of parsing and validation. */
function policies(n: number, tag: string): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    docs.push(
      [
        'apiVersion: cardinal.dev/v1alpha1',
        'kind: MetricPolicy',
        `metadata: { name: p${i}-${tag}, namespace: team${i % 50} }`,
        'spec:',
        '  relabel:',
        `    - { source_labels: [__name__], regex: "debug_${i}_.*", action: drop }`,
        '    - { source_labels: [pod], regex: "(.*)-[a-z0-9]+-[a-z0-9]+", target_label: deployment, replacement: "$1", action: replace }',
        '  limits:',
        '    perMetric:',
        `      - { metric: m_${i}_total, maxSeries: 100 }`,
      ].join('\n'),
    );
  }
  return `${docs.join('\n---\n')}\n`;
}

describe('reloading a large configuration', () => {
  const track = useCleanup();
  let dir: string;
  let proxy: ProxyProgram;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-reload-'));
    writeFileSync(join(dir, 'policies.yaml'), policies(1500, 'a'));
    const sink = track(await startSink());
    proxy = track(
      await startProxy({ upstream: sink.url, args: () => ['--config', dir, '--reload.min-interval', '30s'] }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps answering while it reads and validates, then takes the new version', async () => {
    const before = (await (await fetch(`${proxy.url}/api/v1/status/config`)).json()) as { hash: string };
    writeFileSync(join(dir, 'policies.yaml'), policies(1500, 'b'));
    const order: string[] = [];
    const reload = fetch(`${proxy.url}/-/reload`, { method: 'POST' }).then(async (r) => {
      order.push('reload');
      return r;
    });
    // Health checks sent one after another while the reload runs: with the reading and validation
    // on the event loop, none could be answered before the reload's own answer.
    let answered = 0;
    while (!order.includes('reload') && answered < 10_000) {
      const res = await fetch(`${proxy.url}/-/healthy`);
      if (res.status === 200) {
        answered++;
        if (!order.includes('reload')) order.push('healthy');
      }
    }
    const res = await reload;
    expect(res.status).toBe(200);
    const after = (await res.json()) as { hash: string; policies: number };
    expect(after.hash).not.toBe(before.hash);
    expect(after.policies).toBe(1500);
    expect(order[0]).toBe('healthy');
    expect(order.indexOf('reload')).toBeGreaterThan(1);

    // A second reload asked for at once is refused, with the time to wait.
    const again = await fetch(`${proxy.url}/-/reload`, { method: 'POST' });
    expect(again.status).toBe(429);
    expect(again.headers.get('retry-after')).toBe('30');
  });
});
