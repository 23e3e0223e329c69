{{/* Chart name, truncated to a DNS label. */}}
{{- define "pql-streams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already contains it. */}}
{{- define "pql-streams.fullname" -}}
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

{{- define "pql-streams.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pql-streams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pql-streams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pql-streams.labels" -}}
helm.sh/chart: {{ include "pql-streams.chart" . }}
{{ include "pql-streams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: pql-streams
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pql-streams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pql-streams.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pql-streams.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The model parsed from values; fails early on YAML that has no name. */}}
{{- define "pql-streams.modelName" -}}
{{- $model := fromYaml .Values.model.content }}
{{- if hasKey $model "Error" }}
{{- fail (printf "model.content is not valid YAML: %s" $model.Error) }}
{{- end }}
{{- required "model.content must have a top-level `name`" $model.name }}
{{- end }}

{{/* Consumer group id = the worker's app id: appId, or "pql-<model name>" (the worker's default). */}}
{{- define "pql-streams.appId" -}}
{{- .Values.appId | default (printf "pql-%s" (include "pql-streams.modelName" .)) }}
{{- end }}

{{- define "pql-streams.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "pql-streams.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{- define "pql-streams.validate" -}}
{{- if gt (int .Values.replicaCount) (int .Values.kafka.partitions) }}
{{- fail (printf "replicaCount (%d) > kafka.partitions (%d): Kafka assigns each partition to one worker, the extra pods would stay idle and never become ready" (int .Values.replicaCount) (int .Values.kafka.partitions)) }}
{{- end }}
{{- if ge (int .Values.standbyReplicas) (int .Values.replicaCount) }}
{{- if gt (int .Values.standbyReplicas) 0 }}
{{- fail (printf "standbyReplicas (%d) needs at least %d replicas: a standby must live on another worker than its active copy" (int .Values.standbyReplicas) (add 1 .Values.standbyReplicas)) }}
{{- end }}
{{- end }}
{{- if and (include "pql-streams.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret (a Secret with the SASL username and password)" .Values.kafka.securityProtocol) }}
{{- end }}
{{- end }}

{{/*
The shadow model files, as PQL_SHADOW takes them: paths separated by spaces.
*/}}
{{- define "pql-streams.shadowPaths" -}}
{{- $paths := list -}}
{{- range $name, $_ := .Values.model.shadows -}}
{{- $paths = append $paths (printf "/etc/pql/model/shadow-%s.yaml" $name) -}}
{{- end -}}
{{- join " " $paths -}}
{{- end -}}

{{/*
pql notify's pods: labels of their own, so the worker StatefulSet's selector never matches them.
*/}}
{{- define "pql-streams.notifySelectorLabels" -}}
app.kubernetes.io/name: {{ include "pql-streams.name" . }}-notify
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pql-streams.notifyLabels" -}}
helm.sh/chart: {{ include "pql-streams.chart" . }}
{{ include "pql-streams.notifySelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: notify
app.kubernetes.io/part-of: pql-streams
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
