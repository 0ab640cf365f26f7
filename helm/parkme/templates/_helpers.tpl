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

{{/* Cluster ---------------------------------------------------------------- */}}

{{/* "true" when Redis is configured, by URL or by Secret. */}}
{{- define "parkme.redisSet" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* "true" when every pod is a cluster node: CQL storage and Redis (contract §1, §7). */}}
{{- define "parkme.clusterMode" -}}
{{- if and (eq .Values.storage.mode "scylla") (include "parkme.redisSet" .) }}true{{ end }}
{{- end }}

{{- define "parkme.clusterSecretName" -}}
{{- default (printf "%s-cluster" (include "parkme.fullname" . | trunc 55 | trimSuffix "-")) .Values.cluster.existingSecret }}
{{- end }}

{{/* PARKME_ADVERTISE_URL: the pod's own name in the headless Service. Kubernetes
     expands $(PARKME_NODE_ID), which must be defined before it in env. */}}
{{- define "parkme.advertiseURL" -}}
{{- printf "http://$(PARKME_NODE_ID).%s.%s.svc.%s:%d" (include "parkme.headlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.containerPort) }}
{{- end }}

{{/* Seconds a stopping pod needs before Kubernetes may kill it: the preStop
     pause, then (cluster mode) the handoff of its facilities, at worst twice the
     lease when a new owner has to wait one out, then the engine's 10 s drain. */}}
{{- define "parkme.stopBudgetSeconds" -}}
{{- $handoff := 0 }}
{{- if include "parkme.clusterMode" . }}
{{- $handoff = div (add (mul 2 (int .Values.cluster.leaseMs)) 999) 1000 }}
{{- end }}
{{- add (int .Values.preStop.sleepSeconds) $handoff 10 }}
{{- end }}

{{/* Backups ---------------------------------------------------------------- */}}

{{- define "parkme.backupClaimName" -}}
{{- default (printf "%s-backups" (include "parkme.fullname" . | trunc 55 | trimSuffix "-")) .Values.backup.persistence.existingClaim }}
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
{{- fail "storage.mode=embedded keeps the data on one pod's volume: autoscaling.enabled must be false (use storage.mode=scylla and Redis to scale out)" }}
{{- end }}
{{- if ne (int $v.replicaCount) 1 }}
{{- fail "storage.mode=embedded keeps the data on one pod's volume: replicaCount must be 1 (use storage.mode=scylla and Redis to run a cluster)" }}
{{- end }}
{{- if $v.backup.enabled }}
{{- fail "backup.enabled needs storage.mode=scylla: the embedded store is locked by the running pod, so a CronJob cannot open it" }}
{{- end }}
{{- end }}
{{- if and (or $v.autoscaling.enabled (gt (int (include "parkme.maxPods" .)) 1)) (not (include "parkme.redisSet" .)) }}
{{- fail "more than one pod (replicaCount > 1 or autoscaling.enabled) makes a cluster, which needs Redis for membership, leases and fan-out: set redis.url or redis.existingSecret" }}
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
{{- if and $v.cluster.existingSecret $v.cluster.secret }}
{{- fail "cluster.existingSecret is set: leave cluster.secret empty (the value comes from that Secret)" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- $budget := int (include "parkme.stopBudgetSeconds" .) }}
{{- if le (int $v.terminationGracePeriodSeconds) $budget }}
{{- $why := "" }}
{{- if include "parkme.clusterMode" . }}
{{- $why = printf "preStop.sleepSeconds %d + facility handoff %d (2 x cluster.leaseMs) + engine drain 10" (int $v.preStop.sleepSeconds) (sub $budget (add (int $v.preStop.sleepSeconds) 10)) }}
{{- else }}
{{- $why = printf "preStop.sleepSeconds %d + engine drain 10" (int $v.preStop.sleepSeconds) }}
{{- end }}
{{- fail (printf "terminationGracePeriodSeconds=%d does not cover a pod's stop (%s = %d s): raise it above %d" (int $v.terminationGracePeriodSeconds) $why $budget $budget) }}
{{- end }}
{{- end }}

{{/* One `key: base64` line of a rendered Secret, from (list key given existing length):
     the given value, else the one already in the cluster, else a new random one. */}}
{{- define "parkme.secretEntry" -}}
{{- $key := index . 0 }}
{{- $given := index . 1 }}
{{- $existing := index . 2 }}
{{- if $given }}
{{- printf "%s: %s" $key ($given | b64enc | quote) }}
{{- else if hasKey $existing $key }}
{{- printf "%s: %s" $key (index $existing $key | quote) }}
{{- else }}
{{- printf "%s: %s" $key (randAlphaNum (index . 3) | b64enc | quote) }}
{{- end }}
{{- end }}

{{/* Backup job steps (POSIX sh and the find options busybox and GNU share: no -delete). The chart tests run them. */}}
{{- define "parkme.backupStampScript" -}}
set -eu
date -u +%Y%m%dT%H%M%SZ > "$STAMP_FILE"
{{- end }}

{{- define "parkme.backupRetainScript" -}}
set -eu
final="$BACKUP_DIR/parkme-$(cat "$STAMP_FILE").pkb"
mv "$BACKUP_DIR/.partial-$POD_NAME.pkb" "$final"
echo "backup: $final, $(wc -c < "$final") bytes"
# find -mtime +N matches files modified at least N+1 whole days ago.
echo "deleting backups older than $RETENTION_DAYS days:"
find "$BACKUP_DIR" -maxdepth 1 -type f -name 'parkme-*.pkb' -mtime +$((RETENTION_DAYS - 1)) -print -exec rm -f {} +
# Partial files of runs that died (kill -9, a lost node) are not backups:
# .partial-<pod>.pkb (a run that died before this step) and the file
# `parkme backup` writes before renaming it to --out (..partial-<pod>.pkb.partial-<pid>).
echo "deleting unfinished backups older than a day:"
find "$BACKUP_DIR" -maxdepth 1 -type f \( -name '.partial-*.pkb' -o -name '..partial-*.pkb.partial-*' \) -mmin +1440 -print -exec rm -f {} +
{{- end }}
