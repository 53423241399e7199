{{/*
Chart name, at most 63 characters (a DNS label).
*/}}
{{- define "borcelle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name, plus the chart name unless the release
name already contains it; at most 63 characters.
*/}}
{{- define "borcelle.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "borcelle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries.
*/}}
{{- define "borcelle.labels" -}}
helm.sh/chart: {{ include "borcelle.chart" . }}
{{ include "borcelle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: borcelle
{{- end }}

{{/*
Labels that select the release's pods; they never change across upgrades.
*/}}
{{- define "borcelle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "borcelle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the API's service account.
*/}}
{{- define "borcelle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "borcelle.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository and tag (the chart's appVersion when no tag is given).
*/}}
{{- define "borcelle.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Name of the Secret that holds DATABASE_URL and the mail credentials; it must exist before install.
*/}}
{{- define "borcelle.secretName" -}}
{{- required "existingSecret: name a Secret that holds DATABASE_URL" .Values.existingSecret }}
{{- end }}

{{/*
Environment shared by the API and the migration Job.
*/}}
{{- define "borcelle.commonEnv" -}}
- name: BORCELLE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end }}
