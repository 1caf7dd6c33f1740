import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { groupingPath, parseGroupingKey } from './grouping.js';

describe('parseGroupingKey', () => {
  it.each([
    ['/metrics/job/nightly', [['job', 'nightly']]],
    ['/metrics/job/nightly/', [['job', 'nightly']]],
    [
      '/metrics/job/nightly/instance/host-1',
      [
        ['job', 'nightly'],
        ['instance', 'host-1'],
      ],
    ],
    [
      '/metrics/job/nightly/instance@base64/aG9zdC8x',
      [
        ['job', 'nightly'],
        ['instance', 'host/1'],
      ],
    ],
    [
      '/metrics/job/nightly/instance@base64/aG9zdC8xMg==',
      [
        ['job', 'nightly'],
        ['instance', 'host/12'],
      ],
    ],
    [
      '/metrics/job/nightly/instance@base64/=',
      [
        ['job', 'nightly'],
        ['instance', ''],
      ],
    ],
    ['/metrics/job@base64/bmlnaHRseS9h', [['job', 'nightly/a']]],
    [
      '/metrics/job/a%20b/path/%2Fx',
      [
        ['job', 'a b'],
        ['path', '/x'],
      ],
    ],
    [
      '/metrics/job/x/instance/',
      [
        ['job', 'x'],
        ['instance', ''],
      ],
    ],
  ])('%s', (path, labels) => {
    expect(parseGroupingKey(path)).toEqual({ ok: true, key: { labels } });
  });

  it.each([
    ['/metrics/jobs/x', 'path must start with /metrics/job/<job>'],
    ['/metrics/job/x/instance/a/extra', 'label "extra" has no value in the path'],
    ['/metrics/job/x/1bad/v', 'improper label name "1bad" in the grouping key'],
    ['/metrics/job/x/__name__/v', 'improper label name "__name__" in the grouping key'],
    ['/metrics/job/x/a/1/a/2', 'label "a" appears twice in the grouping key'],
    ['/metrics/job/x/job/y', 'label "job" appears twice in the grouping key'],
    ['/metrics/job@base64/=', 'job name is empty'],
    ['/metrics/job/x/a@base64/a$b', 'value of label "a" is not valid base64url: "a$b"'],
    ['/metrics/job/x/a@base64/abcde', 'value of label "a" is not valid base64url: "abcde"'],
    ['/metrics/job/x/a@base64/_w', 'value of label "a" is not valid base64url: "_w"'],
    ['/metrics/job/x/a/%E0%A4%A', 'segment 3 of the grouping key is not valid percent-encoding'],
  ])('%s is refused: %s', (path, reason) => {
    expect(parseGroupingKey(path)).toEqual({ ok: false, reason });
  });

  it('reads back every key from its canonical path (property)', () => {
    const name = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_]{0,8}$/).filter((n) => n !== 'job');
    const value = fc.string({ maxLength: 12, unit: 'grapheme' });
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }),
        fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n, maxLength: 4 }),
        (job, rest) => {
          const labels: [string, string][] = [['job', job], ...rest];
          const key = { labels };
          expect(parseGroupingKey(groupingPath(key))).toEqual({ ok: true, key });
        },
      ),
      { numRuns: 500 },
    );
  });
});
