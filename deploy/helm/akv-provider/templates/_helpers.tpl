{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "akv-provider.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, or release name + chart name (once). */}}
{{- define "akv-provider.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "akv-provider.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "akv-provider.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "akv-provider.selectorLabels" -}}
app.kubernetes.io/name: {{ include "akv-provider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "akv-provider.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "akv-provider.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secrets-store-csi-driver
{{- end -}}

{{/* Image reference for one OS block: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "akv-provider.image" -}}
{{- $img := .os.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Cross-value checks the schema cannot express. */}}
{{- define "akv-provider.validate" -}}
{{- if and .Values.caBundle.configMapName .Values.caBundle.secretName -}}
{{- fail "caBundle: set configMapName or secretName, not both" -}}
{{- end -}}
{{- $driver := index .Values "secrets-store-csi-driver" -}}
{{- if $driver.install -}}
{{- if and .Values.linux.enabled (ne (toString ((($driver.linux) | default dict).providersDir)) .Values.linux.providersDir) -}}
{{- fail (printf "secrets-store-csi-driver.linux.providersDir (%v) must equal linux.providersDir (%s): the driver looks for the socket there" (($driver.linux) | default dict).providersDir .Values.linux.providersDir) -}}
{{- end -}}
{{- /* The driver chart writes windows.providersDir inside double quotes, so its value doubles each backslash. */ -}}
{{- $winDir := replace "\\\\" "\\" (toString ((($driver.windows) | default dict).providersDir)) -}}
{{- if and .Values.windows.enabled (ne $winDir .Values.windows.providersDir) -}}
{{- fail (printf "secrets-store-csi-driver.windows.providersDir (read as %s) must equal windows.providersDir (%s), written with each backslash doubled: the driver looks for the socket there" $winDir .Values.windows.providersDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Provider arguments shared by both OSes; .os is the OS block, .endpoint the socket URL. */}}
{{- define "akv-provider.args" -}}
- --endpoint={{ .endpoint }}
- --log-format-json={{ .root.Values.logFormatJSON }}
- -v={{ .root.Values.logVerbosity }}
- --healthz-port={{ .os.healthzPort }}
- --healthz-path={{ .os.healthzPath }}
- --healthz-timeout={{ .os.healthzTimeout }}
- --metrics-addr=:{{ .os.metricsPort }}
- --construct-pem-chain={{ .root.Values.constructPEMChain }}
- --write-cert-and-key-in-separate-files={{ .root.Values.writeCertAndKeyInSeparateFiles }}
- --cloud-name={{ .root.Values.cloudName }}
- --parallel-fetches={{ .root.Values.parallelFetches }}
- --result-cache-ttl={{ .root.Values.resultCacheTTL }}
- --vault-rate-limit={{ .root.Values.vaultRateLimit }}
- --vault-burst={{ .root.Values.vaultBurst }}
{{- end -}}

{{/* Ports and liveness probe shared by both OSes. */}}
{{- define "akv-provider.portsAndProbe" -}}
ports:
  - name: healthz
    containerPort: {{ .os.healthzPort }}
    protocol: TCP
  - name: metrics
    containerPort: {{ .os.metricsPort }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: {{ .os.healthzPath }}
    port: {{ .os.healthzPort }}
  initialDelaySeconds: 5
  periodSeconds: 30
  timeoutSeconds: 10
  failureThreshold: 3
{{- end -}}
