{{- define "kura.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kura.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kura.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kura.validate" -}}
{{- if not (has .Values.mode (list "embedded" "scaled")) -}}
{{- fail (printf "mode must be embedded or scaled, not %q" .Values.mode) -}}
{{- end -}}
{{- if eq .Values.mode "scaled" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "scaled mode needs database.existingSecret (a Secret with the PostgreSQL URL)" -}}
{{- end -}}
{{- if not .Values.s3.bucket -}}
{{- fail "scaled mode needs s3.bucket" -}}
{{- end -}}
{{- if not .Values.masterKey.existingSecret -}}
{{- fail "scaled mode needs masterKey.existingSecret (one master key shared by every pod)" -}}
{{- end -}}
{{- if lt (int .Values.replicas) 1 -}}
{{- fail "replicas must be at least 1" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* One kura.toml value: strings quoted, booleans and integers bare, lists as arrays. */}}
{{- define "kura.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ . | quote }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if ne (float64 (int64 .)) (float64 .) -}}
{{- fail (printf "config values must be integers, not %v" .) -}}
{{- end -}}
{{ int64 . }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "kura.tomlValue" $v }}{{ end }}]
{{- else -}}
{{- fail (printf "config values must be strings, integers, booleans or lists of them, not %s" (kindOf .)) -}}
{{- end -}}
{{- end -}}
