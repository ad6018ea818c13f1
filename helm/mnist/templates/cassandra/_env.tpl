{{/*
How clients reach Cassandra, bundled or external: the gateway, the schema Job
and the roles Job share these, so they always agree.
*/}}

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
