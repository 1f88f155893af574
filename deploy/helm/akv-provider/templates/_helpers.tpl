{{/* The name of Azure's chart, which names this chart's objects and selects its pods as there:
a release of Azure's chart then upgrades in place to this one (helm keeps a DaemonSet of the same
name and selector and rolls it), and what refers to them (RBAC and SCC bindings, monitoring,
kubectl selectors) keeps working. nameOverride replaces it, as there. */}}
{{- define "akv-provider.name" -}}
{{- default "csi-secrets-store-provider-azure" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, or release name + name (once), as Azure's chart. */}}
{{- define "akv-provider.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "akv-provider.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart creates the ServiceAccount: serviceAccount.create, and Azure's rbac.install. */}}
{{- define "akv-provider.createServiceAccount" -}}
{{- if and .Values.serviceAccount.create .Values.rbac.install -}}true{{- end -}}
{{- end -}}

{{/* The ServiceAccount: Azure's fixed name unless serviceAccount.name says otherwise; when the
chart does not create it, it must exist. */}}
{{- define "akv-provider.serviceAccountName" -}}
{{- default "csi-secrets-store-provider-azure" .Values.serviceAccount.name -}}
{{- end -}}

{{/* Azure's chart's selector, for both DaemonSets (their nodeSelectors keep them apart): the
selector cannot change on a DaemonSet, so an in-place upgrade from Azure's chart needs this one. */}}
{{- define "akv-provider.selectorLabels" -}}
app: {{ include "akv-provider.name" . }}
{{- end -}}

{{/* Pod labels: the chart's, the component, then the OS block's podLabels, which may not
replace the selector's app label. .os is the OS block, .component the component. */}}
{{- define "akv-provider.podLabels" -}}
{{- if hasKey (.os.podLabels | default dict) "app" -}}
{{- fail (printf "%s.podLabels.app: the DaemonSet selects its pods by app=%s; set nameOverride to change it" .osName (include "akv-provider.name" .root)) -}}
{{- end -}}
{{- include "akv-provider.labels" .root }}
{{ include "akv-provider.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .os.podLabels }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* The cluster's CA at the path the Kubernetes clients (and the identity-binding token proxy
connection, useAzureTokenProxy) read it from, as the automounted service account volume of
Azure's chart has it, but without the token: the provider never calls the Kubernetes API.
optional: a cluster without the kube-root-ca.crt ConfigMap still runs every other mode. */}}
{{- define "akv-provider.clusterCAVolumeMount" -}}
- name: cluster-ca
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}
{{- define "akv-provider.clusterCAVolume" -}}
- name: cluster-ca
  projected:
    sources:
      - configMap:
          name: kube-root-ca.crt
          optional: true
          items:
            - key: ca.crt
              path: ca.crt
{{- end -}}

{{/* A boolean value as "true"/"false": Azure's booleans may arrive as "" from `--set key=`. */}}
{{- define "akv-provider.bool" -}}
{{- if . -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* The Prometheus port of one OS: metricsAddr (Azure's value: "8898", ":8898" or 8898)
when set, else the OS block's metricsPort. */}}
{{- define "akv-provider.metricsPort" -}}
{{- $addr := toString (.root.Values.metricsAddr | default "") -}}
{{- if $addr -}}
{{- $port := atoi (trimPrefix ":" $addr) -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "metricsAddr %q: want a port number from 1 to 65535" $addr) -}}
{{- end -}}
{{- $port -}}
{{- else -}}
{{- .os.metricsPort -}}
{{- end -}}
{{- end -}}

{{/* Linux pod DNS policy: linux.dnsPolicy, else ClusterFirstWithHostNet with host networking
(so cluster names still resolve), else none (the cluster default, ClusterFirst). */}}
{{- define "akv-provider.dnsPolicy" -}}
{{- if .Values.linux.dnsPolicy -}}
{{- .Values.linux.dnsPolicy -}}
{{- else if .Values.linux.hostNetwork -}}
ClusterFirstWithHostNet
{{- end -}}
{{- end -}}

{{- define "akv-provider.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "akv-provider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
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
{{- range $osName := list "linux" "windows" -}}
{{- $os := index $.Values $osName -}}
{{- if and $os.enabled (eq (toString (include "akv-provider.metricsPort" (dict "os" $os "root" $))) (toString $os.healthzPort)) -}}
{{- fail (printf "%s: the metrics port (metricsAddr or %s.metricsPort) and %s.healthzPort are both %v; they must differ" $osName $osName $osName $os.healthzPort) -}}
{{- end -}}
{{- end -}}
{{- /* Only what this chart renders is compared: the driver's DaemonSet of an OS (its
linux.enabled, default true; windows.enabled, default false) beside this provider's. */ -}}
{{- $driver := index .Values "secrets-store-csi-driver" -}}
{{- if $driver.install -}}
{{- $driverLinux := ($driver.linux) | default dict -}}
{{- $driverWindows := ($driver.windows) | default dict -}}
{{- if and .Values.linux.enabled (ne (toString $driverLinux.enabled) "false") (ne (toString $driverLinux.providersDir) .Values.linux.providersDir) -}}
{{- fail (printf "secrets-store-csi-driver.linux.providersDir (%v) must equal linux.providersDir (%s): the driver looks for the socket there" $driverLinux.providersDir .Values.linux.providersDir) -}}
{{- end -}}
{{- /* The driver chart writes windows.providersDir inside double quotes, so its value doubles each backslash. */ -}}
{{- $winDir := replace "\\\\" "\\" (toString $driverWindows.providersDir) -}}
{{- if and .Values.windows.enabled (eq (toString $driverWindows.enabled) "true") (ne $winDir .Values.windows.providersDir) -}}
{{- fail (printf "secrets-store-csi-driver.windows.providersDir (read as %s) must equal windows.providersDir (%s), written with each backslash doubled: the driver looks for the socket there" $winDir .Values.windows.providersDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Provider arguments shared by both OSes; .os is the OS block, .endpoint the socket URL. */}}
{{- define "akv-provider.args" -}}
- --endpoint={{ .endpoint }}
- --log-format-json={{ include "akv-provider.bool" .root.Values.logFormatJSON }}
- -v={{ .root.Values.logVerbosity }}
- --healthz-port={{ .os.healthzPort }}
- --healthz-path={{ .os.healthzPath }}
- --healthz-timeout={{ .os.healthzTimeout }}
- --prometheus-port={{ ternary (include "akv-provider.metricsPort" .) "0" (ne (toString .root.Values.metricsEnabled) "false") }}
- --construct-pem-chain={{ include "akv-provider.bool" .root.Values.constructPEMChain }}
- --write-cert-and-key-in-separate-files={{ include "akv-provider.bool" .root.Values.writeCertAndKeyInSeparateFiles }}
- --cloud-name={{ .root.Values.cloudName }}
- --parallel-fetches={{ .root.Values.parallelFetches }}
- --result-cache-ttl={{ .root.Values.resultCacheTTL }}
- --vault-rate-limit={{ .root.Values.vaultRateLimit }}
- --vault-burst={{ .root.Values.vaultBurst }}
- --max-concurrent-mounts={{ .root.Values.maxConcurrentMounts }}
- {{ printf "--managed-identity-namespaces=%s" (join "," .root.Values.managedIdentity.namespaces) | quote }}
- --allow-managed-identity-selections={{ include "akv-provider.bool" .root.Values.managedIdentity.allowSelections }}
{{- with include "akv-provider.healthzBindAddress" . }}
- --healthz-bind-address={{ . }}
{{- end }}
{{- with .os.metricsBindAddress }}
- --metrics-bind-address={{ . }}
{{- end }}
{{- with .os.customUserAgent }}
- {{ printf "--custom-user-agent=%s" . | quote }}
{{- end }}
{{- end -}}

{{/* The address /healthz listens on: the OS block's healthzBindAddress, else 127.0.0.1 with
host networking (Linux), else none (every address). */}}
{{- define "akv-provider.healthzBindAddress" -}}
{{- if .os.healthzBindAddress -}}
{{- .os.healthzBindAddress -}}
{{- else if .os.hostNetwork -}}
127.0.0.1
{{- end -}}
{{- end -}}

{{/* Ports and liveness probe shared by both OSes; .os is the OS block. */}}
{{- define "akv-provider.portsAndProbe" -}}
{{- $bind := include "akv-provider.healthzBindAddress" . -}}
{{- $loopback := or (hasPrefix "127." $bind) (eq $bind "::1") (eq $bind "localhost") -}}
{{- if and $loopback (not .os.hostNetwork) -}}
{{- fail (printf "healthzBindAddress %s is a loopback address, which the kubelet's liveness probe reaches only with hostNetwork: true" $bind) -}}
{{- end -}}
ports:
  - name: healthz
    containerPort: {{ .os.healthzPort }}
    protocol: TCP
  {{- if ne (toString .root.Values.metricsEnabled) "false" }}
  - name: metrics
    containerPort: {{ include "akv-provider.metricsPort" . }}
    protocol: TCP
  {{- end }}
livenessProbe:
  httpGet:
    {{- if $loopback }}
    host: {{ $bind }}
    {{- end }}
    path: {{ .os.healthzPath }}
    port: {{ .os.healthzPort }}
  initialDelaySeconds: 5
  periodSeconds: 30
  timeoutSeconds: 10
  failureThreshold: 3
{{- end -}}

{{/* GOMEMLIMIT, the Go runtime's soft memory limit: 90% of the OS block's memory limit, so the
runtime collects garbage before the kernel would kill the container, and the rest is left for
what the runtime does not count (socket buffers). A limit helm cannot read as a whole number with
a unit (such as 0.5Gi) is passed whole through the downward API. An env entry of the OS block named
GOMEMLIMIT comes later and wins. .os is the OS block. */}}
{{- define "akv-provider.memoryLimitEnv" -}}
{{- $limit := toString (((.os.resources | default dict).limits | default dict).memory | default "") -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 -}}
{{- $number := regexFind "^[0-9]+" $limit -}}
{{- $unit := trimPrefix $number $limit -}}
- name: GOMEMLIMIT
{{- if and $number (hasKey $units $unit) }}
  value: {{ div (mul (int64 $number) (get $units $unit) 9) 10 | quote }}
{{- else }}
  valueFrom:
    resourceFieldRef:
      containerName: provider-azure-installer
      resource: limits.memory
{{- end }}
{{- end -}}
