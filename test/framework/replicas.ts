// Three cardinal-proxy replicas sharing their limits through a real Redis, behind a real load
// balancer (haproxy, round robin, keep-alive off), fed by two real senders (vmagent and a
// Prometheus agent, each scraping its own target) and forwarding to one Prometheus receiver.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { type ProxyProgram, startProxy } from './cardinal.js';
import { parseExposition } from './exposition.js';
import { type LoadBalancer, startLoadBalancer } from './haproxy.js';
import { eventually } from './poll.js';
import type { Closable } from './process.js';
import {
  type PrometheusAgent,
  type PrometheusReceiver,
  startPrometheusAgent,
  startPrometheusReceiver,
} from './prometheus.js';
import type { RedisProgram } from './redis.js';
import { type ScrapeTarget, startTarget } from './target.js';
import { startVmagent, type VmagentProgram } from './vmagent.js';

export interface ReplicaStack {
  readonly receiver: PrometheusReceiver;
  readonly proxies: readonly ProxyProgram[];
  readonly lb: LoadBalancer;
  /** Scraped by vmagent: the bombs are served here, besides its sequence. */
  readonly vmTarget: ScrapeTarget;
  /** Scraped by the Prometheus agent: a sequence and steady series. */
  readonly agentTarget: ScrapeTarget;
  readonly vmagent: VmagentProgram;
  readonly agent: PrometheusAgent;
  /** Requests the proxies answered with anything but 2xx, summed over the three. */
  failedRequests(): Promise<number>;
  /** Series of `selector` the receiver holds over the last 10 minutes. */
  count(selector: string): Promise<number>;
}

export interface ReplicaStackOptions {
  readonly store: RedisProgram;
  readonly password?: string;
  /** MetricPolicy YAML documents. */
  readonly policies: string;
  readonly track: <T extends Closable>(thing: T) => T;
}

export async function startReplicaStack(o: ReplicaStackOptions): Promise<ReplicaStack> {
  const { track } = o;
  const dir = mkdtempSync(join(tmpdir(), 'cardinal-replicas-'));
  const config = join(dir, 'policies.yaml');
  writeFileSync(config, o.policies);
  const passwordFile = join(dir, 'password');
  writeFileSync(passwordFile, `${o.password ?? ''}\n`);
  const receiver = track(await startPrometheusReceiver({ version: 2 }));
  const proxies: ProxyProgram[] = [];
  for (let i = 0; i < 3; i++) {
    proxies.push(
      track(
        await startProxy({
          upstream: receiver.remoteWriteUrl,
          args: () => [
            '--config',
            config,
            '--limits.store',
            o.store.url,
            ...(o.password === undefined ? [] : ['--limits.store.password-file', passwordFile]),
            '--limits.store.prefix',
            'it',
            // Generous on a loaded test machine: a timeout means fallback, which the test tells apart.
            '--limits.store.timeout',
            '3s',
            '--limits.store.retry-interval',
            '500ms',
            '--limits.replicas',
            '3',
            '--replica-name',
            `proxy-${i}`,
            '--log-level',
            'info',
          ],
        }),
      ),
    );
  }
  const lb = track(await startLoadBalancer(proxies.map((p) => p.url)));
  const vmTarget = track(await startTarget({ sequence: { name: 'cardinal_test_vm_seq_total' } }));
  const agentTarget = track(
    await startTarget({
      sequence: { name: 'cardinal_test_agent_seq_total' },
      series: Array.from({ length: 50 }, (_, i) => ({
        name: 'cardinal_test_steady',
        labels: { n: String(i) },
        value: i,
      })),
    }),
  );
  const vmagent = track(
    await startVmagent({
      remoteWriteUrl: `${lb.url}/api/v1/write`,
      scrapeTargets: [vmTarget.address],
      scrapeInterval: '2s',
      // One queue: vmagent then sends its blocks one after the other. With several, blocks of
      // successive scrapes race through different replicas and Prometheus refuses the older one
      // as out of order, whatever the proxy does (a Prometheus agent shards by series instead).
      extraArgs: ['-remoteWrite.queues=1'],
    }),
  );
  const agent = track(
    await startPrometheusAgent({
      version: 2,
      remoteWriteUrl: `${lb.url}/api/v1/write`,
      scrapeTargets: [agentTarget.address],
      scrapeInterval: '2s',
    }),
  );
  return {
    receiver,
    proxies,
    lb,
    vmTarget,
    agentTarget,
    vmagent,
    agent,
    async failedRequests() {
      let failed = 0;
      for (const p of proxies) {
        const text = await (await fetch(p.metricsUrl)).text();
        for (const s of parseExposition(text)) {
          if (s.name === 'cardinal_proxy_requests_total' && !/^2/.test(s.labels.code ?? ''))
            failed += s.value;
        }
      }
      return failed;
    },
    async count(selector: string) {
      const r = await receiver.query(`count(last_over_time(${selector}[10m]))`);
      return r[0]?.value ?? 0;
    },
  };
}

/** No sender got anything but 2xx: the proxies' answers, vmagent's and the agent's own counters. */
export async function expectNoFailures(stack: ReplicaStack): Promise<void> {
  const { metricSum } = await import('./exposition.js');
  expect(await metricSum(stack.agent.metricsUrl, 'prometheus_remote_storage_samples_failed_total')).toBe(0);
  const vm = parseExposition(await (await fetch(stack.vmagent.metricsUrl)).text());
  const codes = vm.filter((s) => s.name === 'vmagent_remotewrite_requests_total' && s.value > 0);
  expect(codes.length).toBeGreaterThan(0);
  for (const s of codes) expect(s.labels.status_code).toMatch(/^2/);
  expect(await stack.failedRequests()).toBe(0);
}

/**
 * Every sample both sequences served since the start, exactly, in the receiver, and no failures.
 * Ends the sequences: call it once, last (a resumed sequence would be older than the staleness
 * marker the sender writes when it disappears).
 */
export async function expectSendersWhole(stack: ReplicaStack): Promise<void> {
  const { expectReceivedExactly } = await import('./assert.js');
  const vmServed = stack.vmTarget.pauseSequence();
  const agentServed = stack.agentTarget.pauseSequence();
  await expectReceivedExactly(stack.receiver, stack.vmTarget, vmServed, 60_000);
  await expectReceivedExactly(stack.receiver, stack.agentTarget, agentServed, 60_000);
  await expectNoFailures(stack);
}

/** Admissions each replica could not get from the store (so it enforced its share alone). */
export async function admitErrors(stack: ReplicaStack): Promise<number[]> {
  return Promise.all(
    stack.proxies.map((p) => p.metric('cardinal_proxy_limits_store_errors_total', { op: 'admit' })),
  );
}

/**
 * The limit held over all three replicas: exactly `limit` series of `selector` admitted; or, for
 * each replica whose store check failed meanwhile (a loaded machine can exceed the store timeout),
 * at most its documented share, limit / 3, more. Returns how many were admitted.
 */
export async function expectHeld(
  stack: ReplicaStack,
  selector: string,
  limit: number,
  before: number[],
): Promise<number> {
  await eventually(async () => expect(await stack.count(selector)).toBeGreaterThanOrEqual(limit), {
    timeoutMs: 60_000,
  });
  const scrapes = stack.vmTarget.scrapes;
  await eventually(() => expect(stack.vmTarget.scrapes).toBeGreaterThanOrEqual(scrapes + 2), {
    timeoutMs: 60_000,
  });
  const admitted = await stack.count(selector);
  const fellBack = (await admitErrors(stack)).filter((n, i) => n > before[i]!).length;
  if (fellBack > 0)
    console.log(
      `${selector}: ${admitted} admitted; ${fellBack} replica(s) fell back to their share meanwhile`,
    );
  const bound = limit + fellBack * Math.floor(limit / 3);
  if (admitted > bound || (fellBack === 0 && admitted !== limit))
    console.log(
      `${selector}: ${admitted} admitted, expected ${fellBack === 0 ? limit : `<= ${bound}`}\n${await diagnose(stack, before)}`,
    );
  expect(admitted).toBeLessThanOrEqual(bound);
  if (fellBack === 0) expect(admitted).toBe(limit);
  return admitted;
}

/**
 * What each replica says about its limits, for a failed expectHeld: the store's answers, admit
 * errors (since `before`) and fallback state, and the store's own counts of the fullest limits.
 */
export async function diagnose(stack: ReplicaStack, before: readonly number[]): Promise<string> {
  const lines: string[] = [];
  for (let i = 0; i < stack.proxies.length; i++) {
    const p = stack.proxies[i]!;
    try {
      const s = parseExposition(await (await fetch(p.metricsUrl)).text());
      const sum = (name: string, labels: Record<string, string> = {}) =>
        s
          .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
          .reduce((a, x) => a + x.value, 0);
      const answers = ['known', 'admitted', 'refused', 'skipped']
        .map((a) => `${a} ${sum('cardinal_proxy_limits_store_answers_total', { answer: a })}`)
        .join(', ');
      const errors = sum('cardinal_proxy_limits_store_errors_total', { op: 'admit' });
      lines.push(
        `proxy-${i}: store answers ${answers}; admit round trips ${sum('cardinal_proxy_limits_store_round_trips_total', { op: 'admit' })}; ` +
          `admit errors ${errors} (${errors - (before[i] ?? 0)} new); fallback ${sum('cardinal_proxy_limits_store_fallback')}; ` +
          `refreshed ${sum('cardinal_proxy_limits_store_refreshed_total')}, refresh dropped ${sum('cardinal_proxy_limits_store_refresh_dropped_total')}`,
      );
    } catch (err) {
      lines.push(`proxy-${i}: /metrics: ${String(err)}`);
    }
  }
  // Each replica lists the limits it tracks itself, with the store's counts when global.
  const counted = new Set<string>();
  for (let i = 0; i < stack.proxies.length; i++) {
    try {
      const r = (await (await fetch(`${stack.proxies[i]!.url}/api/v1/stats/limits`)).json()) as {
        policies: {
          policy: string;
          global: boolean;
          limits: { limit: string; metric?: string; current: number; max: number }[];
        }[];
      };
      for (const p of r.policies)
        for (const l of p.limits)
          counted.add(
            `${p.global ? 'store' : `proxy-${i} alone`}: ${p.policy} ${l.limit}${l.metric === undefined ? '' : ` ${l.metric}`} ${l.current}/${l.max}`,
          );
    } catch (err) {
      counted.add(`proxy-${i} /api/v1/stats/limits: ${String(err)}`);
    }
  }
  lines.push(...counted);
  return lines.join('\n');
}
