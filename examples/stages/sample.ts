// An example stage plugin: keeps 1 in N series of a metric, chosen by a hash of the series' labels,
// and drops the others. The choice is a function of the labels only, so a series is either always
// kept or always dropped, by every replica: the kept ones stay complete, continuous series.
//
//   cardinal-proxy --stage.plugin dist/examples/stages/sample.js
//   spec:
//     stages:
//       - name: sample
//         config: { metric: http_request_duration_seconds_bucket, keepOneIn: 10 }
import { type Static, Type } from '@sinclair/typebox';
import type { StagePlugin } from '../../proxy/pipeline/stage.js';
import { fnv1a } from './hash-bucket.js';

const Config = Type.Object(
  {
    metric: Type.String({ minLength: 1, description: 'The metric name whose series are sampled.' }),
    keepOneIn: Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Keep one series in this many.' }),
  },
  { additionalProperties: false },
);

interface Compiled {
  readonly metric: string;
  readonly keepOneIn: number;
  readonly slot: number;
}

/** Whether a series (its labels, sorted) is one of the kept ones. */
export function kept(labels: readonly { name: string; value: string }[], keepOneIn: number): boolean {
  let key = '';
  for (const l of labels) key += `${l.name}\u0000${l.value}\u0000`;
  return fnv1a(key) % keepOneIn === 0;
}

const plugin: StagePlugin<Static<typeof Config>, Compiled> = {
  apiVersion: 1,
  kind: 'label',
  name: 'sample',
  schema: Config,
  reasons: ['series_sampled'],
  compile(config, ctx) {
    return {
      metric: config.metric,
      keepOneIn: config.keepOneIn,
      slot: ctx.slot(`stages.sample ${config.metric}`, 'series_sampled', 'dropped'),
    };
  },
  apply(c, step) {
    const name = step.labels.find((l) => l.name === '__name__')?.value;
    if (name !== c.metric || kept(step.labels, c.keepOneIn)) return;
    step.drop(c.slot);
  },
};

export default plugin;
