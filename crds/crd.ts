// Derives the MetricPolicy CustomResourceDefinition from the one schema in metric-policy.ts.
// `npm run generate` writes `renderCrdYaml()` to crds/metricpolicies.yaml; crd.test.ts renders it
// again and fails when the file on disk differs, so the two cannot drift apart.
//
// The apiserver only accepts a *structural* schema (Kubernetes API docs, "Specifying a structural
// schema"): every node has a type, `properties` and `additionalProperties` never meet, and no
// JSON-Schema composition (anyOf, oneOf, not) carries types. TypeBox's extra keys (its symbols,
// `$id`) are dropped and `Type.Record` becomes `additionalProperties`.

import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import {
  GROUP,
  KIND,
  MetricPolicySpec,
  MetricPolicyStatusSchema,
  PLURAL,
  PRINTER_COLUMNS,
  SHORT_NAMES,
  SINGULAR,
  VERSION,
} from './metric-policy.js';

export const CRD_FILE = 'crds/metricpolicies.yaml';
export const GENERATE_COMMAND = 'npm run generate';

/** One CEL rule, as the apiserver reads `x-kubernetes-validations` (KEP-2876). */
export interface CelRule {
  readonly rule: string;
  readonly message: string;
  /** Where the apiserver reports the error, relative to the node holding the rule. */
  readonly fieldPath?: string;
}

/** Relabel actions that write or compare `target_label`, as Prometheus's Config.Validate requires. */
const TARGET_ACTIONS = ['replace', 'hashmod', 'lowercase', 'uppercase', 'keepequal', 'dropequal'] as const;

/**
 * CEL rules that restate checks the proxy also makes (policy/validate.ts), so that
 * `kubectl apply` rejects a policy the proxy would reject rather than the operator finding out
 * later. Keyed by the node's path in the spec; `[]` stands for every item of an array. The
 * apiserver applies defaults before CEL runs, but each rule still guards with `has()` so that it
 * holds for an object written without them.
 *
 * The apiserver multiplies a rule's estimated cost by the largest possible length of the arrays
 * around it and refuses a CRD whose rules together exceed a budget; see MAX_ITEMS.
 */
export const CEL_RULES: Readonly<Record<string, readonly CelRule[]>> = {
  'spec.relabel[]': [
    ...TARGET_ACTIONS.map((action) => ({
      rule:
        action === 'replace'
          ? `(has(self.action) && self.action != 'replace') || (has(self.target_label) && size(self.target_label) > 0)`
          : `!has(self.action) || self.action != '${action}' || (has(self.target_label) && size(self.target_label) > 0)`,
      message: `action ${action} requires target_label`,
      fieldPath: '.target_label',
    })),
    {
      rule: `!has(self.action) || self.action != 'hashmod' || has(self.modulus)`,
      message: 'action hashmod requires modulus',
      fieldPath: '.modulus',
    },
  ],
  'spec.limits.perMetric[]': [
    {
      rule: `!has(self.overflowLabel) || (has(self.onExceed) && self.onExceed == 'overflow')`,
      message: 'overflowLabel is only used with onExceed overflow',
      fieldPath: '.overflowLabel',
    },
  ],
};

/**
 * Array bounds the CEL rules need: without them kube-apiserver 1.34 estimates `spec.relabel` at
 * about a million items (the largest request divided by the smallest item) and refuses the CRD
 * for exceeding its cost budget. Keyed like CEL_RULES; a bound the schema itself sets wins.
 * policy/validate.ts enforces the same bounds, so a file the proxy accepts is one the
 * apiserver accepts.
 */
export const MAX_ITEMS: Readonly<Record<string, number>> = {
  'spec.relabel': 256,
  'spec.limits.perMetric': 1024,
  'spec.stages': 32,
};

/** The keywords a structural schema keeps from a TypeBox node; every other key is dropped. */
const KEPT = [
  'description',
  'type',
  'format',
  'default',
  'enum',
  'pattern',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'required',
] as const;

type JsonSchema = Record<string, unknown>;

/**
 * Converts a TypeBox schema to a Kubernetes structural schema. `path` names the node in error
 * messages and in CEL_RULES and MAX_ITEMS. Throws on a node it cannot express structurally, so a
 * new kind of schema in metric-policy.ts fails the generator rather than yielding a CRD the
 * apiserver refuses.
 */
export function toStructural(schema: TSchema, path: string): JsonSchema {
  const node = schema as JsonSchema;
  for (const k of ['anyOf', 'oneOf', 'allOf', 'not', '$ref']) {
    if (k in node) throw new Error(`${path}: ${k} cannot be expressed in a structural schema`);
  }
  if (typeof node.type !== 'string') throw new Error(`${path}: every node needs a single type`);
  // An open object (a plugin's configuration): the apiserver keeps whatever it holds.
  if (node['x-kubernetes-preserve-unknown-fields'] === true) {
    const open: JsonSchema = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    if (node.description !== undefined) open.description = node.description;
    return open;
  }

  const out: JsonSchema = {};
  for (const k of KEPT) if (node[k] !== undefined) out[k] = node[k];

  if (node.type === 'object') {
    const properties = node.properties as Record<string, TSchema> | undefined;
    const patterns = node.patternProperties as Record<string, TSchema> | undefined;
    if (properties !== undefined && patterns !== undefined) {
      throw new Error(`${path}: properties and a record cannot be combined`);
    }
    if (properties !== undefined) {
      out.properties = Object.fromEntries(
        Object.entries(properties).map(([key, child]) => [key, toStructural(child, `${path}.${key}`)]),
      );
    } else if (patterns !== undefined) {
      const values = Object.values(patterns);
      if (values.length !== 1 || values[0] === undefined) {
        throw new Error(`${path}: a record must have exactly one value schema`);
      }
      out.additionalProperties = toStructural(values[0], `${path}.*`);
    }
  } else if (node.type === 'array') {
    const items = node.items as TSchema | undefined;
    if (items === undefined) throw new Error(`${path}: an array needs an items schema`);
    out.items = toStructural(items, `${path}[]`);
    const max = MAX_ITEMS[path];
    if (max !== undefined && out.maxItems === undefined) out.maxItems = max;
  }

  const rules = CEL_RULES[path];
  if (rules !== undefined) out['x-kubernetes-validations'] = rules.map((r) => ({ ...r }));
  return out;
}

/** The MetricPolicy CustomResourceDefinition (apiextensions.k8s.io/v1), as a plain object. */
export function buildCrd(): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: [...SHORT_NAMES],
        categories: ['cardinal'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: PRINTER_COLUMNS.map((c) => ({ ...c })),
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'A MetricPolicy governs the series that Cardinal proxies forward.',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: toStructural(MetricPolicySpec, 'spec'),
                status: toStructural(MetricPolicyStatusSchema, 'status'),
              },
            },
          },
        },
      ],
    },
  };
}

/** The text of crds/metricpolicies.yaml: a first line naming the command, then the CRD. */
export function renderCrdYaml(): string {
  const header = `# Generated by \`${GENERATE_COMMAND}\` from crds/metric-policy.ts. Do not edit.\n`;
  return header + stringify(buildCrd(), { lineWidth: 0, aliasDuplicateObjects: false });
}
