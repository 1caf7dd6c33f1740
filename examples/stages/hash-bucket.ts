// An example stage plugin: replaces the values of one high-cardinality label by a hash bucket, so
// that a label with a value per user or request becomes one with `buckets` values. The series that
// land in one bucket are aggregated (their samples summed per timestamp), as overflow series are.
//
//   cardinal-proxy --stage.plugin dist/examples/stages/hash-bucket.js
//   spec:
//     stages:
//       - name: hash-bucket
//         config: { label: user_id, buckets: 16, metrics: ['http_requests_total'] }
//
// It is written against the stage contract (README "Stage plugins") and imports nothing of the
// proxy at run time: only types, and TypeBox for its schema.
import { type Static, Type } from '@sinclair/typebox';
import type { CompileContext, LabelStep, StagePlugin } from '../../proxy/pipeline/stage.js';

const Config = Type.Object(
  {
    label: Type.String({ minLength: 1, description: 'The label whose values are replaced by a bucket.' }),
    buckets: Type.Integer({ minimum: 1, maximum: 65_536, description: 'How many values it keeps.' }),
    metrics: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description: 'Only these metric names; default every metric.',
      }),
    ),
  },
  { additionalProperties: false },
);

interface Compiled {
  readonly label: string;
  readonly buckets: number;
  readonly metrics: ReadonlySet<string> | undefined;
  readonly slot: number;
}

/** FNV-1a over the UTF-16 code units: stable across processes and versions, so replicas agree. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The value a label value is replaced by. */
export function bucketOf(value: string, buckets: number): string {
  return `bucket_${fnv1a(value) % buckets}`;
}

const plugin: StagePlugin<Static<typeof Config>, Compiled> = {
  apiVersion: 1,
  kind: 'label',
  name: 'hash-bucket',
  schema: Config,
  reasons: ['label_bucketed'],
  onError: 'forward',
  compile(config, ctx: CompileContext) {
    return {
      label: config.label,
      buckets: config.buckets,
      metrics: config.metrics === undefined ? undefined : new Set(config.metrics),
      slot: ctx.slot(`stages.hash-bucket ${config.label}`, 'label_bucketed', 'rewritten'),
    };
  },
  apply(c, step: LabelStep) {
    let name = '';
    let value = '';
    for (const l of step.labels) {
      if (l.name === '__name__') name = l.value;
      else if (l.name === c.label) value = l.value;
    }
    if (value === '' || (c.metrics !== undefined && !c.metrics.has(name))) return;
    step.count(c.slot);
    step.aggregate(
      step.labels.map((l) => (l.name === c.label ? { name: l.name, value: bucketOf(value, c.buckets) } : l)),
    );
  },
};

export default plugin;
