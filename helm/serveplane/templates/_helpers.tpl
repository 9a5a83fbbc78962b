{{/* Names, labels and the RBAC rules shared by the templates. */}}

{{- define "serveplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "serveplane.fullname" -}}
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

{{- define "serveplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serveplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "serveplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "serveplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: serveplane
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "serveplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "serveplane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "serveplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "serveplane.rayImage" -}}
{{- printf "%s:%s" .Values.rayImage.repository (default .Chart.AppVersion .Values.rayImage.tag) -}}
{{- end -}}

{{/*
The operator's rules come from files/rbac-rules.yaml, the one list the tests also run the operator under.
"serveplane.clusterRules": the rules on cluster-scoped resources (kopf reads CRDs and namespaces);
"serveplane.namespacedRules": all the others. Both render a YAML list.
*/}}
{{- define "serveplane.clusterScoped" -}}customresourcedefinitions namespaces{{- end -}}

{{- define "serveplane.clusterRules" -}}
{{- $scoped := splitList " " (include "serveplane.clusterScoped" .) -}}
{{- $out := list -}}
{{- range $rule := .Files.Get "files/rbac-rules.yaml" | fromYamlArray -}}
{{- $cluster := false -}}
{{- range $rule.resources -}}{{- if has . $scoped -}}{{- $cluster = true -}}{{- end -}}{{- end -}}
{{- if $cluster -}}{{- $out = append $out $rule -}}{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "serveplane.namespacedRules" -}}
{{- $scoped := splitList " " (include "serveplane.clusterScoped" .) -}}
{{- $out := list -}}
{{- range $rule := .Files.Get "files/rbac-rules.yaml" | fromYamlArray -}}
{{- $cluster := false -}}
{{- range $rule.resources -}}{{- if has . $scoped -}}{{- $cluster = true -}}{{- end -}}{{- end -}}
{{- if not $cluster -}}{{- $out = append $out $rule -}}{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
