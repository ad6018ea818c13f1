{{/*
Names, labels and the small pieces of pod specs that every component shares.
Selectors use only app.kubernetes.io/{name,instance,component}: those never
change over a release's life, while the other labels do. The rest lives next to
what uses it: models/_volume.tpl (the model claim and mount), cassandra/_env.tpl
(how clients reach Cassandra), training/_pod.tpl, _networkpolicy.tpl (DNS egress)
and _scaling.tpl (replicas, HPA, PDB).
*/}}

{{- define "mnist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-mnist", or the release name alone when it already contains the chart name. */}}
{{- define "mnist.fullname" -}}
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

{{/* Name of a component's resources: (dict "ctx" $ "component" "gateway"). */}}
{{- define "mnist.componentName" -}}
{{- printf "%s-%s" (include "mnist.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mnist.labels" -}}
{{ include "mnist.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "mnist.name" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Image reference of one entry of .Values.images: (dict "ctx" $ "image" "gateway"). */}}
{{- define "mnist.image" -}}
{{- $image := index .ctx.Values.images .image }}
{{- $ref := printf "%s:%s" $image.repository (default .ctx.Chart.AppVersion $image.tag) }}
{{- if $image.digest }}{{ $ref = printf "%s@%s" $ref $image.digest }}{{ end -}}
image: {{ $ref | quote }}
imagePullPolicy: {{ $image.pullPolicy }}
{{- end }}

{{/*
Pod-level settings common to every pod: the component's ServiceAccount (no API
token: nothing here talks to the Kubernetes API), pull secrets, and the pod
security context. (dict "ctx" $ "component" "gateway" "uid" 10001)
*/}}
{{- define "mnist.podSpecCommon" -}}
serviceAccountName: {{ include "mnist.componentName" . }}
automountServiceAccountToken: false
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Container security context: (dict "uid" 10001). Root filesystems are read-only; writable paths are emptyDirs. */}}
{{- define "mnist.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  privileged: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* UID of the images built here (Dockerfile.gateway, Dockerfile.train); TF Serving runs as it too. */}}
{{- define "mnist.appUid" -}}10001{{- end }}
{{/* UID of the "cassandra" user in the official image, which owns its directories. */}}
{{- define "mnist.cassandraUid" -}}999{{- end }}

{{/* Spread replicas over nodes unless the user gave an affinity: (dict "ctx" $ "component" "gateway" "affinity" .Values.gateway.affinity). */}}
{{- define "mnist.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "mnist.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* A Job's name that changes whenever its pod template would (pod templates of Jobs are immutable). */}}
{{- define "mnist.jobSuffix" -}}
{{- . | toJson | sha256sum | trunc 10 }}
{{- end }}
