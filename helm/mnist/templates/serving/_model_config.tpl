{{/*
TF Serving's model config file for one version policy (a serving.versionPolicy):
(dict "ctx" $ "policy" $policy). Rendered twice into the serving-models ConfigMap: the
file TF Serving reads, and the release's own policy that `mnistctl unpin` restores.
*/}}
{{- define "mnist.modelConfig" -}}
{{- $policy := .policy -}}
model_config_list {
  config {
    name: {{ .ctx.Values.model.name | quote }}
    base_path: {{ include "mnist.modelBasePath" .ctx | quote }}
    model_platform: "tensorflow"
    model_version_policy {
      {{- if eq $policy.type "latest" }}
      latest { num_versions: {{ $policy.latestCount }} }
      {{- else if eq $policy.type "specific" }}
      specific {{ "{" }}{{ range $policy.versions }} versions: {{ . }}{{ end }} {{ "}" }}
      {{- else }}
      all {}
      {{- end }}
    }
    {{- range $label, $version := $policy.labels }}
    version_labels { key: {{ $label | quote }} value: {{ $version }} }
    {{- end }}
  }
}
{{- end }}

{{/*
The version `mnistctl pin` set on the live serving-models ConfigMap (its annotation
mnist-serving.local/pinned-version), or "": (dict "ctx" $ "name" <ConfigMap name>).
Looked up on every install and upgrade, so an upgrade keeps a pin it does not know about;
`helm template` and client-side dry runs see no cluster and no pin.
*/}}
{{- define "mnist.servingPin" -}}
{{- $live := lookup "v1" "ConfigMap" .ctx.Release.Namespace .name }}
{{- if $live }}
{{- $pin := index ($live.metadata.annotations | default dict) "mnist-serving.local/pinned-version" | default "" }}
{{- if and $pin (not (regexMatch "^[1-9][0-9]*$" $pin)) }}
{{- fail (printf "ConfigMap %s: annotation mnist-serving.local/pinned-version is %q, not a version number (mnistctl unpin removes it)" .name $pin) }}
{{- end }}
{{- $pin }}
{{- end }}
{{- end }}
