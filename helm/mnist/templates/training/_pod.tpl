{{/* The training pod, shared by the Job and the CronJob so both train the same way. */}}
{{- define "mnist.trainingPod" -}}
{{- $c := dict "ctx" . "component" "training" }}
{{- $uid := include "mnist.appUid" . }}
{{- $t := .Values.training -}}
metadata:
  labels:
    {{- include "mnist.labels" $c | nindent 4 }}
spec:
  {{- include "mnist.podSpecCommon" (merge (dict "uid" $uid) $c) | nindent 2 }}
  restartPolicy: Never
  containers:
    - name: train
      {{- include "mnist.image" (dict "ctx" . "image" "train") | nindent 6 }}
      {{- include "mnist.containerSecurityContext" (dict "uid" $uid) | nindent 6 }}
      # Each run exports <base>/<N+1>/ through a temporary directory and a rename,
      # so TF Serving never sees a half-written version; below --min-accuracy the
      # run fails and exports nothing.
      command: [python, -m, training]
      args:
        - --export-dir={{ include "mnist.modelBasePath" . }}
        - --arch={{ $t.arch }}
        {{- with $t.epochs }}
        - --epochs={{ . }}
        {{- end }}
        - --min-accuracy={{ $t.minAccuracy }}
        - --seed={{ $t.seed }}
      env:
        # TensorFlow, Keras and the MNIST download cache write under $HOME.
        - name: HOME
          value: /tmp
        {{- if $t.dataVolume }}
        - name: MNIST_DATA_DIR
          value: /data/mnist
        {{- end }}
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      volumeMounts:
        - name: models
          mountPath: {{ include "mnist.modelsMountPath" . }}
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
        claimName: {{ include "mnist.modelsClaimName" . }}
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
