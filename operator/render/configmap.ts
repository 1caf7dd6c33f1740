// Renders the accepted MetricPolicies of one proxy instance into the ConfigMap its pods mount. The
// proxy reads the mounted directory with `--config` (policy/load.ts), so each policy is
// written back exactly as a user would `kubectl apply` it: apiVersion, kind, metadata.name,
// metadata.namespace and spec; never status or server-set metadata, which would change the
// configuration's hash on every write without changing what it enforces.
//
// Pure and deterministic: the same policies in any order give the same bytes, so the reconcile
// loop can skip writes by comparing the hash, and proxies reload only on a real change.

import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { stringify } from 'yaml';
import { API_VERSION, type MetricUsageSpecT, USAGE_KIND } from '../../crds/metric-policy.js';
import { REPLICAS_KEY, renderReplicas } from '../../policy/replicas.js';
import type { ConfigMap, MetricPolicy } from '../api/types.js';
import { configMapName, INSTANCE_LABEL, instanceProblem, policyId, selectInstance } from './instance.js';

/**
 * The data key of the first shard; the proxy reads every `*.yaml` file of the mounted directory,
 * so the other shards' keys (shardKey) sit beside it in one projected volume.
 */
export const CONFIG_KEY = 'policies.yaml';
/**
 * The largest shard written, data and metadata together. The API server refuses an object over
 * 1 MiB (etcd's request limit, Kubernetes "ConfigMaps"); this leaves room for the fields the API
 * server adds (managedFields, timestamps) and for a policy growing by an edit.
 */
export const SHARD_MAX_BYTES = 768 * 1024;
/** Annotations are limited to 256 KiB in total (apimachinery ValidateAnnotations). */
export const ANNOTATIONS_MAX_BYTES = 200 * 1024;
export const HEADER = '# Rendered by cardinal-operator from MetricPolicy resources; do not edit.';
/**
 * What the cluster reads (spec.unused), as one MetricUsage document; only rendered when a policy of
 * the instance sets spec.unused, so other instances' proxies never reload for a dashboard edit.
 */
export const USAGE_KEY = 'usage.yaml';
export const USAGE_HEADER =
  '# Rendered by cardinal-operator from PrometheusRules and Grafana dashboards; do not edit.';
/**
 * How many proxies of the instance the operator discovers, for the share of each limit a proxy
 * enforces while the shared limit store does not answer (policy/replicas.ts). Not a YAML
 * file, so it is not in the configuration's hash: a scale-up reloads no policy.
 */
export { REPLICAS_KEY };
/** Every data key the operator writes; a live key among them that is not rendered is stale. */
export const RENDERED_KEYS: readonly string[] = [CONFIG_KEY, USAGE_KEY, REPLICAS_KEY];
/** Whether `key` is one the operator renders in some shard: policies.yaml, policies-N.yaml, usage.yaml. */
export function isRenderedKey(key: string): boolean {
  return RENDERED_KEYS.includes(key) || /^policies-\d+\.yaml$/.test(key);
}

/** sha256 (hex) of the `policies.yaml` text: `kubectl get cm ... | sha256sum` gives the same. */
export const CONFIG_HASH_ANNOTATION = 'cardinal.dev/config-hash';
/** JSON of {"namespace/name": generation}, keys sorted: which generation of each policy is rendered. */
export const GENERATIONS_ANNOTATION = 'cardinal.dev/policy-generations';
/**
 * The operator that rendered it. Kept out of the data on purpose, so that upgrading the operator
 * does not change the configuration's hash and make every proxy reload the same policies.
 */
export const OPERATOR_VERSION_ANNOTATION = 'cardinal.dev/operator-version';

export interface RenderInput {
  /** A valid instance name (see instanceProblem). */
  readonly instance: string;
  /** Where the ConfigMap lives: the namespace of the instance's proxies. */
  readonly namespace: string;
  /**
   * The accepted policies of this instance, in any order. The caller must have dropped rejected
   * ones and ones selecting another instance; a policy of another instance, or two policies with
   * the same namespace and name, is a programming error and throws.
   */
  readonly policies: readonly MetricPolicy[];
  readonly operatorVersion: string;
  /**
   * What the cluster reads, for policies with spec.unused: a spec to render, or the text of a
   * usage.yaml rendered before (kept while the usage watches are not synced). Ignored when no
   * policy sets spec.unused. It goes into the first shard.
   */
  readonly usage?: MetricUsageSpecT | string | undefined;
  /**
   * How many ConfigMaps the configuration is split over (operator --config-shards; the chart mounts
   * as many into one projected volume). Default 1: one ConfigMap, as before shards existed.
   */
  readonly shards?: number;
  /** One policy's YAML document (renderPolicyYaml); the caller may memoise it per generation. */
  readonly policyYaml?: (policy: MetricPolicy) => string;
  /**
   * The proxies discovered (a count to render), or the text of a count rendered before (kept while
   * the proxies are not discovered). Absent: no count, the proxies use `--limits.replicas`. It goes
   * into the first shard.
   */
  readonly replicas?: number | string | undefined;
}

/**
 * The shard a policy is rendered into: by a hash of its id, so a policy stays in its shard while
 * the shard count stays, and an edit rewrites one ConfigMap only.
 */
export function shardOf(id: string, shards: number): number {
  if (shards <= 1) return 0;
  return createHash('sha256').update(id).digest().readUInt32BE(0) % shards;
}

/** The ConfigMap of shard `i`: the first keeps the name of the single ConfigMap. */
export function shardName(instance: string, i: number): string {
  return i === 0 ? configMapName(instance) : `${configMapName(instance)}-${i}`;
}

/** The data key of shard `i`: distinct per shard, since all shards are mounted in one directory. */
export function shardKey(i: number): string {
  return i === 0 ? CONFIG_KEY : `policies-${i}.yaml`;
}

/** The instance's single ConfigMap: renderProxyConfigMaps with one shard. */
export function renderProxyConfigMap(input: RenderInput): ConfigMap {
  return renderProxyConfigMaps({ ...input, shards: 1 })[0]!;
}

/**
 * The instance's ConfigMaps, one per shard, in shard order; every shard is rendered, an empty one
 * with its header only, so the set of files the proxies mount does not depend on the policies.
 */
export function renderProxyConfigMaps(input: RenderInput): ConfigMap[] {
  const problem = instanceProblem(input.instance);
  if (problem !== undefined) throw new RangeError(problem);
  const shards = input.shards ?? 1;
  if (!(Number.isInteger(shards) && shards >= 1))
    throw new RangeError(`shards: ${shards} must be a positive integer`);
  const policies = [...input.policies].sort(byNamespaceName);
  const byShard: MetricPolicy[][] = Array.from({ length: shards }, () => []);
  for (const [i, p] of policies.entries()) {
    const id = policyId(p);
    if (selectInstance(p) !== input.instance) {
      throw new RangeError(`MetricPolicy ${id} selects instance ${selectInstance(p)}, not ${input.instance}`);
    }
    const before = policies[i - 1];
    if (before !== undefined && policyId(before) === id)
      throw new RangeError(`MetricPolicy ${id} is given twice`);
    byShard[shardOf(id, shards)]!.push(p);
  }
  const yaml = input.policyYaml ?? renderPolicyYaml;
  return byShard.map((mine, shard) => {
    const generations: Record<string, number> = {};
    for (const p of mine) generations[policyId(p)] = p.metadata.generation;
    const text = `${HEADER}\n${mine.map(yaml).join('')}`;
    const data: Record<string, string> = { [shardKey(shard)]: text };
    if (shard === 0 && input.usage !== undefined && policies.some((p) => p.spec.unused !== undefined)) {
      data[USAGE_KEY] = typeof input.usage === 'string' ? input.usage : renderUsageYaml(input.usage);
    }
    if (shard === 0 && input.replicas !== undefined) {
      data[REPLICAS_KEY] =
        typeof input.replicas === 'string' ? input.replicas : renderReplicas(input.replicas);
    }
    return shardConfigMap(input, shard, text, generations, data);
  });
}

function shardConfigMap(
  input: RenderInput,
  shard: number,
  text: string,
  generations: Record<string, number>,
  data: Record<string, string>,
): ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: shardName(input.instance, shard),
      namespace: input.namespace,
      labels: {
        'app.kubernetes.io/managed-by': 'cardinal-operator',
        'app.kubernetes.io/name': 'cardinal-proxy',
        [INSTANCE_LABEL]: input.instance,
      },
      annotations: {
        [CONFIG_HASH_ANNOTATION]: sha256(text),
        [GENERATIONS_ANNOTATION]: JSON.stringify(generations),
        [OPERATOR_VERSION_ANNOTATION]: input.operatorVersion,
      },
    },
    data,
  };
}

/**
 * What a ConfigMap weighs against the API server's limits: its JSON size, and that of its
 * annotations. Counted in UTF-8 bytes, as etcd stores it.
 */
export function configMapBytes(configMap: ConfigMap): { total: number; annotations: number } {
  const annotations = Object.entries(configMap.metadata.annotations).reduce(
    (n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v),
    0,
  );
  return { total: Buffer.byteLength(JSON.stringify(configMap)), annotations };
}

/**
 * Why a shard cannot be written, or undefined when it can: over SHARD_MAX_BYTES in all, or over
 * ANNOTATIONS_MAX_BYTES of annotations (the generations list grows with the policies).
 */
export function shardProblem(configMap: ConfigMap): string | undefined {
  const { total, annotations } = configMapBytes(configMap);
  const name = `ConfigMap ${configMap.metadata.namespace}/${configMap.metadata.name}`;
  if (total > SHARD_MAX_BYTES)
    return `${name} would hold ${kib(total)} KiB, over the ${kib(SHARD_MAX_BYTES)} KiB a shard may hold (the API server refuses objects over 1 MiB); raise the operator's --config-shards (chart: operator.configShards)`;
  if (annotations > ANNOTATIONS_MAX_BYTES)
    return `${name} would carry ${kib(annotations)} KiB of annotations, over ${kib(ANNOTATIONS_MAX_BYTES)} KiB; raise the operator's --config-shards (chart: operator.configShards)`;
  return undefined;
}

function kib(bytes: number): number {
  return Math.ceil(bytes / 1024);
}

const usageTexts = new WeakMap<MetricUsageSpecT, string>();

/**
 * Above this, usage.yaml is rendered without sources: a ConfigMap holds at most 1 MiB (Kubernetes
 * "ConfigMaps"), and the policies share it. Sources are for reports; the proxy needs only names,
 * patterns and labels.
 */
export const USAGE_MAX_BYTES = 640 * 1024;

/**
 * The MetricUsage document after a header comment, one metric per line (JSON flow style, which is
 * YAML), so that thousands of metrics fit in a ConfigMap. Memoised per spec object, which the
 * usage watch reuses until a source changes.
 */
export function renderUsageYaml(spec: MetricUsageSpecT): string {
  let text = usageTexts.get(spec);
  if (text === undefined) {
    text = usageText(spec, true);
    if (Buffer.byteLength(text) > USAGE_MAX_BYTES) text = usageText(spec, false);
    usageTexts.set(spec, text);
  }
  return text;
}

function usageText(spec: MetricUsageSpecT, sources: boolean): string {
  const head = `${USAGE_HEADER}\n${stringify(
    { apiVersion: API_VERSION, kind: USAGE_KIND, metadata: { name: 'cluster' } },
    { version: '1.1' },
  )}`;
  // What the read paths saw read (spec.unused.readWindow), one metric per line too.
  const reads =
    spec.reads === undefined
      ? ''
      : `  reads:\n    since: ${JSON.stringify(spec.reads.since)}\n` +
        (spec.reads.metrics.length === 0
          ? '    metrics: []\n'
          : `    metrics:\n${spec.reads.metrics.map((r) => `      - ${JSON.stringify(sortKeys(r))}\n`).join('')}`);
  if (spec.metrics.length === 0) return `${head}spec:\n  metrics: []\n${reads}`;
  const lines = spec.metrics.map((m) => {
    const entry = sources ? m : { ...m, sources: [], sourceCount: m.sourceCount ?? m.sources.length };
    return `    - ${JSON.stringify(sortKeys(entry))}\n`;
  });
  return `${head}spec:\n  metrics:\n${lines.join('')}${reads}`;
}

/**
 * The policies as one YAML stream, in the given order, after a header comment. Written with YAML
 * 1.1 quoting, so that strings such as `on`, `no` or `0x1F` are quoted and read as the same strings
 * by YAML 1.1 and 1.2 parsers alike; lines are never folded, so a long regex stays on one line.
 */
export function renderPoliciesYaml(policies: readonly MetricPolicy[]): string {
  return `${HEADER}\n${policies.map(renderPolicyYaml).join('')}`;
}

/** One policy's document of renderPoliciesYaml, starting with its `---` line. */
export function renderPolicyYaml(p: MetricPolicy): string {
  const doc = {
    apiVersion: p.apiVersion,
    kind: p.kind,
    metadata: { name: p.metadata.name, namespace: p.metadata.namespace },
    spec: p.spec,
  };
  return `---\n${stringify(sortKeys(doc), { version: '1.1', lineWidth: 0, aliasDuplicateObjects: false })}`;
}

/**
 * The hash a proxy reports at GET /api/v1/status/config once it has loaded this ConfigMap, when its
 * `--config` is `mountPath`, the directory the ConfigMap is mounted at. It mirrors loadConfig in
 * policy/load.ts, which hashes each file's path and content. The mount must be the whole
 * ConfigMap, not a subPath: the kubelet never updates a subPath mount.
 */
export function proxyConfigHash(
  configMaps: Pick<ConfigMap, 'data'> | readonly Pick<ConfigMap, 'data'>[],
  mountPath: string,
): string {
  // Every shard is projected into the one directory, so the proxy hashes their keys together.
  const data: Record<string, string> = Object.assign(
    {},
    ...(Array.isArray(configMaps) ? configMaps : [configMaps]).map((c) => c.data),
  );
  const hash = createHash('sha256');
  const keys = Object.keys(data)
    .filter((k) => !k.startsWith('.') && /\.(ya?ml|json)$/i.test(k))
    .sort();
  for (const key of keys) hash.update(`${posix.join(mountPath, key)}\0${data[key]}\0`);
  return hash.digest('hex');
}

/**
 * The generations a rendered ConfigMap holds, read back from its annotation. A missing or malformed
 * annotation (a ConfigMap edited by hand) reads as no policies, so nothing counts as in force.
 */
export function renderedGenerations(configMap: {
  metadata: { annotations?: Record<string, string> };
}): Record<string, number> {
  const raw = configMap.metadata.annotations?.[GENERATIONS_ANNOTATION];
  if (raw === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return {};
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
  const out: Record<string, number> = {};
  for (const [id, g] of Object.entries(parsed)) if (Number.isSafeInteger(g)) out[id] = g as number;
  return out;
}

function byNamespaceName(a: MetricPolicy, b: MetricPolicy): number {
  return cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A copy with every object's keys in code-unit order and undefined fields left out; arrays keep their order. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  // fromEntries defines own properties, so even a key named __proto__ survives.
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .flatMap((key) => {
        const v = (value as Record<string, unknown>)[key];
        return v === undefined ? [] : [[key, sortKeys(v)]];
      }),
  );
}
