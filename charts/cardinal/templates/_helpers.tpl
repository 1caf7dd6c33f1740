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

{{/*
The operator renders instance "default" into this ConfigMap in its --namespace (operator/render);
the proxies mount it at cardinal.policiesPath and pass that as --config. The operator's
--proxy-config-path must be the same path: the configuration hash a proxy reports depends on it.
*/}}
{{- define "cardinal.policiesConfigMap" -}}cardinal-proxy-default-policies{{- end }}
{{- define "cardinal.policiesPath" -}}/etc/cardinal/policies{{- end }}

{{- define "cardinal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cardinal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cardinal
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "proxy"). */}}
{{- define "cardinal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cardinal.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cardinal.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The pod's securityContext: both images run as the distroless nonroot user 65532. */}}
{{- define "cardinal.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cardinal.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* nodeSelector, tolerations, affinity, priorityClassName and pull secrets of a pod spec; call with (dict "root" $ "pod" .Values.proxy). */}}
{{- define "cardinal.placement" -}}
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
{{- with .pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
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
