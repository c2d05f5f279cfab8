{{/* Names and labels shared by every template. */}}

{{- define "lvs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name; cluster-scoped objects (ClusterRoles, bindings) carry it, so two
releases in different namespaces never collide. Truncated to leave room for "-controller". */}}
{{- define "lvs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lvs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lvs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "controller"). */}}
{{- define "lvs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lvs.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lvs.componentLabels" -}}
{{ include "lvs.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "lvs.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The RBAC rules of a component, read from the file the component's engineers maintain
(files/rbac/*.yaml are symlinks to operator/rbac/clusterrole.yaml and dataplane/rbac/clusterrole.yaml),
so the chart cannot drift from them. Fails the render if the file is missing or has no rules.
*/}}
{{- define "lvs.rbacRules" -}}
{{- $raw := .ctx.Files.Get .file -}}
{{- if not $raw -}}
{{- fail (printf "chart packaging error: %s is missing or empty (it must be a symlink into the repository's rbac files)" .file) -}}
{{- end -}}
{{- $role := fromYaml $raw -}}
{{- if or (not $role.rules) (ne (toString $role.kind) "ClusterRole") -}}
{{- fail (printf "chart packaging error: %s is not a ClusterRole with rules" .file) -}}
{{- end -}}
{{- toJson $role.rules -}}
{{- end -}}

{{/*
The controller's rules, split by scope. Lease rules (coordination.k8s.io) go to a Role in the
release namespace, where the election Lease lives; everything else is cluster-wide (VirtualServers,
Services, EndpointSlices and Nodes in every namespace, Events next to the VirtualServers they are
about). Returns {"cluster": [...], "namespaced": [...]} as JSON.
*/}}
{{- define "lvs.controllerRules" -}}
{{- $rules := include "lvs.rbacRules" (dict "ctx" .ctx "file" "files/rbac/controller-clusterrole.yaml") | fromJsonArray -}}
{{- $cluster := list -}}
{{- $namespaced := list -}}
{{- range $rules -}}
{{- if has "coordination.k8s.io" .apiGroups -}}
{{- if gt (len .apiGroups) 1 -}}
{{- fail "operator/rbac/clusterrole.yaml: a coordination.k8s.io rule must not name other API groups (the chart scopes Lease rules to the release namespace)" -}}
{{- end -}}
{{- $namespaced = append $namespaced . -}}
{{- else -}}
{{- $cluster = append $cluster . -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "cluster" $cluster "namespaced" $namespaced) -}}
{{- end -}}

{{/* The election Lease's name: the resourceNames of the Lease get/update rule, passed to the
controller as --lease-name so the flag and the RBAC rule cannot disagree. */}}
{{- define "lvs.leaseName" -}}
{{- $names := list -}}
{{- range (include "lvs.controllerRules" (dict "ctx" .) | fromJson).namespaced -}}
{{- if .resourceNames -}}{{- $names = concat $names .resourceNames -}}{{- end -}}
{{- end -}}
{{- if ne (len $names) 1 -}}
{{- fail (printf "operator/rbac/clusterrole.yaml: expected exactly one Lease resourceName (the election lease), found %v" $names) -}}
{{- end -}}
{{- first $names -}}
{{- end -}}
