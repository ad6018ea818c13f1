{{/*
The training pod, shared by the Job and the CronJob so both train the same way:
(dict "ctx" $ "once" "<job name>"). With "once", the run leaves a marker named
after the Job on the model volume, and a pod that finds it exits at once without
training: a Job that Helm creates again for a configuration that has trained
already (a rollback to an earlier revision, or a Job deleted by hand) starts no
training run. The CronJob passes no "once": every scheduled run trains.
*/}}
{{- define "mnist.trainingPod" -}}
{{- $ctx := .ctx }}
{{- $c := dict "ctx" $ctx "component" "training" }}
{{- $uid := include "mnist.appUid" $ctx }}
{{- $t := $ctx.Values.training -}}
{{- $args := list (printf "--export-dir=%s" (include "mnist.modelBasePath" $ctx)) (printf "--arch=%s" $t.arch) }}
{{- with $t.epochs }}{{ $args = append $args (printf "--epochs=%v" .) }}{{ end }}
{{- if .feedback }}{{ $args = concat $args (include "mnist.trainingFeedbackArgs" $ctx | fromYamlArray) }}{{ end }}
{{- $args = concat $args (list (printf "--min-accuracy=%v" $t.minAccuracy) (printf "--seed=%v" $t.seed)) -}}
metadata:
  labels:
    {{- if .once }}
    {{- /* A Job's pod template is immutable: no labels that change with the chart's version. */}}
    {{- omit (include "mnist.labels" $c | fromYaml) "helm.sh/chart" "app.kubernetes.io/version" | toYaml | nindent 4 }}
    {{- else }}
    {{- include "mnist.labels" $c | nindent 4 }}
    {{- end }}
spec:
  {{- include "mnist.podSpecCommon" (merge (dict "uid" $uid) $c) | nindent 2 }}
  restartPolicy: Never
  containers:
    - name: train
      {{- include "mnist.image" (dict "ctx" $ctx "image" "train") | nindent 6 }}
      {{- include "mnist.containerSecurityContext" (dict "uid" $uid) | nindent 6 }}
      # Each run exports <base>/<N+1>/ through a temporary directory and a rename,
      # so TF Serving never sees a half-written version; below --min-accuracy the
      # run fails and exports nothing.
      {{- if .once }}
      command: [/bin/sh, -c]
      args:
        - |
          set -eu
          marker={{ include "mnist.modelsMountPath" $ctx }}/.trained/{{ .once }}
          if [ -e "$marker" ]; then
            echo "{{ .once }} has trained already ($marker): nothing to do"
            exit 0
          fi
          python -m training "$@"
          mkdir -p "${marker%/*}"
          date -u +%Y-%m-%dT%H:%M:%SZ > "$marker"
        - train
        {{- range $args }}
        - {{ . }}
        {{- end }}
      {{- else }}
      command: [python, -m, training]
      args:
        {{- range $args }}
        - {{ . }}
        {{- end }}
      {{- end }}
      env:
        # TensorFlow, Keras and the MNIST download cache write under $HOME.
        - name: HOME
          value: /tmp
        {{- if .feedback }}
        # The store the gateway writes, read with the read-only role (training.feedback).
        {{- include "mnist.trainingFeedbackEnv" $ctx | nindent 8 }}
        {{- end }}
        {{- if $t.dataVolume }}
        - name: MNIST_DATA_DIR
          value: /data/mnist
        {{- end }}
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      volumeMounts:
        - name: models
          mountPath: {{ include "mnist.modelsMountPath" $ctx }}
        - name: tmp
          mountPath: /tmp
        {{- if $t.dataVolume }}
        - name: data
          mountPath: /data/mnist
          readOnly: true
        {{- end }}
  volumes:
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "mnist.modelsClaimName" $ctx }}
    - name: tmp
      emptyDir:
        sizeLimit: 2Gi
    {{- if $t.dataVolume }}
    - name: data
      {{- toYaml $t.dataVolume | nindent 6 }}
    {{- end }}
  {{- with $t.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
