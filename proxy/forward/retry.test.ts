import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, classifyStatus, parseRetryAfter, type RetryPolicy } from './retry.js';

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

  it('stays within [min, cap] for any attempt and jitter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 0.9999, noNaN: true }),
        (attempt, r) => {
          const d = backoffDelay(policy, attempt, undefined, () => r);
          return d >= policy.minBackoffMs && d <= policy.maxBackoffMs;
        },
      ),
    );
  });

  it('honours Retry-After as a floor', () => {
    expect(backoffDelay(policy, 1, 5000, () => 0)).toBe(5000);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it.each([
    [undefined, undefined],
    ['3', 3000],
    [' 0 ', 0],
    ['Thu, 01 Jan 2026 00:00:10 GMT', 10_000],
    ['Wed, 31 Dec 2025 23:00:00 GMT', 0],
    ['soon', undefined],
  ])('%j -> %j ms', (header, ms) => {
    expect(parseRetryAfter(header, now)).toBe(ms);
  });
});
