{{/*
The release's name, used as the prefix of every object: the release name
when it already holds the chart's name (so `helm install cascade` gives
cascade-exporter, the names of the plain manifests), else release-chart.
*/}}
{{- define "cascade.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Labels of every object of a component: its name (also the selector, kept as
the plain manifests had it so an applied Deployment can be updated in place),
the release and the project.
*/}}
{{- define "cascade.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: cascade
{{- end -}}

{{/* The image reference: repository and digest, else repository and tag. */}}
{{- define "cascade.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Names of the exporter's objects and its service account. */}}
{{- define "cascade.exporter" -}}{{ include "cascade.fullname" . }}-exporter{{- end -}}
{{- define "cascade.run" -}}{{ include "cascade.fullname" . }}-run{{- end -}}

{{/*
Relabelings that set the target labels cluster and region, then the user's.
*/}}
{{- define "cascade.relabelings" -}}
{{- with .Values.cluster }}
- action: replace
  targetLabel: cluster
  replacement: {{ . | quote }}
{{- end }}
{{- with .Values.region }}
- action: replace
  targetLabel: region
  replacement: {{ . | quote }}
{{- end }}
{{- with .Values.serviceMonitor.relabelings }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The target labels of a static target of cascade run. */}}
{{- define "cascade.targetLabels" -}}
{{- $labels := dict -}}
{{- with .Values.cluster }}{{ $_ := set $labels "cluster" . }}{{ end -}}
{{- with .Values.region }}{{ $_ := set $labels "region" . }}{{ end -}}
{{- toJson $labels -}}
{{- end -}}

{{/*
A file of the chart embedded as it is, indented by .indent, with no
trailing white space on its empty lines: the rule files and dashboards.
*/}}
{{- define "cascade.embed" -}}
{{- regexReplaceAll "(?m)^ +$" (.text | trimSuffix "\n" | nindent .indent) "" -}}
{{- end -}}
