{{/* Names ---------------------------------------------------------------- */}}

{{- define "parkme.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; the release name alone when it already holds the chart name. */}}
{{- define "parkme.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service that gives the StatefulSet's pods stable DNS names. */}}
{{- define "parkme.headlessName" -}}
{{- printf "%s-headless" (include "parkme.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "parkme.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parkme.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "parkme.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "parkme.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "parkme.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parkme.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "parkme.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Secrets ---------------------------------------------------------------- */}}

{{- define "parkme.authSecretName" -}}
{{- default (include "parkme.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* Storage ---------------------------------------------------------------- */}}

{{/* PARKME_STORAGE: `embedded`, or scylla://h1:9042,h2:9042/keyspace. */}}
{{- define "parkme.storageURL" -}}
{{- if eq .Values.storage.mode "scylla" }}
{{- $hosts := list }}
{{- range .Values.scylla.hosts }}
{{- if regexMatch ":[0-9]+$" . }}
{{- $hosts = append $hosts . }}
{{- else }}
{{- $hosts = append $hosts (printf "%s:%d" . (int $.Values.scylla.port)) }}
{{- end }}
{{- end }}
{{- printf "scylla://%s/%s" (join "," $hosts) .Values.scylla.keyspace }}
{{- else }}
{{- .Values.storage.mode }}
{{- end }}
{{- end }}

{{/* Pods the release may run at once (the HPA's maximum when it is on). */}}
{{- define "parkme.maxPods" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.maxReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* Rules across several values, which the schema cannot say clearly.
     Included by the StatefulSet, so every render checks them. */}}
{{- define "parkme.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.storage.mode "scylla") (empty $v.scylla.hosts) }}
{{- fail "storage.mode=scylla needs scylla.hosts (at least one CQL contact point)" }}
{{- end }}
{{- if eq $v.storage.mode "embedded" }}
{{- if $v.autoscaling.enabled }}
{{- fail "storage.mode=embedded keeps the data on one pod's volume: autoscaling.enabled must be false (use storage.mode=scylla to scale out)" }}
{{- end }}
{{- if ne (int $v.replicaCount) 1 }}
{{- fail "storage.mode=embedded keeps the data on one pod's volume: replicaCount must be 1 (use storage.mode=scylla to run several pods)" }}
{{- end }}
{{- end }}
{{- if and (gt (int (include "parkme.maxPods" .)) 1) (not (or $v.redis.url $v.redis.existingSecret)) }}
{{- fail "more than one pod needs Redis for cross-node fan-out and shared rate limits: set redis.url or redis.existingSecret" }}
{{- end }}
{{- if and $v.redis.url $v.redis.existingSecret }}
{{- fail "set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if contains "@" $v.redis.url }}
{{- fail "redis.url carries credentials and would be stored in a ConfigMap: put the URL in a Secret and name it in redis.existingSecret" }}
{{- end }}
{{- if and $v.auth.existingSecret (or $v.auth.adminToken $v.auth.jwtSecret) }}
{{- fail "auth.existingSecret is set: leave auth.adminToken and auth.jwtSecret empty (the values come from that Secret)" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
