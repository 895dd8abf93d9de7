{{/*
Names, labels and the files shared with the kustomize base.

app.kubernetes.io/name is always "lambda-rollouts", as in manifests/: the ServiceMonitor names the
scrape job after it (jobLabel) and the alerts of manifests/prometheusrule.yaml select that job.
Selectors carry only the labels the kustomize base selects by, so both install the same Deployment
(whose selector cannot change later); hence one release per namespace.
*/}}

{{/* The release's object names; at most 45 characters so that "<fullname>-metrics" is a valid Service name. */}}
{{- define "lambda-rollouts.fullname" -}}
{{- $name := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else if contains "lambda-rollouts" .Release.Name -}}
{{- $name = .Release.Name -}}
{{- else -}}
{{- $name = printf "%s-lambda-rollouts" .Release.Name -}}
{{- end -}}
{{- $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}

{{/* A name of manifests/ ("lambda-rollouts", "lambda-rollouts-leader-election") for this release. */}}
{{- define "lambda-rollouts.rename" -}}
{{- regexReplaceAll "^lambda-rollouts" .name (include "lambda-rollouts.fullname" .root) -}}
{{- end -}}

{{/* The labels of every object, as a dict: the kustomize base's (name, part-of) and Helm's own. */}}
{{- define "lambda-rollouts.labels" -}}
app.kubernetes.io/name: lambda-rollouts
app.kubernetes.io/part-of: lambda-rollouts
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}

{{/* What the Deployment, the PodDisruptionBudget, the Service and the anti-affinity select. */}}
{{- define "lambda-rollouts.selectorLabels" -}}
app.kubernetes.io/name: lambda-rollouts
app.kubernetes.io/component: operator
{{- end -}}

{{/* The labels of an object read from manifests/: its own, then the chart's (``dict "root" $ "labels" ...``). */}}
{{- define "lambda-rollouts.mergedLabels" -}}
{{- $labels := deepCopy (.labels | default dict) -}}
{{- toYaml (mustMergeOverwrite $labels (include "lambda-rollouts.labels" .root | fromYaml)) -}}
{{- end -}}

{{/*
The objects of a multi-document YAML file under files/ (a symlink into manifests/), as a YAML list
for fromYamlArray: ``include "lambda-rollouts.objects" (dict "root" $ "file" "files/rbac.yaml")``.
*/}}
{{- define "lambda-rollouts.objects" -}}
{{- $objects := list -}}
{{- range $document := regexSplit "(?m)^---[ \\t]*$" (.root.Files.Get .file) -1 -}}
{{- $object := fromYaml $document -}}
{{- if hasKey $object "Error" -}}
{{- fail (printf "%s: %s" $.file $object.Error) -}}
{{- end -}}
{{- if $object -}}
{{- $objects = append $objects $object -}}
{{- end -}}
{{- end -}}
{{- toYaml $objects -}}
{{- end -}}

{{/* The namespaces the operator watches, as a YAML list; empty means every namespace. */}}
{{- define "lambda-rollouts.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toYaml .Values.watchNamespaces -}}
{{- else if .Values.rbac.namespaced -}}
{{- toYaml (list .Release.Namespace) -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* Where the config files are mounted: one directory each, so a new ConfigMap version replaces the file. */}}
{{- define "lambda-rollouts.ownershipDir" -}}/etc/lambda-rollouts/ownership{{- end -}}
{{- define "lambda-rollouts.accountsDir" -}}/etc/lambda-rollouts/accounts{{- end -}}
{{- define "lambda-rollouts.notificationsDir" -}}/etc/lambda-rollouts/notifications{{- end -}}

{{/*
The leader Lease: the one rbac.yaml's leader-election Role names (resourceNames), or with a
selector (one release per shard) that name with the digest of the selector, as `operator
--selector` derives it, so that each shard has a Lease and a leader of its own and its Role grants
exactly that Lease.
*/}}
{{- define "lambda-rollouts.leaseName" -}}
{{- $base := "" -}}
{{- range include "lambda-rollouts.objects" (dict "root" . "file" "files/rbac.yaml") | fromYamlArray -}}
{{- if and (eq .kind "Role") (hasSuffix "-leader-election" .metadata.name) -}}
{{- range .rules }}{{ with .resourceNames }}{{ $base = first . }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $base -}}
{{- fail "files/rbac.yaml: no leader-election Role naming its Lease (resourceNames)" -}}
{{- end -}}
{{- if .Values.selector -}}
{{- printf "%s-%s" $base (sha256sum .Values.selector | trunc 10) -}}
{{- else -}}
{{- $base -}}
{{- end -}}
{{- end -}}
