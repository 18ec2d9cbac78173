{{/* Chart name, at most 63 characters (a label value). */}}
{{- define "multiarch-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name alone when it
already contains the chart name, so the default install is simply
`multiarch-operator`. */}}
{{- define "multiarch-operator.fullname" -}}
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

{{- define "multiarch-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Stable labels: the Deployment's selector, never changed on upgrade. */}}
{{- define "multiarch-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multiarch-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "multiarch-operator.labels" -}}
helm.sh/chart: {{ include "multiarch-operator.chart" . }}
{{ include "multiarch-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "multiarch-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "multiarch-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image; also the default merge image. */}}
{{- define "multiarch-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}

{{- define "multiarch-operator.mergeImage" -}}
{{- default (include "multiarch-operator.image" .) .Values.mergeImage }}
{{- end }}

{{/* The Lease the replicas compete for (--lease-name). */}}
{{- define "multiarch-operator.leaseName" -}}
{{- include "multiarch-operator.fullname" . }}
{{- end }}

{{/* What the operator does in the namespaces it watches; the same rules
make the ClusterRole (all namespaces) or the Role (watchNamespace). Each rule
says why it is needed; nothing grants Secrets or ConfigMaps: build pods mount
them, the operator never reads them. */}}
{{- define "multiarch-operator.rules" -}}
# MultiArchImages are the operator's input: it lists and watches them (its
# cache); it never needs a single get.
- apiGroups: [multiarch.dev]
  resources: [multiarchimages]
  verbs: [list, watch]
# It reports progress in the status subresource, by server-side apply.
- apiGroups: [multiarch.dev]
  resources: [multiarchimages/status]
  verbs: [patch]
{{- if .Values.rbac.ownerReferencesPermissionEnforcement }}
# The Jobs' owner reference sets blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin (on by default in
# OpenShift; plugin/pkg/admission/gc/gc_admission.go) allows only to who may
# update the owner's finalizers; without it every Job apply is forbidden.
# Granted by default (rbac.ownerReferencesPermissionEnforcement); the
# operator itself never calls the subresource.
- apiGroups: [multiarch.dev]
  resources: [multiarchimages/finalizers]
  verbs: [update]
{{- end }}
# The build and merge Jobs: applied server-side (patch; an apply that
# creates the Job is authorized as create too), listed and watched to follow
# them, and deleted when a new generation supersedes their build.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
# The Jobs' Pods, read only: their scheduling state (an unschedulable
# platform) and termination message (the pushed digest). No logs, no exec.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Events on MultiArchImages, so `kubectl describe` tells the story; patch
# counts a repeated Event instead of creating a new one.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Read only: FailedCreate of the Jobs and TriggeredScaleUp of their pods, named in the status.
- {apiGroups: [""], resources: [events], verbs: [list, watch]}
{{- end }}

{{/* The namespaces watched, as a JSON list: watchNamespaces and
watchNamespace together; empty means every namespace. */}}
{{- define "multiarch-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | default list -}}
{{- with .Values.watchNamespace }}{{ $namespaces = append $namespaces . }}{{ end -}}
{{- $namespaces | uniq | toJson -}}
{{- end }}
