{{/* NetworkPolicy pieces every component's policy uses. */}}

{{- define "mnist.dnsEgressRule" -}}
- to:
    {{- toYaml .Values.networkPolicy.dnsTo | nindent 4 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}
