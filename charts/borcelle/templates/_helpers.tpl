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
The name of one component's objects: "<fullname>-<suffix>", at most 63 characters.
Call with (list $ "operator").
*/}}
{{- define "borcelle.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "borcelle.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" }}
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
Labels of one component's objects. Call with (list $ "api").
*/}}
{{- define "borcelle.componentLabels" -}}
{{ include "borcelle.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Labels that select the release's pods; they never change across upgrades.
*/}}
{{- define "borcelle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "borcelle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select one component's pods. Call with (list $ "api").
*/}}
{{- define "borcelle.componentSelectorLabels" -}}
{{ include "borcelle.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
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
Name of the operator's service account.
*/}}
{{- define "borcelle.operatorServiceAccountName" -}}
{{- default (include "borcelle.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- end }}

{{/*
Name of the service account of the worker Deployment and of the operator's occurrence Jobs.
*/}}
{{- define "borcelle.workerServiceAccountName" -}}
{{- default (include "borcelle.componentName" (list . "worker")) .Values.worker.serviceAccount.name }}
{{- end }}

{{/*
Name of the service account of the inbound SMTP receiver (no token, no RBAC).
*/}}
{{- define "borcelle.inboundServiceAccountName" -}}
{{- default (include "borcelle.componentName" (list . "inbound")) .Values.inbound.serviceAccount.name }}
{{- end }}

{{/*
The inbound receiver's health port: /healthz, /readyz and /metrics (BORCELLE_INBOUND_HEALTH_LISTEN).
*/}}
{{- define "borcelle.inboundHealthPort" -}}
8083
{{- end }}

{{/*
Where the inbound receiver reads its STARTTLS certificate (tls.crt, tls.key of inbound.tls.existingSecret).
*/}}
{{- define "borcelle.inboundTlsDir" -}}
/etc/borcelle/inbound-tls
{{- end }}

{{/*
Name of the ConfigMap of non-secret settings.
*/}}
{{- define "borcelle.configMapName" -}}
{{- include "borcelle.componentName" (list . "config") }}
{{- end }}

{{/*
The image reference: repository and tag (the chart's appVersion when no tag is given).
*/}}
{{- define "borcelle.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Name of the Secret that holds DATABASE_URL and the other credentials; it must exist before install.
*/}}
{{- define "borcelle.secretName" -}}
{{- required "existingSecret: name a Secret that holds DATABASE_URL" .Values.existingSecret }}
{{- end }}

{{/*
Who runs reminders and broadcasts, as BORCELLE_SCHEDULER understands it. auto: with the operator,
`kubernetes` (the API keeps them as ScheduledReminder/Broadcast resources, the operator runs them);
without it, `in-process` (the API's own scheduler over PostgreSQL).
*/}}
{{- define "borcelle.schedulerMode" -}}
{{- if eq .Values.scheduler "auto" }}
{{- ternary "kubernetes" "in-process" .Values.operator.enabled }}
{{- else }}
{{- .Values.scheduler }}
{{- end }}
{{- end }}

{{/*
Whether the API calls the Kubernetes API (scheduler kubernetes): it then gets a token and a Role.
*/}}
{{- define "borcelle.apiUsesKubernetes" -}}
{{- if eq (include "borcelle.schedulerMode" .) "kubernetes" }}true{{ end }}
{{- end }}

{{/*
The URL users reach Borcelle at: publicUrl, else the first ingress host, else the port-forward URL.
*/}}
{{- define "borcelle.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host }}
{{- else }}
{{- "http://localhost:8080" }}
{{- end }}
{{- end }}

{{/*
envFrom of every container that runs `borcelle` (API, worker, and the operator's Jobs, which list
them in the same order): the Secret, then the ConfigMap; the later source wins on a shared key.
*/}}
{{- define "borcelle.envFrom" -}}
- secretRef:
    name: {{ include "borcelle.secretName" . }}
- configMapRef:
    name: {{ include "borcelle.configMapName" . }}
{{- end }}

{{/*
Pod annotations that roll the pods when the settings change.
*/}}
{{- define "borcelle.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/*
Whether attachments live on a local volume (mounted at storage.local.dir's parent).
*/}}
{{- define "borcelle.localStorage" -}}
{{- if eq .Values.storage.backend "local" }}true{{ end }}
{{- end }}

{{/*
Volumes of the API and the worker: a scratch /tmp, and the attachment directory with local storage.
*/}}
{{- define "borcelle.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.mail.dkim.existingSecret }}
- name: dkim
  secret:
    secretName: {{ . }}
    # Readable by the pod's group (fsGroup) only.
    defaultMode: 0440
    items:
      - key: {{ $.Values.mail.dkim.key }}
        path: {{ base (include "borcelle.dkimKeyFile" $) }}
{{- end }}
{{- if include "borcelle.localStorage" . }}
- name: attachments
  {{- if .Values.storage.local.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.storage.local.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.storage.local.sizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "borcelle.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.mail.dkim.existingSecret }}
- name: dkim
  mountPath: {{ dir (include "borcelle.dkimKeyFile" .) }}
  readOnly: true
{{- end }}
{{- if include "borcelle.localStorage" . }}
- name: attachments
  mountPath: {{ .Values.storage.local.dir }}
{{- end }}
{{- end }}

{{/*
Where the API and the worker read the DKIM key (mail.dkim.existingSecret); empty without one.
*/}}
{{- define "borcelle.dkimKeyFile" -}}
{{- if .Values.mail.dkim.existingSecret }}
{{- if not .Values.mail.dkim.selector }}
{{- fail "mail.dkim.existingSecret needs mail.dkim.selector: the name the public key is published under" }}
{{- end }}
{{- if eq (include "borcelle.schedulerMode" .) "kubernetes" }}
{{- fail "mail.dkim.existingSecret is mounted into the API and worker pods only, and the operator's Jobs send mail too: put the PEM into existingSecret as BORCELLE_DKIM_PRIVATE_KEY instead (keep mail.dkim.selector), or use scheduler in-process" }}
{{- end }}
{{- "/etc/borcelle/dkim/private-key.pem" }}
{{- end }}
{{- end }}

{{/*
Scheduling constraints shared by every pod.
*/}}
{{- define "borcelle.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Names of the imagePullSecrets, comma-separated (empty without any): the operator puts them into the
pod spec of its occurrence Jobs (BORCELLE_WORKER_IMAGE_PULL_SECRETS), as borcelle.scheduling does
into the chart's own pods.
*/}}
{{- define "borcelle.imagePullSecretNames" -}}
{{- $names := list }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/*
Whether the ServiceMonitors are rendered: asked for (metrics.serviceMonitor.enabled) and the
cluster serves their kind (the Prometheus Operator's CRD). Without it, installing them would fail
with `no matches for kind "ServiceMonitor"`. `helm template` knows only the built-in kinds unless
given `--api-versions monitoring.coreos.com/v1/ServiceMonitor`.
*/}}
{{- define "borcelle.serviceMonitors" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end }}
{{- end }}

{{/*
Name of the operator's leader-election Lease.
*/}}
{{- define "borcelle.leaseName" -}}
{{- default (include "borcelle.componentName" (list . "operator")) .Values.operator.leaseName }}
{{- end }}

{{/*
Whether the operator's validating admission webhook is rendered (operator.webhook.enabled, with
the operator): its ValidatingWebhookConfiguration, Service, certificate and RBAC.
*/}}
{{- define "borcelle.webhook" -}}
{{- if and .Values.operator.enabled .Values.operator.webhook.enabled }}true{{ end }}
{{- end }}

{{/*
Whether cert-manager issues the webhook's certificate: operator.webhook.certManager.enabled true,
or auto (the default) on a cluster that serves cert-manager.io/v1 Certificate (`helm template`
needs --api-versions cert-manager.io/v1/Certificate to see it). Otherwise the operator keeps a
certificate of its own in a Secret and writes its CA into the webhook configuration.
*/}}
{{- define "borcelle.webhookCertManager" -}}
{{- if include "borcelle.webhook" . }}
{{- $mode := toString .Values.operator.webhook.certManager.enabled }}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate")) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Name of the ValidatingWebhookConfiguration (cluster-scoped): "<fullname>-operator".
*/}}
{{- define "borcelle.webhookConfigurationName" -}}
{{- include "borcelle.componentName" (list . "operator") }}
{{- end }}

{{/*
Name of the Service the API server reaches the webhook through (the certificate's DNS names).
*/}}
{{- define "borcelle.webhookServiceName" -}}
{{- include "borcelle.componentName" (list . "operator-webhook") }}
{{- end }}

{{/*
Name of the Secret the operator keeps its own webhook certificate in (without cert-manager).
*/}}
{{- define "borcelle.webhookSecretName" -}}
{{- include "borcelle.componentName" (list . "operator-webhook-tls") }}
{{- end }}

{{/*
Name of cert-manager's Issuer and Certificate for the webhook, and of the Certificate's Secret.
*/}}
{{- define "borcelle.webhookCertificateName" -}}
{{- include "borcelle.componentName" (list . "operator-webhook") }}
{{- end }}

{{- define "borcelle.webhookCertificateSecretName" -}}
{{- include "borcelle.componentName" (list . "operator-webhook-cert") }}
{{- end }}

{{/*
Where the operator reads the cert-manager certificate (tls.crt, tls.key) from.
*/}}
{{- define "borcelle.webhookCertDir" -}}
/etc/borcelle/webhook-tls
{{- end }}

{{/*
The DNS names of the webhook Service, as the operator puts them in its own certificate.
*/}}
{{- define "borcelle.webhookDnsNames" -}}
{{- $svc := include "borcelle.webhookServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
The namespaces the webhook never applies to, as a JSON list: the cluster's own, the release's (the
operator's absence can never lock them out), and operator.webhook.excludeNamespaces.
*/}}
{{- define "borcelle.webhookExcludedNamespaces" -}}
{{- concat (list "kube-system" "kube-public" "kube-node-lease") .Values.operator.webhook.excludeNamespaces | uniq | toJson }}
{{- end }}
