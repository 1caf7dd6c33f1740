import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, readConfigFile } from './load.js';
import { checkPolicies, checkUsage } from './validate.js';

/** Every problem of one file, as `line:column: message`, from the parser through the validator. */
function problems(text: string): string[] {
  const read = readConfigFile('p.yaml', text);
  const { problems: policyProblems } = checkPolicies(read.policies);
  const { problems: usageProblems } = checkUsage(read.usage);
  return [...read.problems, ...policyProblems, ...usageProblems].map(
    (p) => `${p.where.replace(/^p\.yaml:/, '')}: ${p.message}`,
  );
}

const head = (name = 'p') => `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: ${name}
`;

describe('problems are reported where they are written', () => {
  it.each([
    [
      'a misspelt field, at its name',
      `${head()}spec:\n  limits:\n    perMetric:\n      - metric: a\n        maxSerie: 3\n`,
      [
        '8:9: spec.limits.perMetric[0].maxSeries: is required',
        '9:9: spec.limits.perMetric[0].maxSerie: unknown field; did you mean "maxSeries"?',
      ],
    ],
    [
      'an enum value, at the value',
      `${head()}spec:\n  mode: dryrun\n`,
      ['6:9: spec.mode: must be one of enforce, dryRun, got "dryrun"; did you mean "dryRun"?'],
    ],
    [
      'a regex in a list, at the item',
      `${head()}spec:\n  drop:\n    - ok_.*\n    - "(debug_.*"\n`,
      ['8:7: spec.drop[1]: invalid regex "(debug_.*": missing ): (debug_.*'],
    ],
    [
      'a flow list item',
      `${head()}spec:\n  drop: [a, "[b"]\n`,
      ['6:13: spec.drop[1]: invalid regex "[b": missing ]: [b'],
    ],
    [
      'a missing required field, at the object lacking it',
      `${head()}spec:\n  limits:\n    perLabel:\n      - maxValues: 3\n`,
      ['8:9: spec.limits.perLabel[0].label: is required'],
    ],
    [
      'a selector',
      `${head()}spec:\n  match:\n    selector: '{job=}'\n`,
      ['7:15: spec.match.selector: unexpected "}" at column 6'],
    ],
    [
      'a wrong type',
      `${head()}spec:\n  priority: "5"\n`,
      ['6:13: spec.priority: must be an integer, got "5"'],
    ],
    [
      'a relabel config Prometheus refuses',
      `${head()}spec:\n  relabel:\n    - action: hashmod\n      source_labels: [a]\n      target_label: b\n`,
      ['7:7: spec.relabel[0]: relabel configuration for hashmod requires non-zero modulus'],
    ],
    [
      'two rules sharing a name',
      `${head()}spec:\n  limits:\n    perMetric:\n      - {name: cap, metric: a, maxSeries: 1}\n      - {name: cap, metric: b, maxSeries: 1}\n`,
      ['9:16: spec.limits.perMetric[1].name: rule name "cap" is also used by spec.limits.perMetric[0]'],
    ],
    [
      'a reserved rule name',
      `${head()}spec:\n  limits:\n    perLabel:\n      - {name: unused, label: a, maxValues: 1}\n`,
      [`8:16: spec.limits.perLabel[0].name: rule name "unused" is reserved for the policy's own rules`],
    ],
    [
      'a YAML error, and the next document still checked',
      `${head()}spec:\n  drop: [a\n---\n${head('q')}spec:\n  mode: x\n`,
      [
        '7:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
        '13:9: spec.mode: must be one of enforce, dryRun, got "x"',
      ],
    ],
    [
      'a second document of the wrong kind, at its kind',
      `${head()}---\napiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicyy\n`,
      [
        '7:7: expected apiVersion cardinal.dev/v1alpha1 and kind MetricPolicy or MetricUsage, got cardinal.dev/v1alpha1 MetricPolicyy',
      ],
    ],
    [
      'a usage pattern',
      'apiVersion: cardinal.dev/v1alpha1\nkind: MetricUsage\nmetadata: {name: u}\nspec:\n  metrics:\n    - pattern: "a("\n      sources: []\n',
      ['6:16: spec.metrics[0].pattern: invalid regex "a(": missing ): a('],
    ],
  ])('%s', (_what, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });

  it('a ConfigError lists every problem, one per line, with its place', () => {
    const err = new ConfigError([
      { where: 'a.yaml:3:5', message: 'spec.mode: x' },
      { where: 'b.yaml:1:1', message: 'y' },
    ]);
    expect(err.message).toBe('a.yaml:3:5: spec.mode: x\nb.yaml:1:1: y');
  });

  // Whatever the indentation and the number of items before it, a bad pattern is reported on the
  // line and at the column where its text starts.
  it('property: a bad drop pattern is located at its own line and column', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        (indent, before, quoted) => {
          const pad = ' '.repeat(indent);
          const items = Array.from({ length: before }, (_, i) => `${pad}- ok_${i}\n`).join('');
          const bad = quoted ? '"(x"' : "'(x'";
          const text = `${head()}spec:\n${pad}drop:\n${items}${pad}${pad}- ${bad}\n`.replace(
            new RegExp(`^${pad}- ok`, 'gm'),
            `${pad}${pad}- ok`,
          );
          const line = 6 + before + 1;
          const col = 2 * indent + 3;
          expect(problems(text)).toEqual([
            `${line}:${col}: spec.drop[${before}]: invalid regex "(x": missing ): (x`,
          ]);
        },
      ),
    );
  });
});
