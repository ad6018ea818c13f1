{{/* The model volume: its claim, and where every pod mounts it. */}}

{{- define "mnist.modelsClaimName" -}}
{{- default (include "mnist.componentName" (dict "ctx" . "component" "models")) .Values.model.persistence.existingClaim }}
{{- end }}

{{/* Where the model volume is mounted; versions live in <mount>/<model name>/<N>/. */}}
{{- define "mnist.modelsMountPath" -}}/models{{- end }}

{{- define "mnist.modelBasePath" -}}
{{- printf "%s/%s" (include "mnist.modelsMountPath" .) .Values.model.name }}
{{- end }}
