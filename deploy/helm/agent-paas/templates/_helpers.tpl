{{/* Chart name. */}}
{{- define "agent-paas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (release-chart, or the release name when it contains the chart name). */}}
{{- define "agent-paas.fullname" -}}
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

{{- define "agent-paas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "agent-paas.labels" -}}
helm.sh/chart: {{ include "agent-paas.chart" . }}
{{ include "agent-paas.instanceLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agent-paas.instanceLabels" -}}
app.kubernetes.io/name: {{ include "agent-paas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server's pods (not the migration Job's, which must get no traffic). */}}
{{- define "agent-paas.selectorLabels" -}}
{{ include "agent-paas.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "agent-paas.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding DATABASE_URL, REDIS_URL and the other secrets. */}}
{{- define "agent-paas.secretName" -}}
{{- .Values.existingSecret | default (include "agent-paas.fullname" .) }}
{{- end }}

{{/* Secrets the server cannot start without (in production). */}}
{{- define "agent-paas.requiredSecretKeys" -}}
DATABASE_URL,REDIS_URL,PAAS_JWT_SECRET,PAAS_MASTER_KEY
{{- end }}

{{/* Secrets the server reads when present. */}}
{{- define "agent-paas.optionalSecretKeys" -}}
PAAS_JWT_SECRET_PREVIOUS,PAAS_MASTER_KEY_PREVIOUS,PAAS_OPERATOR_TOKEN,PAAS_METRICS_TOKEN,OPENAI_API_KEY,ANTHROPIC_API_KEY,ZHIPUAI_API_KEY
{{- end }}

{{/*
Refuses values the server would refuse at start-up, so that `helm install` fails instead of
the pods (rules: crates/api/src/config.rs, docs/operations.md "Production checklist").
*/}}
{{- define "agent-paas.validate" -}}
{{- $required := splitList "," (include "agent-paas.requiredSecretKeys" .) }}
{{- $known := concat $required (splitList "," (include "agent-paas.optionalSecretKeys" .)) }}
{{- range $name, $_ := .Values.secrets }}
{{- if not (has $name $known) }}
{{- fail (printf "secrets.%s: not a secret the server reads (known: %s)" $name (join ", " $known)) }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.env }}
{{- if has $name $known }}
{{- fail (printf "env.%s: put secrets in `secrets` or `existingSecret`, not in `env`" $name) }}
{{- end }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- range $required }}
{{- if not (index $.Values.secrets .) }}
{{- fail (printf "secrets.%s is required (or set existingSecret to a Secret that has it)" .) }}
{{- end }}
{{- end }}
{{- $production := has (toString (index .Values.env "PAAS_ENV" | default "development")) (list "production" "prod") }}
{{- if and $production (lt (len (toString .Values.secrets.PAAS_JWT_SECRET)) 32) }}
{{- fail "secrets.PAAS_JWT_SECRET must be at least 32 bytes: generate one with `openssl rand -base64 48`" }}
{{- end }}
{{- range list "PAAS_MASTER_KEY" "PAAS_MASTER_KEY_PREVIOUS" }}
{{- $key := toString (index $.Values.secrets . | default "") }}
{{- if and $key (ne (len (b64dec $key)) 32) }}
{{- fail (printf "secrets.%s must be base64 of exactly 32 bytes: generate one with `openssl rand -base64 32`" .) }}
{{- end }}
{{- end }}
{{- $operator := toString (.Values.secrets.PAAS_OPERATOR_TOKEN | default "") }}
{{- if and $operator (lt (len $operator) 32) }}
{{- fail "secrets.PAAS_OPERATOR_TOKEN must be at least 32 characters" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of the server and of the migration Job (every command reads the full configuration). */}}
{{- define "agent-paas.env" -}}
- name: PAAS_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
{{- range $name, $value := .Values.env }}
{{- if and (ne $name "PAAS_LISTEN_ADDR") (not (kindIs "invalid" $value)) }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | default "agent-paas" | quote }}
{{- end }}
{{- $secret := include "agent-paas.secretName" . }}
{{- range splitList "," (include "agent-paas.requiredSecretKeys" .) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- range splitList "," (include "agent-paas.optionalSecretKeys" .) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the server and the migration Job. */}}
{{- define "agent-paas.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.serviceAccountName }}
serviceAccountName: {{ .Values.serviceAccountName }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
