import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, classifyStatus, parseRetryOn, type RetryPolicy } from './retry.js';

const policy: RetryPolicy = { minBackoffMs: 100, maxBackoffMs: 2000, budgetMs: 15_000 };

describe('classifyStatus', () => {
  it.each([
    [200, 'done'],
    [204, 'done'],
    [400, 'reject'],
    [401, 'reject'],
    [404, 'reject'],
    [413, 'reject'],
    [415, 'reject'],
    [429, 'retry'],
    [500, 'retry'],
    [502, 'retry'],
    [503, 'retry'],
  ] as const)('%i is %s', (status, verdict) => {
    expect(classifyStatus(status)).toBe(verdict);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially up to the cap', () => {
    const top = () => 0.999999;
    expect(backoffDelay(policy, 1, undefined, top)).toBeCloseTo(100, 0);
    expect(backoffDelay(policy, 2, undefined, top)).toBeCloseTo(200, 0);
    expect(backoffDelay(policy, 3, undefined, top)).toBeCloseTo(400, 0);
    expect(backoffDelay(policy, 10, undefined, top)).toBeCloseTo(2000, 0);
  });

  it('by default (equal jitter) lies in [d/2, d] of the exponential step d', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 0.9999, noNaN: true }),
        (attempt, r) => {
          const step = Math.min(policy.maxBackoffMs, policy.minBackoffMs * 2 ** (attempt - 1));
          const d = backoffDelay(policy, attempt, undefined, () => r);
          return d >= step / 2 && d <= step;
        },
      ),
    );
  });

  it('by default, each interval is at least the one before, whatever the random draws', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 0.9999, noNaN: true }), { minLength: 2, maxLength: 20 }),
        (rs) => {
          const delays = rs.map((r, k) => backoffDelay(policy, k + 1, undefined, () => r));
          for (let k = 1; k < delays.length; k++) expect(delays[k]).toBeGreaterThanOrEqual(delays[k - 1]!);
          const full = rs.map((r, k) => backoffDelay({ ...policy, jitter: 1 }, k + 1, undefined, () => r));
          for (let k = 1; k < full.length; k++) expect(full[k]).toBeGreaterThanOrEqual(full[k - 1]!);
        },
      ),
    );
  });

  it('at the cap, the delay is the cap', () => {
    expect(backoffDelay(policy, 7, undefined, () => 0)).toBe(2000);
    expect(backoffDelay(policy, 30, undefined, () => 0.5)).toBe(2000);
  });

  it('with less jitter stays nearer the step; with none it is the step', () => {
    const low = () => 0;
    expect(backoffDelay({ ...policy, jitter: 0 }, 3, undefined, low)).toBe(400);
    expect(backoffDelay({ ...policy, jitter: 0.25 }, 3, undefined, low)).toBe(0.75 * 400);
    expect(backoffDelay({ ...policy, jitter: 1 }, 3, undefined, low)).toBe(200);
  });

  it('honours Retry-After as a floor', () => {
    expect(backoffDelay(policy, 1, 5000, () => 0)).toBe(5000);
  });
});

describe('parseRetryOn', () => {
  it.each([
    ['5xx,429', [500, 503, 599, 429], [200, 400, 404, 413, 428]],
    ['503, 408', [503, 408], [500, 429, 404]],
    ['4XX', [400, 429, 499], [500, 200]],
  ])('%j', (list, retried, notRetried) => {
    const retry = parseRetryOn(list);
    for (const s of retried) expect(retry(s), String(s)).toBe(true);
    for (const s of notRetried) expect(retry(s), String(s)).toBe(false);
  });

  it.each([
    ['2xx', '2xx statuses mean success'],
    ['204', '2xx statuses mean success'],
    ['5xx,', '"" is neither'],
    ['600', '"600" is neither'],
  ])('%j is refused', (list, message) => {
    expect(() => parseRetryOn(list)).toThrow(message);
  });
});
