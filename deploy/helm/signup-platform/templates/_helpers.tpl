{{/*
The label every object carries, and every pod: PostgreSQL's and Kafka's namespaces can admit the
pods by it (deploy/README.md, "Kubernetes").
*/}}
{{- define "signup.partOf" -}}
app.kubernetes.io/part-of: signup-platform
{{- end }}

{{/*
An image reference: (registry/)repository:tag, the tag falling back to image.tag, then to the
chart's appVersion. Called with (list $ .image) where .image has repository and tag.
*/}}
{{- define "signup.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- $registry := $root.Values.image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) $image.repository (toString $tag) -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (toString $tag) -}}
{{- end -}}
{{- end }}

{{/*
Whether KEDA scales a service: keda.enabled, and the service's own keda.enabled.
Called with (list $ $service); renders "true" or nothing.
*/}}
{{- define "signup.kedaScaled" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- if and $root.Values.keda.enabled $service.kafka $service.keda $service.keda.enabled -}}
true
{{- end -}}
{{- end }}

{{/*
The security settings every pod and container of the chart runs with: a non-root user, no
privilege escalation, no capabilities, a read-only root filesystem.
*/}}
{{- define "signup.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "signup.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
The settings of the ConfigMap platform-config (values.yaml, config), key by key: rendered by
configmap.yaml and by its hook copy for the Jobs (jobs.yaml).
*/}}
{{- define "signup.configData" -}}
{{- range $key, $value := .Values.config }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/*
The configuration every container reads: the ConfigMap, then the Secret. Called with $, or with
(list $ configMap) for another ConfigMap than platform-config (the Jobs' hook copy).
*/}}
{{- define "signup.envFrom" -}}
{{- $root := . -}}
{{- $configMap := "platform-config" -}}
{{- if kindIs "slice" . -}}
{{- $root = index . 0 -}}
{{- $configMap = index . 1 -}}
{{- end -}}
- configMapRef:
    name: {{ $configMap }}
- secretRef:
    name: {{ $root.Values.secretName }}
{{- end }}

{{/*
A container of platform-admin, for the Jobs and the CronJob. Called with (list $ name args), or
(list $ name args configMap) to read another ConfigMap than platform-config.
*/}}
{{- define "signup.platformAdminContainer" -}}
{{- $root := index . 0 -}}
{{- $configMap := "platform-config" -}}
{{- if gt (len .) 3 -}}
{{- $configMap = index . 3 -}}
{{- end -}}
- name: {{ index . 1 }}
  image: {{ include "signup.image" (list $root $root.Values.platformAdmin.image) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    {{- range index . 2 }}
    - {{ toString . | quote }}
    {{- end }}
  envFrom:
    {{- include "signup.envFrom" (list $root $configMap) | nindent 4 }}
  resources:
    {{- toYaml $root.Values.platformAdmin.resources | nindent 4 }}
  securityContext:
    {{- include "signup.containerSecurityContext" $root | nindent 4 }}
{{- end }}
