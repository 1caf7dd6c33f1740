// Cardinal's alerting rules, written once. `npm run generate` renders them as a plain Prometheus
// rules file, charts/cardinal/rules/cardinal.rules.yaml, which Prometheus loads as it is
// (`rule_files`) and which the chart wraps in a PrometheusRule (templates/prometheusrule.yaml).
// Each alert carries its promtool unit test (test/integration/alerts.test.ts runs `promtool test
// rules` over the shipped file) and links its section of docs/runbooks.md.
//
// This file lives outside charts/cardinal so that `helm package` does not ship it.

import { stringify } from 'yaml';
import { GENERATE_COMMAND } from '../crds/crd.js';

export const RULES_FILE = 'charts/cardinal/rules/cardinal.rules.yaml';
export const RUNBOOKS_FILE = 'docs/runbooks.md';
export const RUNBOOK_BASE = 'https://github.com/cardinal-dev/cardinal/blob/main/docs/runbooks.md';

/**
 * The scrape jobs of the proxies and of the operator, as a Prometheus without the Prometheus
 * Operator names them by default. The chart replaces both with its own Services' names, which the
 * ServiceMonitors make the job labels.
 */
export const PROXY_JOB = 'job=~".*cardinal-proxy.*"';
export const OPERATOR_JOB = 'job=~".*cardinal-operator.*"';

export type Severity = 'critical' | 'warning' | 'info';

/** A promtool unit test of one alert: quiet at `quietAt`, firing with `labels` at `firingAt`. */
export interface AlertTest {
  /** [series in promtool's notation, values in its expanding notation], one sample a minute. */
  readonly series: readonly (readonly [string, string])[];
  readonly quietAt: string;
  readonly firingAt: string;
  /** The labels of each alert expected at `firingAt`, severity and alertname aside. */
  readonly labels: readonly Record<string, string>[];
}

export interface Alert {
  readonly alert: string;
  readonly expr: string;
  readonly for: string;
  readonly severity: Severity;
  /** One line; may use {{ $labels.NAME }} of the alert's labels, nothing else. */
  readonly summary: string;
  readonly description: string;
  readonly test: AlertTest;
}

export interface AlertGroup {
  readonly name: string;
  readonly alerts: readonly Alert[];
}

const LIMIT_REASONS = 'series_limit|label_values_limit|tenant_series_limit';
const P = 'job="cardinal-proxy", instance="10.0.0.7:8080"';
const PL = { job: 'cardinal-proxy', instance: '10.0.0.7:8080' };
const O = 'job="cardinal-operator", instance="10.0.0.9:8081"';

export const ALERT_GROUPS: readonly AlertGroup[] = [
  {
    name: 'cardinal-proxy',
    alerts: [
      {
        alert: 'CardinalProxyDown',
        expr: `up{${PROXY_JOB}} == 0`,
        for: '5m',
        severity: 'critical',
        summary: 'Proxy {{ $labels.instance }} cannot be scraped.',
        description:
          'Prometheus has not scraped the proxy for 5 minutes: senders writing to it get errors and buffer, and nothing it drops or forwards is visible.',
        test: {
          series: [[`up{${P}}`, '1x5 0x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [PL],
        },
      },
      {
        alert: 'CardinalProxyConfigReloadFailed',
        expr: 'cardinal_proxy_config_last_reload_successful == 0',
        for: '5m',
        severity: 'warning',
        summary: 'Proxy {{ $labels.instance }} failed to load its policies.',
        description:
          'The last configuration load failed; the proxy keeps enforcing the previous policies. /api/v1/status/config on the proxy names the file, line and field.',
        test: {
          series: [[`cardinal_proxy_config_last_reload_successful{${P}}`, '1x5 0x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [PL],
        },
      },
      {
        alert: 'CardinalProxyCredentialsReloadFailed',
        expr: 'cardinal_proxy_auth_last_reload_successful == 0',
        for: '5m',
        severity: 'warning',
        summary: 'Proxy {{ $labels.instance }} failed to load its ingest credentials.',
        description:
          'The last load of --auth.credentials-file failed; the proxy keeps the previous credentials, so a rotated token is not accepted yet.',
        test: {
          series: [[`cardinal_proxy_auth_last_reload_successful{${P}}`, '1x5 0x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [PL],
        },
      },
      {
        alert: 'CardinalProxyLimitHit',
        expr: `sum by (namespace, job, policy, reason) (rate(cardinal_proxy_policy_samples_total{action="dropped", mode="enforce", reason=~"${LIMIT_REASONS}"}[5m])) > 0`,
        for: '5m',
        severity: 'warning',
        summary: 'Policy {{ $labels.policy }} drops series at its limit ({{ $labels.reason }}).',
        description:
          'New series beyond a MetricPolicy limit are dropped. `kubectl get mp` and /api/v1/stats/top-offenders name the metric and label that grow.',
        test: {
          series: [
            [
              `cardinal_proxy_policy_samples_total{${P}, policy="team-a/cap", rule="limits.perMetric[0]", reason="series_limit", action="dropped", mode="enforce"}`,
              '0x5 0+100x10',
            ],
            [
              `cardinal_proxy_policy_samples_total{${P}, policy="team-a/debug", rule="drop[0]", reason="metric_dropped", action="dropped", mode="enforce"}`,
              '0+100x15',
            ],
          ],
          quietAt: '5m',
          firingAt: '14m',
          labels: [{ job: 'cardinal-proxy', policy: 'team-a/cap', reason: 'series_limit' }],
        },
      },
      {
        alert: 'CardinalProxyOverflowActive',
        expr: `sum by (namespace, job, policy, reason) (rate(cardinal_proxy_policy_samples_total{action="rewritten", mode="enforce", reason=~"${LIMIT_REASONS}"}[5m])) > 0`,
        for: '15m',
        severity: 'info',
        summary: 'Policy {{ $labels.policy }} aggregates series into its overflow series.',
        description:
          'Series beyond a limit with onExceed: overflow are summed into one overflow series per metric: their own labels are lost until the limit is raised or the source fixed.',
        test: {
          series: [
            [
              `cardinal_proxy_policy_samples_total{${P}, policy="team-a/cap", rule="limits.perMetric[0]", reason="series_limit", action="rewritten", mode="enforce"}`,
              '0x5 0+10x30',
            ],
          ],
          quietAt: '15m',
          firingAt: '30m',
          labels: [{ job: 'cardinal-proxy', policy: 'team-a/cap', reason: 'series_limit' }],
        },
      },
      {
        alert: 'CardinalProxyUpstreamErrors',
        expr:
          'sum without (outcome, reason) (rate(cardinal_proxy_forward_attempts_total{outcome!="ok"}[5m]))' +
          ' / sum without (outcome, reason) (rate(cardinal_proxy_forward_attempts_total[5m])) > 0.05',
        for: '10m',
        severity: 'warning',
        summary: 'More than 5% of proxy {{ $labels.instance }}\u2019s requests to the upstream fail.',
        description:
          'Attempts to the upstream answer 5xx, 429, another 4xx or do not connect. The proxy retries what may be retried; the forward_attempts_total reason label says why.',
        test: {
          series: [
            [
              `cardinal_proxy_forward_attempts_total{${P}, protocol="1.0", outcome="ok", reason="204"}`,
              '0+100x30',
            ],
            [
              `cardinal_proxy_forward_attempts_total{${P}, protocol="1.0", outcome="retry", reason="503"}`,
              '0x10 0+50x20',
            ],
          ],
          quietAt: '12m',
          firingAt: '25m',
          labels: [{ ...PL, protocol: '1.0' }],
        },
      },
      {
        alert: 'CardinalProxyRetriesExhausted',
        expr: 'sum without (code, reason) (rate(cardinal_proxy_requests_total{reason=~"UPSTREAM_UNAVAILABLE|PUSHGATEWAY_UNAVAILABLE"}[5m])) > 0',
        for: '5m',
        severity: 'critical',
        summary: 'Proxy {{ $labels.instance }} answers senders 503: the upstream stays unreachable.',
        description:
          'Requests used up --forward.retry-budget against the upstream and were refused with 503. Senders retry and buffer; once their buffers are full, data is lost.',
        test: {
          series: [
            [`cardinal_proxy_requests_total{${P}, protocol="1.0", code="204", reason="ok"}`, '0+100x20'],
            [
              `cardinal_proxy_requests_total{${P}, protocol="1.0", code="503", reason="UPSTREAM_UNAVAILABLE"}`,
              '0x5 0+3x15',
            ],
          ],
          quietAt: '5m',
          firingAt: '15m',
          labels: [{ ...PL, protocol: '1.0' }],
        },
      },
      {
        alert: 'CardinalProxyQueueFilling',
        expr: 'cardinal_proxy_queue_bytes / cardinal_proxy_queue_max_bytes > 0.8',
        for: '5m',
        severity: 'warning',
        summary: 'Proxy {{ $labels.instance }}\u2019s {{ $labels.queue }} queue is over 80% full.',
        description:
          'The durable queue grows faster than the upstream takes it. Once full, it refuses new data (reject) or drops the oldest (drop-oldest).',
        test: {
          series: [
            [`cardinal_proxy_queue_bytes{${P}, queue="remote_write"}`, '100x5 900x10'],
            [`cardinal_proxy_queue_max_bytes{${P}, queue="remote_write"}`, '1000x15'],
          ],
          quietAt: '8m',
          firingAt: '12m',
          labels: [{ ...PL, queue: 'remote_write' }],
        },
      },
      {
        alert: 'CardinalProxyQueueDropping',
        expr: 'rate(cardinal_proxy_queue_dropped_samples_total[5m]) > 0',
        for: '1m',
        severity: 'critical',
        summary: 'Proxy {{ $labels.instance }} drops queued samples ({{ $labels.reason }}).',
        description:
          'Samples that senders were told are safe will never reach the upstream: the queue was full in drop-oldest mode, the upstream refused them, or a queue file was corrupt.',
        test: {
          series: [
            [
              `cardinal_proxy_queue_dropped_samples_total{${P}, queue="remote_write", reason="full"}`,
              '0x5 0+10x10',
            ],
          ],
          quietAt: '5m',
          firingAt: '10m',
          labels: [{ ...PL, queue: 'remote_write', reason: 'full' }],
        },
      },
      {
        alert: 'CardinalProxyQueueOldestDataAge',
        expr: 'cardinal_proxy_queue_oldest_age_seconds > 900',
        for: '5m',
        severity: 'warning',
        summary:
          'Proxy {{ $labels.instance }}\u2019s {{ $labels.queue }} queue holds data older than 15 minutes.',
        description:
          'The oldest undelivered data waits longer than 15 minutes: the upstream is down or slower than the senders, and recent data is late in dashboards and alerts.',
        test: {
          series: [[`cardinal_proxy_queue_oldest_age_seconds{${P}, queue="remote_write"}`, '0x5 1000x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [{ ...PL, queue: 'remote_write' }],
        },
      },
    ],
  },
  {
    name: 'cardinal-operator',
    alerts: [
      {
        alert: 'CardinalOperatorDown',
        expr: `up{${OPERATOR_JOB}} == 0`,
        for: '5m',
        severity: 'warning',
        summary: 'Operator replica {{ $labels.instance }} cannot be scraped.',
        description:
          'Prometheus has not scraped this operator replica for 5 minutes. While another replica leads, policies are still rendered.',
        test: {
          series: [[`up{${O}}`, '1x5 0x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [{ job: 'cardinal-operator', instance: '10.0.0.9:8081' }],
        },
      },
      {
        alert: 'CardinalOperatorNoLeader',
        expr: `sum by (namespace, job) (cardinal_operator_leader{${OPERATOR_JOB}}) < 1`,
        for: '5m',
        severity: 'critical',
        summary: 'No cardinal-operator replica holds the Lease.',
        description:
          'No replica reconciles: policy changes are not rendered to the proxies and statuses are not refreshed. The proxies keep enforcing the last rendering.',
        test: {
          series: [[`cardinal_operator_leader{${O}}`, '1x5 0x10']],
          quietAt: '8m',
          firingAt: '12m',
          labels: [{ job: 'cardinal-operator' }],
        },
      },
      {
        alert: 'CardinalOperatorReconcileErrors',
        expr: 'sum by (namespace, job, controller) (rate(controller_runtime_reconcile_errors_total{controller="metricpolicy"}[5m])) > 0',
        for: '15m',
        severity: 'warning',
        summary: 'The operator\u2019s ConfigMap or status writes keep failing.',
        description:
          'Reconciles fail and are retried with backoff: the operator cannot write a rendered ConfigMap or a policy status. Its log says which and why ("reconcile failed").',
        test: {
          series: [
            [`controller_runtime_reconcile_errors_total{${O}, controller="metricpolicy"}`, '0x5 0+2x30'],
          ],
          quietAt: '15m',
          firingAt: '30m',
          labels: [{ job: 'cardinal-operator', controller: 'metricpolicy' }],
        },
      },
      {
        alert: 'CardinalPolicyRejected',
        expr: 'max by (policy) (cardinal_operator_policy_condition{type="Accepted", status="False"}) == 1',
        for: '1m',
        severity: 'warning',
        summary: 'MetricPolicy {{ $labels.policy }} is rejected.',
        description:
          'The policy does not validate; the proxies keep its last accepted generation, if any. `kubectl describe mp` shows the validator\u2019s message in the Accepted condition.',
        test: {
          series: [
            [
              `cardinal_operator_policy_condition{${O}, policy="team-a/bad", type="Accepted", status="False"}`,
              '0x3 1x10',
            ],
            [
              `cardinal_operator_policy_condition{${O}, policy="team-a/ok", type="Accepted", status="False"}`,
              '0x13',
            ],
          ],
          quietAt: '3m',
          firingAt: '10m',
          labels: [{ policy: 'team-a/bad' }],
        },
      },
      {
        alert: 'CardinalPolicyDegraded',
        expr: 'max by (policy) (cardinal_operator_policy_condition{type="Degraded", status="True"}) == 1',
        for: '10m',
        severity: 'warning',
        summary: 'MetricPolicy {{ $labels.policy }} is degraded.',
        description:
          'A proxy of the policy\u2019s instance failed to load its configuration or cannot be reached. The Degraded condition\u2019s message names the proxy.',
        test: {
          series: [
            [
              `cardinal_operator_policy_condition{${O}, policy="team-a/cap", type="Degraded", status="True"}`,
              '0x5 1x20',
            ],
          ],
          quietAt: '12m',
          firingAt: '20m',
          labels: [{ policy: 'team-a/cap' }],
        },
      },
    ],
  },
];

export const ALERTS: readonly Alert[] = ALERT_GROUPS.flatMap((g) => g.alerts);

/** The anchor GitHub gives a `## Name` heading. */
export const runbookUrl = (alert: string): string => `${RUNBOOK_BASE}#${alert.toLowerCase()}`;

export interface RenderOptions {
  /** Replaces every alert's `for`, so a test sees an alert fire in seconds. */
  readonly for?: string;
}

/** The rules as Prometheus's rule file format has them (`groups:`). */
export function rulesDocument(options: RenderOptions = {}) {
  return {
    groups: ALERT_GROUPS.map((g) => ({
      name: g.name,
      rules: g.alerts.map((a) => ({
        alert: a.alert,
        expr: a.expr,
        for: options.for ?? a.for,
        labels: { severity: a.severity },
        annotations: { summary: a.summary, description: a.description, runbook_url: runbookUrl(a.alert) },
      })),
    })),
  };
}

export function renderRulesYaml(options: RenderOptions = {}): string {
  const header = `# Generated by \`${GENERATE_COMMAND}\` from charts/alerts.ts. Do not edit.\n`;
  return header + stringify(rulesDocument(options), { lineWidth: 0 });
}

/** The alert annotations promtool expects: the templates filled in from `labels`. */
function expand(template: string, labels: Record<string, string>): string {
  return template.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, name: string) => labels[name] ?? '');
}

/** A promtool test file (`promtool test rules FILE`) over `rulesFile`, one test per alert. */
export function renderPromtoolTests(rulesFile: string): string {
  return stringify(
    {
      rule_files: [rulesFile],
      evaluation_interval: '1m',
      tests: ALERTS.map((a) => ({
        interval: '1m',
        input_series: a.test.series.map(([series, values]) => ({ series, values })),
        alert_rule_test: [
          { eval_time: a.test.quietAt, alertname: a.alert, exp_alerts: [] },
          {
            eval_time: a.test.firingAt,
            alertname: a.alert,
            exp_alerts: a.test.labels.map((labels) => ({
              exp_labels: { ...labels, severity: a.severity },
              exp_annotations: {
                summary: expand(a.summary, labels),
                description: expand(a.description, labels),
                runbook_url: runbookUrl(a.alert),
              },
            })),
          },
        ],
      })),
    },
    { lineWidth: 0 },
  );
}
