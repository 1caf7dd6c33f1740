import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import type { LabelStep, StagePlugin } from '../stage.js';
import { StageRefusal } from './guard.js';
import { checkPlugin } from './load.js';
import { pluginRig, seriesOf } from './testing.js';

/** A plugin that tags series with `tagged=yes`, throws for metric `boom`, never returns for `hang`. */
function tagger(
  opts: { onError?: 'forward' | 'refuse'; name?: string } = {},
): StagePlugin<{ value?: string }, number> {
  return {
    apiVersion: 1,
    kind: 'label',
    name: opts.name ?? 'tagger',
    schema: Type.Object({ value: Type.Optional(Type.String()) }, { additionalProperties: false }),
    reasons: ['tagged'],
    ...(opts.onError === undefined ? {} : { onError: opts.onError }),
    compile: (_config, ctx) => ctx.slot('stages.tagger', 'tagged', 'rewritten'),
    apply(slot, step: LabelStep) {
      const name = step.labels.find((l) => l.name === '__name__')?.value;
      step.count(slot);
      // A rewrite said before the failure must not take effect.
      step.rewrite([...step.labels, { name: 'tagged', value: 'yes' }]);
      if (name === 'boom') throw new Error('boom');
      if (name === 'hang') for (;;) {}
    },
  };
}

const spec = (extra: object = {}) => ({
  relabel: [{ action: 'replace' as const, target_label: 'env', replacement: 'prod' }],
  stages: [{ name: 'tagger' }],
  ...extra,
});

describe('stage plugins', () => {
  it('keep one series that a request holds twice (a backlog) one rewritten series, not a collision', () => {
    const rig = pluginRig([tagger()], [{ stages: [{ name: 'tagger' }] }]);
    const up = { __name__: 'up', job: 'a' };
    const out = rig.run([
      seriesOf(up, 1, 1000),
      seriesOf(up, 2, 2000),
      seriesOf({ ...up, job: 'b' }, 4, 2000),
    ]);
    expect(out).toEqual([
      { ...up, tagged: 'yes', '#value': '1' },
      { ...up, tagged: 'yes', '#value': '2' },
      { ...up, job: 'b', tagged: 'yes', '#value': '4' },
    ]);
    expect(rig.counted.get('collision/rewritten')).toBeUndefined();
  });

  it('run after the in-tree label stages, on the series as they left it, and count under their reasons', () => {
    const rig = pluginRig([tagger()], [spec()]);
    expect(rig.run([seriesOf({ __name__: 'up', job: 'a' })])).toEqual([
      { __name__: 'up', env: 'prod', job: 'a', tagged: 'yes', '#value': '1' },
    ]);
    expect(rig.counted.get('tagged/rewritten')).toBe(1);
  });

  it('a plugin that throws leaves the series as the stages before it left it, counted, logged once, not cached', async () => {
    const rig = pluginRig([tagger()], [spec()]);
    const boom = seriesOf({ __name__: 'boom', job: 'a' });
    for (let i = 0; i < 3; i++)
      expect(rig.run([boom, seriesOf({ __name__: 'up' })])).toEqual([
        { __name__: 'boom', env: 'prod', job: 'a', '#value': '1' },
        { __name__: 'up', env: 'prod', tagged: 'yes', '#value': '1' },
      ]);
    // Not cached: the plugin was asked again on every request.
    expect(await rig.failures('tagger', 'error')).toBe(3);
    expect(rig.logged).toEqual([{ stage: 'tagger', kind: 'error' }]);
    // What it counted before it threw does not count either.
    expect(rig.counted.get('tagged/rewritten')).toBe(3);
  });

  it('a plugin that throws with onError refuse refuses the request', async () => {
    const rig = pluginRig([tagger({ onError: 'refuse' })], [spec()]);
    expect(() => rig.run([seriesOf({ __name__: 'boom' })])).toThrow(StageRefusal);
    expect(await rig.failures('tagger', 'error')).toBe(1);
    // Other requests go through.
    expect(rig.run([seriesOf({ __name__: 'up' })])).toHaveLength(1);
  });

  it('a plugin that never returns is stopped by the time budget; the request goes on without plugins', async () => {
    const rig = pluginRig([tagger()], [spec()], { timeoutMs: 50 });
    const out = rig.run([
      seriesOf({ __name__: 'up', job: 'a' }),
      seriesOf({ __name__: 'hang' }),
      seriesOf({ __name__: 'up', job: 'b' }),
    ]);
    // The series evaluated before the budget ran out keep the plugin's say; the rest go on without it.
    expect(out).toEqual([
      { __name__: 'up', env: 'prod', job: 'a', tagged: 'yes', '#value': '1' },
      { __name__: 'hang', env: 'prod', '#value': '1' },
      { __name__: 'up', env: 'prod', job: 'b', '#value': '1' },
    ]);
    expect(await rig.failures('tagger', 'timeout')).toBe(1);
    // The next request has a budget of its own: job b gets the plugin's say now (it was not cached).
    expect(rig.run([seriesOf({ __name__: 'up', job: 'b' })])).toEqual([
      { __name__: 'up', env: 'prod', job: 'b', tagged: 'yes', '#value': '1' },
    ]);
  });

  it('a plugin that never returns with onError refuse refuses the request', async () => {
    const rig = pluginRig([tagger({ onError: 'refuse' })], [spec()], { timeoutMs: 50 });
    expect(() => rig.run([seriesOf({ __name__: 'hang' })])).toThrow(/tagger failed \(timeout\)/);
    expect(await rig.failures('tagger', 'timeout')).toBe(1);
  });

  it('a dryRun policy counts what its plugin would do and changes nothing', () => {
    const rig = pluginRig([tagger()], [spec({ mode: 'dryRun' })]);
    expect(rig.run([seriesOf({ __name__: 'up' })])).toEqual([{ __name__: 'up', '#value': '1' }]);
    expect(rig.counted.get('tagged/rewritten')).toBe(1);
  });

  it('refuses a config its schema refuses, an unknown plugin and an undeclared reason, naming the policy and field', () => {
    expect(() => pluginRig([tagger()], [{ stages: [{ name: 'tagger', config: { value: 3 } }] }])).toThrow(
      /policy ns\/p0: stages\[0\]\.config\.value: Expected string \(plugin tagger\)/,
    );
    expect(() => pluginRig([tagger()], [{ stages: [{ name: 'other' }] }])).toThrow(
      /policy ns\/p0: stages\[0\]\.name: no stage plugin named other is loaded .*; loaded: tagger/,
    );
    const liar = {
      ...tagger(),
      compile: (_c: unknown, ctx: { slot: (a: string, b: string, c: string) => number }) =>
        ctx.slot('x', 'not_mine', 'dropped'),
    };
    expect(() => pluginRig([liar], [{ stages: [{ name: 'tagger' }] }])).toThrow(
      /reason not_mine is not declared/,
    );
  });

  it('a plugin counting a slot it did not number is contained', async () => {
    const cheat = { ...tagger(), apply: (_slot: number, step: LabelStep) => step.count(0) };
    const rig = pluginRig([cheat], [spec()]);
    expect(rig.run([seriesOf({ __name__: 'up' })])).toEqual([{ __name__: 'up', env: 'prod', '#value': '1' }]);
    expect(await rig.failures('tagger', 'error')).toBe(1);
  });
});

describe('checkPlugin', () => {
  it.each([
    [
      { ...tagger(), apiVersion: 2 },
      /apiVersion 2 is not supported; this proxy implements stage API version 1/,
    ],
    [{ ...tagger(), kind: 'series' }, /plugins are label stages/],
    [{ ...tagger(), name: 'Bad Name' }, /must be a DNS label/],
    [{ ...tagger(), apply: undefined }, /apply\(compiled, step\) is missing/],
    [{ ...tagger(), schema: { type: 'object' } }, /schema must be a TypeBox schema/],
    [{ ...tagger(), reasons: ['Bad'] }, /reasons must be a list of snake_case names/],
    [{ ...tagger(), onError: 'ignore' }, /onError "ignore" must be forward or refuse/],
    [undefined, /no default export object/],
  ])('refuses a plugin that breaks the contract (%#)', (plugin, error) => {
    expect(() => checkPlugin('/x/plugin.js', plugin)).toThrow(error);
    expect(() => checkPlugin('/x/plugin.js', plugin)).toThrow(/^--stage\.plugin \/x\/plugin\.js: /);
  });
});
