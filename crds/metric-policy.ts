// The MetricPolicy API, written once. The TypeScript types, the proxy's runtime validation, the
// CRD's openAPIV3Schema (crds/metricpolicies.yaml, `npm run generate`) and so `kubectl explain`
// are all derived from the schemas in this file. Every field has a description.

import { type Static, type TSchema, Type } from '@sinclair/typebox';

export const GROUP = 'cardinal.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'MetricPolicy';
export const PLURAL = 'metricpolicies';
export const SINGULAR = 'metricpolicy';
export const SHORT_NAMES = ['mp'];

/** A string enum that renders as `type: string, enum: [...]` in the CRD. */
function StringEnum<T extends string[]>(
  values: [...T],
  options: { description: string; default?: T[number] },
) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...options });
}

const Duration = (description: string, def?: string) =>
  Type.String({
    pattern: '^([0-9]+(ms|s|m|h|d))+$',
    description: `${description} A duration such as 30s, 5m, 1h or 1h30m.`,
    ...(def === undefined ? {} : { default: def }),
  });

const NamePattern = (description: string) =>
  Type.String({ minLength: 1, description: `${description} An RE2 regular expression, fully anchored.` });

/**
 * A rule's own name, for the `rule` label of its counters instead of its position
 * (`limits.perMetric[0]`), so dashboards and alerts keep their series when a rule is inserted.
 */
const RuleName = Type.Optional(
  Type.String({
    minLength: 1,
    maxLength: 63,
    pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
    description:
      "The rule's name, unique in the policy: the `rule` label of its counters instead of its position, so dashboards survive inserting a rule. Lower-case letters, digits and dashes.",
  }),
);

/** Every relabel action Prometheus has. */
export const RELABEL_ACTIONS = [
  'replace',
  'keep',
  'drop',
  'keepequal',
  'dropequal',
  'hashmod',
  'labelmap',
  'labeldrop',
  'labelkeep',
  'lowercase',
  'uppercase',
] as const;

export const RelabelAction = StringEnum([...RELABEL_ACTIONS], {
  description: 'The relabel action, with exactly Prometheus semantics.',
  default: 'replace',
});

/**
 * A Prometheus relabel_config. The keys are snake_case as in Prometheus's own configuration, so a
 * block can be copied from a Prometheus file unchanged. Defaults are Prometheus's.
 */
export const RelabelConfig = Type.Object(
  {
    source_labels: Type.Optional(
      Type.Array(Type.String(), {
        description: 'Labels whose values are joined with `separator` and matched against `regex`.',
      }),
    ),
    separator: Type.Optional(Type.String({ description: 'Joins the source label values. Default ";".' })),
    regex: Type.Optional(
      Type.String({
        description:
          'RE2 regular expression, fully anchored, matched against the joined values. Default "(.*)".',
      }),
    ),
    modulus: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'Modulus of the hash of the source labels, for action hashmod.',
      }),
    ),
    target_label: Type.Optional(
      Type.String({
        description:
          'Label written by replace, hashmod, lowercase and uppercase, and compared by keepequal and dropequal.',
      }),
    ),
    replacement: Type.Optional(
      Type.String({
        description:
          // biome-ignore lint/suspicious/noTemplateCurlyInString: ${name} is Prometheus's template syntax, not JavaScript's.
          'Replacement value for replace and labelmap; $1, ${name} refer to regex groups. Default "$1".',
      }),
    ),
    action: Type.Optional(RelabelAction),
  },
  { description: 'A Prometheus relabel_config.' },
);

export const Match = Type.Object(
  {
    selector: Type.Optional(
      Type.String({
        description:
          'A PromQL series selector such as {job=~"api-.*"} or http_requests_total{code!="200"}; the policy applies to the series it selects. Default: every series.',
      }),
    ),
    tenants: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          'Tenants (X-Scope-OrgID values) the policy applies to. Default: every tenant, and requests without one.',
      }),
    ),
  },
  { description: 'Which series the policy applies to. Both conditions must hold when both are set.' },
);

export const OnViolation = StringEnum(['drop', 'report'], {
  description: 'drop: a violating series is dropped. report: it is forwarded and counted as a violation.',
  default: 'report',
});

export const Standards = Type.Object(
  {
    metricNamePattern: Type.Optional(NamePattern('Every metric name must match this.')),
    labelNamePattern: Type.Optional(NamePattern('Every label name (except __name__) must match this.')),
    requiredLabels: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description: 'Labels every series must carry, with a non-empty value.',
      }),
    ),
    forbiddenLabels: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { description: 'Labels no series may carry.' }),
    ),
    maxLabels: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Maximum number of labels per series, __name__ included.' }),
    ),
    maxLabelNameLength: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Maximum length of a label name, in bytes.' }),
    ),
    maxLabelValueLength: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Maximum length of a label value, in bytes.' }),
    ),
    onViolation: Type.Optional(OnViolation),
  },
  { description: 'Naming and shape standards every matched series must meet.' },
);

export const OnExceed = StringEnum(['dropNewSeries', 'overflow'], {
  description:
    'dropNewSeries: series beyond the limit are dropped while series already admitted keep flowing. overflow: the offending label value is replaced by __cardinality_overflow__, so the data is aggregated rather than lost.',
  default: 'dropNewSeries',
});

export const MetricLimit = Type.Object(
  {
    name: RuleName,
    metric: NamePattern(
      'The metric names this limit applies to; each matching metric is limited on its own.',
    ),
    maxSeries: Type.Integer({
      minimum: 1,
      description: 'Maximum active series per metric within the window.',
    }),
    onExceed: Type.Optional(OnExceed),
    overflowLabel: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'With onExceed overflow: the label whose value is replaced. Default: the label of the new series with the most distinct values.',
      }),
    ),
  },
  { description: 'A cardinality limit on the active series of each matching metric.' },
);

export const LabelLimit = Type.Object(
  {
    name: RuleName,
    metric: Type.Optional(NamePattern('The metric names this limit applies to; default every metric.')),
    label: Type.String({
      minLength: 1,
      description: 'The label whose distinct values are limited, per metric.',
    }),
    maxValues: Type.Integer({
      minimum: 1,
      description: 'Maximum distinct values of the label per metric within the window.',
    }),
    onExceed: Type.Optional(OnExceed),
  },
  { description: 'A limit on the distinct values of one label, per metric.' },
);

export const Limits = Type.Object(
  {
    window: Type.Optional(Duration('A series or label value is active if seen within this window.', '1h')),
    perMetric: Type.Optional(Type.Array(MetricLimit, { description: 'Limits on active series per metric.' })),
    perLabel: Type.Optional(Type.Array(LabelLimit, { description: 'Limits on distinct values per label.' })),
    perTenantMaxSeries: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'Maximum active series per tenant across all metrics this policy matches; new series beyond it are dropped.',
      }),
    ),
  },
  { description: 'Cardinality limits.' },
);

export const LabelSelector = Type.Object(
  {
    matchLabels: Type.Optional(
      Type.Record(Type.String(), Type.String(), { description: 'Labels the proxy instance must carry.' }),
    ),
  },
  { description: 'Selects proxy instances by their labels.' },
);

export const UnusedAction = StringEnum(['report', 'drop'], {
  description:
    'report: series of metrics that no rule, dashboard or listed expression reads are forwarded and counted. drop: they are dropped.',
  default: 'report',
});

export const Exemption = Type.Object(
  {
    metric: NamePattern('The metric names this exemption protects from being dropped as unused.'),
    expiresAt: Type.String({
      format: 'date-time',
      description:
        'When the exemption ends, RFC 3339 (2026-12-31T00:00:00Z). From then on it protects nothing.',
    }),
    reason: Type.Optional(Type.String({ description: 'Why the metric is kept, for people.' })),
  },
  { description: 'A temporary protection from being dropped as unused.' },
);

export const Unused = Type.Object(
  {
    action: Type.Optional(UnusedAction),
    keep: Type.Optional(
      Type.Array(NamePattern('Metric names never dropped as unused.'), {
        description: 'Metric-name patterns that are never dropped as unused, read or not.',
      }),
    ),
    exemptions: Type.Optional(
      Type.Array(Exemption, { description: 'Metric-name patterns kept until a date.' }),
    ),
    metrics: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          'Metric names this policy counts as read, besides what PrometheusRules and Grafana dashboards read.',
      }),
    ),
    expressions: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          'PromQL expressions this policy counts as read (by a tool the operator cannot see), besides PrometheusRules and Grafana dashboards.',
      }),
    ),
    labels: Type.Optional(
      Type.Unsafe<'report' | 'aggregate'>({
        type: 'string',
        enum: ['report', 'aggregate'],
        description:
          'Labels of read metrics that no expression depends on (a raw selector depends on every label; sum by (a) only on a). report: counted. aggregate: their value is replaced by __cardinal_aggregated__ and the series that collapse are summed per timestamp. Absent: labels are not judged.',
      }),
    ),
    keepLabels: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description: 'Label names never aggregated away, read or not.',
      }),
    ),
    readWindow: Type.Optional(
      Duration(
        "A metric read within this window through a proxy's read path (--query.upstream, or a rule evaluation in a tailed query log) is in use, as much as one a rule or a dashboard references, and is never judged unused. The reads come in the MetricUsage document, which the operator renders from its proxies' GET /api/v1/stats/usage. Absent: reads are not considered.",
      ),
    ),
    countReferences: Type.Optional(
      Type.Boolean({
        default: true,
        description:
          'false: only reads count, so a metric that rules or dashboards reference but nothing read within readWindow is unused. References still count until reads have been recorded for a whole readWindow. Needs readWindow.',
      }),
    ),
  },
  {
    description:
      "Usage-aware governance: the metrics that no PrometheusRule, Grafana dashboard or listed expression reads are reported, or dropped. The operator renders what is read into the proxies' configuration as a MetricUsage document.",
  },
);

/**
 * A stage plugin a policy runs (spec.stages): loaded by the proxy with --stage.plugin, configured
 * here. `config` stays open in the CRD (x-kubernetes-preserve-unknown-fields): the plugin's own
 * schema checks it when the proxy loads the policy, and a config it refuses is a rejected
 * configuration, with the plugin's message.
 */
export const StageRef = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
      description: 'The name the plugin declares (cardinal-proxy --stage.plugin PATH loads it).',
    }),
    config: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        'x-kubernetes-preserve-unknown-fields': true,
        description: "The plugin's configuration, checked by the plugin's own schema.",
      }),
    ),
  },
  { description: 'One stage plugin, with its configuration.' },
);

export const MetricPolicySpec = Type.Object(
  {
    proxySelector: Type.Optional({
      ...LabelSelector,
      description: 'Which proxy instances run this policy. Default: the default proxy instance.',
    }),
    priority: Type.Optional(
      Type.Integer({
        description:
          'Policies apply in ascending priority, then by namespace and name. Each policy sees the series as the policies before it left them. Default 0.',
        default: 0,
      }),
    ),
    mode: Type.Optional(
      StringEnum(['enforce', 'dryRun'], {
        description:
          'enforce: the policy changes and drops series. dryRun: nothing is changed or dropped, but every counter says what would have been.',
        default: 'enforce',
      }),
    ),
    match: Type.Optional(Match),
    relabel: Type.Optional(
      Type.Array(RelabelConfig, {
        description: 'Prometheus relabel_configs, applied in order, first of the policy stages.',
      }),
    ),
    onCollision: Type.Optional(
      StringEnum(['sum', 'max', 'min', 'last'], {
        description:
          "When this policy's relabel makes several series of one request the same series (labeldrop, labelkeep, replace onto an existing label set), they are forwarded as one, with the replica label, and samples of one timestamp are combined: sum (default), max, min, or last (the later series of the request wins). Counted with reason collision.",
      }),
    ),
    drop: Type.Optional(
      Type.Array(NamePattern('Metric names to drop outright.'), {
        description: 'Metric-name patterns to drop outright.',
      }),
    ),
    standards: Type.Optional(Standards),
    limits: Type.Optional(Limits),
    unused: Type.Optional(Unused),
    stages: Type.Optional(
      Type.Array(StageRef, {
        description:
          "Stage plugins, run in order after the policy's standards and before its limits, on the series as the stages before left it.",
      }),
    ),
  },
  {
    description:
      'What the policy enforces on the series it matches: relabel, then drop, then unused, then standards, then stage plugins, then limits.',
  },
);

// The status, written by the operator. Schemas like the spec's, so the CRD's status schema and
// `kubectl explain metricpolicy.status` come from the same source as the operator's types.

/** How many offenders a policy's status lists. */
export const TOP_OFFENDERS_LIMIT = 5;

export const ConditionSchema = Type.Object(
  {
    type: Type.String({ maxLength: 316, description: 'Accepted, Ready or Degraded.' }),
    status: Type.Unsafe<'True' | 'False' | 'Unknown'>({
      type: 'string',
      enum: ['True', 'False', 'Unknown'],
      description: 'True, False or Unknown.',
    }),
    reason: Type.String({
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
      description: 'Why the condition has its status, in CamelCase, for machines.',
    }),
    message: Type.String({ maxLength: 32768, description: 'Why the condition has its status, for people.' }),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'When the status last changed, RFC 3339 in whole seconds.',
    }),
    observedGeneration: Type.Integer({
      minimum: 0,
      description: 'The generation of the spec the condition describes.',
    }),
  },
  {
    description:
      'A condition as the Kubernetes API conventions define it (metav1.Condition, "Typical status properties").',
  },
);

export const TopOffenderSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    series: Type.Integer({
      minimum: 0,
      description:
        'Active series of the metric, summed over the proxies that list it among their largest; 0 when none does.',
    }),
    droppedSamplesPerSecond: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          'Samples per second dropped between the last two polls of the proxies. Absent until a rate is known.',
      }),
    ),
    droppedSamples: Type.Integer({
      minimum: 0,
      description: 'Samples dropped since each proxy last loaded its configuration, summed.',
    }),
    reason: Type.String({
      description: "The proxy's drop reason, such as series_limit, or dryRun:series_limit in dry-run mode.",
    }),
  },
  { description: 'A metric that loses samples to this policy, summed over the proxies that run it.' },
);

/** The limits a status lists (status.limits): the fullest of the policy's limits in use. */
export const LIMITS_STATUS_LIMIT = 10;

export const LimitUseSchema = Type.Object(
  {
    limit: Type.String({
      description: 'The limit, as the spec names it: perMetric[i], perLabel[i] or perTenantMaxSeries.',
    }),
    metric: Type.Optional(Type.String({ description: 'The metric counted (perMetric, perLabel).' })),
    label: Type.Optional(Type.String({ description: 'The label whose values are counted (perLabel).' })),
    tenant: Type.Optional(
      Type.String({ description: "The tenant counted (perTenantMaxSeries); '' for requests without one." }),
    ),
    current: Type.Integer({
      minimum: 0,
      description: "Series (or label values) active in the policy's window.",
    }),
    max: Type.Integer({ minimum: 1, description: 'What the limit allows.' }),
    global: Type.Optional(
      Type.Boolean({
        description:
          "True: counted over all proxies by the shared limit store (--limits.store). Absent: the fullest proxy's own count, as each proxy enforces its own limits without a store (or while it does not answer).",
      }),
    ),
  },
  { description: 'How full one limit of the policy is in one scope (a metric, or a tenant).' },
);

export const ProxiesStatusSchema = Type.Object(
  {
    ready: Type.Integer({ minimum: 0, description: 'Reachable proxies that report configHash.' }),
    total: Type.Integer({ minimum: 0, description: "Proxies of the policy's instance." }),
    configHash: Type.String({
      description:
        "The configuration hash the proxies report once they run the latest rendering of the policy's instance.",
    }),
  },
  { description: 'The proxies that run this policy.' },
);

/** How many unused metrics, used metrics and source problems a policy's status lists. */
export const UNUSED_STATUS_LIMIT = 10;

export const UnusedMetricSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    series: Type.Integer({
      minimum: 0,
      description: 'Active series of the metric, summed over the proxies: what dropping it saves.',
    }),
    samplesPerSecond: Type.Number({
      minimum: 0,
      description: 'Samples per second of the metric, summed over the proxies.',
    }),
  },
  { description: 'A metric that no rule, dashboard or listed expression reads.' },
);

export const UsedMetricSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name, or a pattern from a regex matcher on __name__.' }),
    sources: Type.Array(Type.String(), {
      maxItems: 5,
      description: 'What reads it: PrometheusRule, Dashboard or MetricPolicy, with namespace and name.',
    }),
  },
  { description: 'A metric that is read, and what reads it.' },
);

export const UnusedLabelSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    label: Type.String({ description: 'A label of it that no expression depends on.' }),
    distinctValues: Type.Integer({
      minimum: 0,
      description: 'Distinct values of the label, summed over the proxies.',
    }),
  },
  { description: 'A label of a read metric that no expression depends on.' },
);

export const UnusedStatusSchema = Type.Object(
  {
    action: Type.String({ description: 'report or drop, as spec.unused.action says.' }),
    usedMetrics: Type.Integer({
      minimum: 0,
      description: 'Metric names and name patterns read by the rules, dashboards and listed expressions.',
    }),
    usageKnown: Type.Boolean({
      description:
        'False while the proxies know of no usage (no rules or dashboards rendered yet, and no metrics or expressions listed): nothing is judged unused then.',
    }),
    unusedMetrics: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          'Metrics this policy matched that nothing reads, over all proxies. Absent until the proxies were polled.',
      }),
    ),
    series: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          'Active series of the unused metrics, all proxies: what dropping them saves (or saves now, in drop mode). Absent until the proxies were polled.',
      }),
    ),
    samplesPerSecond: Type.Optional(
      Type.Number({
        minimum: 0,
        description: 'Samples per second of the unused metrics, all proxies.',
      }),
    ),
    top: Type.Optional(
      Type.Array(UnusedMetricSchema, {
        maxItems: UNUSED_STATUS_LIMIT,
        description: 'The unused metrics with the most series.',
      }),
    ),
    usedBy: Type.Optional(
      Type.Array(UsedMetricSchema, {
        maxItems: UNUSED_STATUS_LIMIT,
        description: 'Some of the metrics that are read, with what reads them, in name order.',
      }),
    ),
    labels: Type.Optional(
      Type.Array(UnusedLabelSchema, {
        maxItems: UNUSED_STATUS_LIMIT,
        description:
          'With spec.unused.labels: labels of read metrics that nothing depends on, the most values first.',
      }),
    ),
    sourceProblems: Type.Optional(
      Type.Array(Type.String(), {
        maxItems: UNUSED_STATUS_LIMIT,
        description:
          'Rules, panels or expressions that could not be read (the rest of each source still counts).',
      }),
    ),
  },
  { description: 'What spec.unused found: the metrics nothing reads, and what dropping them saves.' },
);

/** How many least-read and missing metrics a policy's status lists. */
export const USAGE_STATUS_LIMIT = 10;

export const LeastReadMetricSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    series: Type.Integer({ minimum: 0, description: 'Active series, summed over the proxies.' }),
    samplesPerSecond: Type.Number({
      minimum: 0,
      description: 'Samples per second, summed over the proxies.',
    }),
    reads30d: Type.Integer({ minimum: 0, description: 'Read requests over the last 30 days, all proxies.' }),
    lastRead: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'The last read on any proxy; absent when never read.',
      }),
    ),
    costPerRead: Type.Optional(
      Type.Number({
        minimum: 0,
        description: 'series x samples per second / reads over 30 days; absent when never read.',
      }),
    ),
  },
  { description: 'An expensive metric that is read little, or not at all.' },
);

export const MissingMetricSchema = Type.Object(
  {
    metric: Type.String({ description: 'The metric name.' }),
    reads30d: Type.Integer({ minimum: 0, description: 'Read requests over the last 30 days, all proxies.' }),
    lastRead: Type.String({ format: 'date-time', description: 'The last read on any proxy.' }),
  },
  { description: 'A metric that is queried but that neither the proxies ingest nor the query API knows.' },
);

export const UsageStatusSchema = Type.Object(
  {
    readsKnown: Type.Boolean({
      description:
        "Whether a proxy of the policy's instance records reads (serves the read path or tails a query log).",
    }),
    since: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Since when reads are recorded on every proxy that records them (the latest start).',
      }),
    ),
    metricsRead: Type.Integer({ minimum: 0, description: 'Metric names read within 30 days, all proxies.' }),
    leastRead: Type.Optional(
      Type.Array(LeastReadMetricSchema, {
        maxItems: USAGE_STATUS_LIMIT,
        description:
          'The most expensive metrics per read: never read ones first, the most series x samples per second first, then the highest cost per read.',
      }),
    ),
    missingMetrics: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Metrics queried that no proxy ingests and the query API does not know.',
      }),
    ),
    missing: Type.Optional(
      Type.Array(MissingMetricSchema, {
        maxItems: USAGE_STATUS_LIMIT,
        description:
          'Some of them, the most read first: dashboards and rules that query what does not exist.',
      }),
    ),
  },
  { description: "What is read, by whom, and what it costs, from the proxies' read paths." },
);

export const MetricPolicyStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ minimum: 0, description: 'The generation of the spec this status describes.' }),
    ),
    conditions: Type.Optional(
      Type.Array(ConditionSchema, {
        description:
          'Accepted: the spec is valid and rendered. Ready: every proxy runs this generation. Degraded: accepted, but a proxy failed to reload or cannot be reached.',
      }),
    ),
    proxies: Type.Optional(ProxiesStatusSchema),
    topOffenders: Type.Optional(
      Type.Array(TopOffenderSchema, {
        maxItems: TOP_OFFENDERS_LIMIT,
        description: 'The metrics that lose the most samples to this policy, the fastest first.',
      }),
    ),
    droppedSamplesPerSecond: Type.Optional(
      Type.Number({
        minimum: 0,
        description: 'Samples per second this policy drops, all metrics, all proxies.',
      }),
    ),
    topOffender: Type.Optional(
      Type.String({
        description:
          'The first of topOffenders on one line, for a printer column; ends in (stale) with offendersStale.',
      }),
    ),
    offendersStale: Type.Optional(
      Type.Boolean({
        description:
          'True while no proxy of the instance can be reached: topOffenders, droppedSamplesPerSecond and limitsFillPercent are the last known values.',
      }),
    ),
    reason: Type.Optional(
      Type.String({
        description:
          'Why the policy is not Ready (the reason of Accepted when rejected, else of Ready), or of Degraded when that is True; absent when all is well.',
      }),
    ),
    limitsFillPercent: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          "How full the policy's fullest limit is, in % of its maxSeries, maxValues or perTenantMaxSeries: over all proxies with a shared limit store, else on the fullest proxy. Absent without limits or until the proxies were polled.",
      }),
    ),
    limits: Type.Optional(
      Type.Array(LimitUseSchema, {
        maxItems: LIMITS_STATUS_LIMIT,
        description:
          "The policy's limits in use, the fullest first: current / max over all proxies with a shared limit store, else on the fullest proxy. Absent without limits or until the proxies were polled.",
      }),
    ),
    limitsSummary: Type.Optional(
      Type.String({
        description:
          'The fullest of limits on one line, for a printer column: `http_requests_total 12/20, tenant a 3/100`.',
      }),
    ),
    unused: Type.Optional(UnusedStatusSchema),
    usage: Type.Optional(UsageStatusSchema),
  },
  { description: 'Written by the operator.' },
);

/**
 * What `kubectl get metricpolicies` prints (the CRD's additionalPrinterColumns). Priority 1 columns
 * appear with `-o wide` only.
 */
export const PRINTER_COLUMNS: readonly {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
}[] = [
  {
    name: 'Mode',
    type: 'string',
    jsonPath: '.spec.mode',
    description: 'enforce, or dryRun when the policy only counts what it would do.',
  },
  {
    name: 'Ready',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: 'True when every proxy of the instance runs this generation of the policy.',
  },
  {
    name: 'Reason',
    type: 'string',
    jsonPath: '.status.reason',
    description: 'Why the policy is not Ready, or what degrades it.',
  },
  {
    name: 'Proxies',
    type: 'integer',
    jsonPath: '.status.proxies.ready',
    description: 'Proxies that run the current configuration.',
  },
  {
    name: 'Dropped/s',
    type: 'number',
    jsonPath: '.status.droppedSamplesPerSecond',
    description: 'Samples per second the policy drops, all proxies.',
  },
  {
    name: 'Limits %',
    type: 'integer',
    jsonPath: '.status.limitsFillPercent',
    description: "How full the policy's fullest limit is, in %.",
  },
  {
    name: 'Limits',
    type: 'string',
    jsonPath: '.status.limitsSummary',
    description: 'Current / max of the fullest limits: over all proxies with a shared limit store.',
  },
  {
    name: 'Top Offender',
    type: 'string',
    jsonPath: '.status.topOffender',
    description: 'The metric that loses the most samples to the policy.',
    priority: 1,
  },
  {
    name: 'Unused Series',
    type: 'integer',
    jsonPath: '.status.unused.series',
    description:
      'Active series of the metrics that no rule or dashboard reads: what dropping them saves (spec.unused).',
    priority: 1,
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

// The MetricUsage document: what the cluster reads, rendered by the operator next to the policies
// (usage.yaml in the proxy's ConfigMap), or written by hand for a proxy run without Kubernetes.
// Not a custom resource: only the proxy reads it.

export const USAGE_KIND = 'MetricUsage';

export const MetricUse = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, description: 'A metric name that is read.' })),
    pattern: Type.Optional(NamePattern('Metric names that may be read (a regex matcher on __name__, say).')),
    sources: Type.Array(Type.String(), { description: 'What reads it, for reports.' }),
    sourceCount: Type.Optional(
      Type.Integer({ minimum: 0, description: 'How many sources read it, when more than are listed.' }),
    ),
    labels: Type.Optional(
      Type.Array(Type.String(), {
        description: 'The only labels any reading depends on. Absent with allLabelsExcept.',
      }),
    ),
    allLabelsExcept: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'Every label is depended on but these (aggregated away with `without`). Empty: every label. Absent with labels.',
      }),
    ),
  },
  { description: 'One metric, or pattern of metrics, that is read. Exactly one of name and pattern.' },
);

export const MetricRead = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'A metric name that was read.' }),
    lastRead: Type.String({
      format: 'date-time',
      description: 'When it was last read, on any proxy; the operator rounds it up to the hour.',
    }),
    reads30d: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Read requests over the last 30 days.' }),
    ),
  },
  { description: 'A metric read through a read path.' },
);

export const MetricReads = Type.Object(
  {
    since: Type.String({
      format: 'date-time',
      description: 'Since when reads are recorded: a metric not listed was not read since then.',
    }),
    metrics: Type.Array(MetricRead, { description: 'Every metric read since then.' }),
  },
  { description: 'What the read paths saw read (spec.unused.readWindow).' },
);

export const MetricUsageSpec = Type.Object(
  {
    metrics: Type.Array(MetricUse, { description: 'Every metric that is read.' }),
    reads: Type.Optional(MetricReads),
  },
  { description: 'What the cluster reads.' },
);

export type UnusedT = Static<typeof Unused>;
export type MetricUseT = Static<typeof MetricUse>;
export type MetricUsageSpecT = Static<typeof MetricUsageSpec>;
export type UnusedStatusT = Static<typeof UnusedStatusSchema>;
export type UsageStatusT = Static<typeof UsageStatusSchema>;
export type MetricReadsT = Static<typeof MetricReads>;
export type RelabelConfigT = Static<typeof RelabelConfig>;
export type MetricPolicySpecT = Static<typeof MetricPolicySpec>;
export type StandardsT = Static<typeof Standards>;
export type LimitsT = Static<typeof Limits>;
export type StageRefT = Static<typeof StageRef>;

/** Every schema a generator or validator may need, by name. */
export const schemas: Record<string, TSchema> = { MetricPolicySpec, MetricPolicyStatusSchema, RelabelConfig };
