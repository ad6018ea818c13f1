{{/* Replicas, HPA and PDB of the scalable components (gateway, serving; Cassandra's PDB). */}}

{{/*
spec.replicas of a Deployment: (dict "ctx" $ "component" "gateway" "replicaCount" 2
"autoscaling" .Values.gateway.autoscaling). With autoscaling the HPA owns the count:
a new Deployment starts at minReplicas (so "helm install --wait" waits for that many),
and an upgrade renders the live count (never below minReplicas), so Helm's patch
leaves the HPA's choice alone.
*/}}
{{- define "mnist.replicas" -}}
{{- if .autoscaling.enabled }}
{{- $live := lookup "apps/v1" "Deployment" .ctx.Release.Namespace (include "mnist.componentName" .) }}
{{- $current := 0 }}
{{- if $live }}{{ $current = int (default 0 $live.spec.replicas) }}{{ end }}
replicas: {{ max $current (int .autoscaling.minReplicas) }}
{{- else }}
replicas: {{ .replicaCount }}
{{- end }}
{{- end }}

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
