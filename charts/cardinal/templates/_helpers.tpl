{{/* The chart name, or nameOverride. */}}
{{- define "cardinal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name when it already
contains the chart name, else release-chart. Truncated so that "-operator" still fits in 63.
*/}}
{{- define "cardinal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cardinal.operatorName" -}}{{ include "cardinal.fullname" . }}-operator{{- end }}
{{- define "cardinal.proxyName" -}}{{ include "cardinal.fullname" . }}-proxy{{- end }}

{{/* The operator's ServiceAccount: operator.serviceAccount.name, else <fullname>-operator. */}}
{{- define "cardinal.operatorServiceAccount" -}}
{{- default (include "cardinal.operatorName" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* The proxies' ServiceAccount, or nothing for the namespace's default. */}}
{{- define "cardinal.proxyServiceAccount" -}}
{{- $sa := .Values.proxy.serviceAccount }}
{{- if $sa.create }}{{ default (include "cardinal.proxyName" .) $sa.name }}{{ else }}{{ $sa.name }}{{ end }}
{{- end }}

{{/*
The operator renders instance "default" into this ConfigMap in its --namespace (operator/render);
the proxies mount it at cardinal.policiesPath and pass that as --config. The operator's
--proxy-config-path must be the same path: the configuration hash a proxy reports depends on it.
*/}}
{{- define "cardinal.policiesConfigMap" -}}cardinal-proxy-default-policies{{- end }}
{{- define "cardinal.policiesPath" -}}/etc/cardinal/policies{{- end }}

{{/*
The labels of an object: call with (dict "root" $ "component" "proxy" "extra" .Values.proxy.podLabels);
component and extra are optional. Built as one map, so that a key given twice (commonLabels,
podLabels) appears once: the chart's own labels win, then extra, then commonLabels.
*/}}
{{- define "cardinal.componentLabels" -}}
{{- $root := .root }}
{{- $l := dict
  "helm.sh/chart" (printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_")
  "app.kubernetes.io/name" (include "cardinal.name" $root)
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/version" $root.Chart.AppVersion
  "app.kubernetes.io/managed-by" $root.Release.Service
  "app.kubernetes.io/part-of" "cardinal" }}
{{- with .component }}{{ $_ := set $l "app.kubernetes.io/component" . }}{{ end }}
{{- toYaml (merge $l (.extra | default dict) ($root.Values.commonLabels | default dict)) }}
{{- end }}

{{/* The labels of an object that belongs to no component; call with $. */}}
{{- define "cardinal.labels" -}}
{{- include "cardinal.componentLabels" (dict "root" .) }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "proxy"). */}}
{{- define "cardinal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cardinal.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* registry/repository:tag@digest; call with (dict "root" $ "image" .Values.proxy.image). */}}
{{- define "cardinal.image" -}}
{{- $ref := .image.repository }}
{{- with .image.registry }}{{ $ref = printf "%s/%s" . $ref }}{{ end }}
{{- $ref = printf "%s:%s" $ref (default .root.Chart.AppVersion .image.tag) }}
{{- with .image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end }}
{{- $ref }}
{{- end }}

{{/*
A probe: the values' settings, with an httpGet on path and port (and scheme) unless they set a
handler themselves. Call with (dict "probe" .Values.proxy.livenessProbe "path" "/-/healthy"
"port" "http" "scheme" "HTTPS"); renders nothing when the probe has enabled: false.
*/}}
{{- define "cardinal.probe" -}}
{{- $p := omit .probe "enabled" }}
{{- if not (or (hasKey $p "httpGet") (hasKey $p "exec") (hasKey $p "tcpSocket") (hasKey $p "grpc")) }}
{{- $get := dict "path" .path "port" .port }}
{{- with .scheme }}{{ $_ := set $get "scheme" . }}{{ end }}
{{- $_ := set $p "httpGet" $get }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/*
Pull secrets, priorityClassName, nodeSelector, tolerations, affinity (or the anti-affinity
preset) and topology spread of a pod spec; call with (dict "root" $ "pod" .Values.proxy "component" "proxy").
*/}}
{{- define "cardinal.placement" -}}
{{- $selector := include "cardinal.selectorLabels" (dict "root" .root "component" .component) | fromYaml }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .pod.affinity }}
affinity:
  {{- toYaml .pod.affinity | nindent 2 }}
{{- else if eq .pod.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $selector | nindent 14 }}
{{- else if eq .pod.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- toYaml $selector | nindent 12 }}
{{- end }}
{{- with .pod.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- $c := deepCopy . }}
  {{- if not (hasKey $c "labelSelector") }}{{ $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}{{ end }}
  - {{- toYaml $c | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Whether to render ServiceMonitors: serviceMonitor.enabled when set, else whether the cluster
serves monitoring.coreos.com/v1 ServiceMonitor. Helm drops a null value, so unset reads as nil.
*/}}
{{- define "cardinal.serviceMonitors" -}}
{{- $enabled := .Values.serviceMonitor.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" }}true{{ end }}
{{- else if $enabled }}true{{ end }}
{{- end }}

{{/* The shared limit store's URL: proxy.limits.store.url, else the bundled Redis when redis.enabled, else empty. */}}
{{- define "cardinal.limitsStoreUrl" -}}
{{- if .Values.proxy.limits.store.url -}}
{{- .Values.proxy.limits.store.url -}}
{{- else if .Values.redis.enabled -}}
redis://{{ include "cardinal.proxyName" . }}-redis:6379
{{- end -}}
{{- end }}

{{/* The same for the PrometheusRule, with prometheusRule.enabled. */}}
{{- define "cardinal.prometheusRule" -}}
{{- $enabled := .Values.prometheusRule.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule" }}true{{ end }}
{{- else if $enabled }}true{{ end }}
{{- end }}

{{/* The upstream, required when the chart installs or upgrades proxies; `helm lint` gets a stand-in. */}}
{{- define "cardinal.upstream" -}}
{{- if .Values.upstream }}{{ .Values.upstream }}
{{- else if or .Release.IsInstall .Release.IsUpgrade }}
{{- fail "upstream is required in gateway mode: the receiver's remote-write URL, e.g. --set upstream=http://prometheus.monitoring:9090/api/v1/write (or --set mode=sidecar to run only the operator)" }}
{{- else }}http://upstream.invalid/api/v1/write{{ end }}
{{- end }}

{{/* Whether the webhook takes its certificates from cert-manager (operator.webhook.certManager, else whether it is served). */}}
{{- define "cardinal.webhookCertManager" -}}
{{- $enabled := .Values.operator.webhook.certManager }}
{{- if kindIs "invalid" $enabled }}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate" }}true{{ end }}
{{- else if $enabled }}true{{ end }}
{{- end }}

{{- define "cardinal.webhookConfiguration" -}}{{ include "cardinal.fullname" . }}-metricpolicies{{- end }}
{{- define "cardinal.webhookSecret" -}}{{ include "cardinal.fullname" . }}-webhook-tls{{- end }}

{{/*
A number as a flag's decimal: Go's default format writes 1e-05 and 1e+06, which the binaries'
flag parsers refuse. Six decimals at most, trailing zeros trimmed (20, 0.5).
*/}}
{{- define "cardinal.decimal" -}}
{{- regexReplaceAll "\\.?0+$" (printf "%f" (float64 .)) "" }}
{{- end }}
