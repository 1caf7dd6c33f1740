import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { distance, suggest } from './suggest.js';

const FLAGS = [
  'upstream',
  'upstream.protocol',
  'listen',
  'config',
  'max-request-bytes',
  'log.format',
  'version',
];

describe('suggest', () => {
  it.each([
    ['upstrem', FLAGS, 'upstream'],
    ['upstraem', FLAGS, 'upstream'],
    ['lisen', FLAGS, 'listen'],
    ['confg', FLAGS, 'config'],
    ['max-requests-bytes', FLAGS, 'max-request-bytes'],
    ['log-format', FLAGS, 'log.format'],
    ['dryrun', ['enforce', 'dryRun'], 'dryRun'],
    ['Replace', ['replace', 'keep', 'drop'], 'replace'],
    ['maxSerie', ['metric', 'maxSeries', 'onExceed'], 'maxSeries'],
    ['zzz', FLAGS, undefined],
    ['x', ['enforce', 'dryRun'], undefined],
    ['upstream', FLAGS, undefined],
  ])('%j among the candidates suggests %j', (word, candidates, expected) => {
    expect(suggest(word, candidates)).toBe(expected);
  });

  it('distance counts a swap of neighbours as one edit', () => {
    expect(distance('ab', 'ba')).toBe(1);
    expect(distance('kitten', 'sitting')).toBe(3);
    expect(distance('', 'abc')).toBe(3);
  });

  const name = fc.stringMatching(/^[a-z][a-z.-]{5,20}$/);
  it('property: one typo in a candidate suggests a candidate at most one edit away', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 8 }),
        fc.nat(),
        fc.nat(),
        fc.constantFrom('insert', 'delete', 'replace', 'swap'),
        (candidates, pick, at, edit) => {
          const target = candidates[pick % candidates.length]!;
          const i = at % (target.length - 1);
          const typo =
            edit === 'insert'
              ? `${target.slice(0, i)}q${target.slice(i)}`
              : edit === 'delete'
                ? target.slice(0, i) + target.slice(i + 1)
                : edit === 'replace'
                  ? `${target.slice(0, i)}${target[i] === 'q' ? 'z' : 'q'}${target.slice(i + 1)}`
                  : target.slice(0, i) + target[i + 1] + target[i] + target.slice(i + 2);
          fc.pre(!candidates.includes(typo));
          const s = suggest(typo, candidates);
          expect(s).toBeDefined();
          expect(distance(typo.toLowerCase(), s!.toLowerCase())).toBeLessThanOrEqual(1);
        },
      ),
    );
  });

  it('property: distance is a metric (symmetric, zero only for equal strings, triangle inequality)', () => {
    const s = fc.string({ maxLength: 12 });
    fc.assert(
      fc.property(s, s, s, (a, b, c) => {
        expect(distance(a, b)).toBe(distance(b, a));
        expect(distance(a, b) === 0).toBe(a === b);
        expect(distance(a, c)).toBeLessThanOrEqual(distance(a, b) + distance(b, c) + 1);
      }),
    );
  });
});
