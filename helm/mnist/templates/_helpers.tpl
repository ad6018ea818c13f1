{{/*
Names, labels and the small pieces of pod specs that several components share.
Selectors use only app.kubernetes.io/{name,instance,component}: those never
change over a release's life, while the other labels do.
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

{{/* ---------- Model volume ---------- */}}

{{- define "mnist.modelsClaimName" -}}
{{- default (include "mnist.componentName" (dict "ctx" . "component" "models")) .Values.model.persistence.existingClaim }}
{{- end }}

{{/* Where the model volume is mounted; versions live in <mount>/<model name>/<N>/. */}}
{{- define "mnist.modelsMountPath" -}}/models{{- end }}

{{- define "mnist.modelBasePath" -}}
{{- printf "%s/%s" (include "mnist.modelsMountPath" .) .Values.model.name }}
{{- end }}

{{/* ---------- Cassandra connection (gateway, schema Job, roles Job) ---------- */}}

{{- define "mnist.cassandraAuthSecretName" -}}
{{- default (include "mnist.componentName" (dict "ctx" . "component" "cassandra-auth")) .Values.cassandra.auth.existingSecret }}
{{- end }}

{{- define "mnist.cassandraHosts" -}}
{{- if .Values.cassandra.enabled }}
{{- include "mnist.componentName" (dict "ctx" . "component" "cassandra") }}
{{- else }}
{{- required "cassandra.external.hosts is required when cassandra.enabled is false" (join "," .Values.cassandra.external.hosts) }}
{{- end }}
{{- end }}

{{- define "mnist.cassandraPort" -}}
{{- if .Values.cassandra.enabled }}9042{{ else }}{{ .Values.cassandra.external.port }}{{ end }}
{{- end }}

{{- define "mnist.cassandraLocalDc" -}}
{{- default .Values.cassandra.datacenter .Values.cassandra.localDc }}
{{- end }}

{{/* Keyspace replication as CQL, for system_auth in the roles Job. */}}
{{- define "mnist.cassandraReplicationCql" -}}
{{- $r := .Values.cassandra.replication }}
{{- if eq $r.strategy "NetworkTopologyStrategy" }}
{{- $parts := list "'class': 'NetworkTopologyStrategy'" }}
{{- range splitList "," $r.dcs }}
{{- $kv := splitList ":" (trim .) }}
{{- $parts = append $parts (printf "'%s': %s" (trim (first $kv)) (trim (last $kv))) }}
{{- end }}
{{- printf "{%s}" (join ", " $parts) }}
{{- else }}
{{- printf "{'class': 'SimpleStrategy', 'replication_factor': %v}" $r.factor }}
{{- end }}
{{- end }}

{{/* The CASSANDRA_* variables of gateway/config.py; the gateway and the schema Job must agree on them. */}}
{{- define "mnist.cassandraEnv" -}}
- name: CASSANDRA_HOSTS
  value: {{ include "mnist.cassandraHosts" . | quote }}
- name: CASSANDRA_PORT
  value: {{ include "mnist.cassandraPort" . | quote }}
- name: CASSANDRA_KEYSPACE
  value: {{ .Values.cassandra.keyspace | quote }}
- name: CASSANDRA_LOCAL_DC
  value: {{ include "mnist.cassandraLocalDc" . | quote }}
- name: CASSANDRA_CONSISTENCY
  value: {{ .Values.cassandra.consistency | quote }}
- name: CASSANDRA_REPLICATION_STRATEGY
  value: {{ .Values.cassandra.replication.strategy | quote }}
- name: CASSANDRA_REPLICATION_FACTOR
  value: {{ .Values.cassandra.replication.factor | quote }}
{{- if eq .Values.cassandra.replication.strategy "NetworkTopologyStrategy" }}
- name: CASSANDRA_REPLICATION_DCS
  value: {{ required "cassandra.replication.dcs (e.g. \"dc1:3\") is required with NetworkTopologyStrategy" .Values.cassandra.replication.dcs | quote }}
{{- end }}
{{- if .Values.cassandra.auth.enabled }}
- name: CASSANDRA_USERNAME
  value: {{ .Values.cassandra.auth.username | quote }}
- name: CASSANDRA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mnist.cassandraAuthSecretName" . }}
      key: {{ .Values.cassandra.auth.passwordKey }}
{{- end }}
{{- end }}

{{/* ---------- NetworkPolicy building blocks ---------- */}}

{{- define "mnist.dnsEgressRule" -}}
- to:
    {{- toYaml .Values.networkPolicy.dnsTo | nindent 4 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}

{{/* Egress to the CQL port: the bundled pods, or the external cluster's CIDRs. */}}
{{- define "mnist.cassandraEgressRule" -}}
- to:
    {{- if .Values.cassandra.enabled }}
    - podSelector:
        matchLabels:
          {{- include "mnist.selectorLabels" (dict "ctx" . "component" "cassandra") | nindent 10 }}
    {{- else }}
    {{- range .Values.cassandra.external.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
    {{- end }}
  ports:
    - {protocol: TCP, port: {{ include "mnist.cassandraPort" . }}}
{{- end }}

{{/* A Job's name that changes whenever its pod template would (pod templates of Jobs are immutable). */}}
{{- define "mnist.jobSuffix" -}}
{{- . | toJson | sha256sum | trunc 10 }}
{{- end }}

{{/* ---------- HPA and PDB, shared by the gateway and serving ---------- */}}

{{/* (dict "ctx" $ "component" "gateway" "kind" "Deployment" "autoscaling" .Values.gateway.autoscaling) */}}
{{- define "mnist.hpa" -}}
{{- if .autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mnist.componentName" . }}
  labels:
    {{- include "mnist.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ include "mnist.componentName" . }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    # Scale down slowly: traffic is bursty and new pods need a warm model.
    scaleDown:
      stabilizationWindowSeconds: 300
{{- end }}
{{- end }}

{{/* (dict "ctx" $ "component" "gateway" "pdb" .Values.gateway.pdb) */}}
{{- define "mnist.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mnist.componentName" . }}
  labels:
    {{- include "mnist.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  # Pods that never became ready may be evicted: they serve nothing anyway.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "mnist.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
