{{/*
Retraining on feedback (python -m training --feedback): the CronJob's runs, and one-off
runs created from it (kubectl create job --from=cronjob/<release>-mnist-retrain <name>),
train on MNIST plus the predictions users labelled, read from Cassandra with a role that
may only SELECT from the keyspace. The install Job trains on MNIST alone: nothing is
labelled before the first install. The run exports a version only if it passes the gate
(MNIST minimum, feedback holdout not below the serving version's); serving picks the new
version up as it does any other.
*/}}

{{- define "mnist.trainingFeedbackEnabled" -}}
{{- if and .Values.training.cronJob.enabled .Values.training.feedback.enabled }}true{{ end }}
{{- end }}

{{/* The bundled cluster's roles Job creates the reader role (with its own Secret). */}}
{{- define "mnist.trainingReaderRole" -}}
{{- if and (include "mnist.trainingFeedbackEnabled" .) .Values.cassandra.auth.enabled }}true{{ end }}
{{- end }}

{{- define "mnist.trainingReaderSecretName" -}}
{{- default (include "mnist.componentName" (dict "ctx" . "component" "training-reader")) .Values.training.feedback.existingSecret }}
{{- end }}

{{- define "mnist.trainingFeedbackArgs" -}}
{{- $f := .Values.training.feedback }}
- --feedback
- --holdout-percent={{ $f.holdoutPercent }}
- --feedback-weight={{ $f.weight }}
- --feedback-max-share={{ $f.maxShare }}
{{- end }}

{{/* The gateway's CASSANDRA_* settings, with the reader's login instead of the gateway's. */}}
{{- define "mnist.trainingFeedbackEnv" -}}
{{- $env := list }}
{{- range include "mnist.cassandraEnv" . | fromYamlArray }}
{{- if not (has .name (list "CASSANDRA_USERNAME" "CASSANDRA_PASSWORD")) }}
{{- $env = append $env . }}
{{- end }}
{{- end }}
{{- if .Values.cassandra.auth.enabled }}
{{- $f := .Values.training.feedback }}
{{- $env = append $env (dict "name" "CASSANDRA_USERNAME" "value" $f.username) }}
{{- $env = append $env (dict "name" "CASSANDRA_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" (include "mnist.trainingReaderSecretName" .) "key" $f.passwordKey))) }}
{{- end }}
{{- toYaml $env }}
{{- end }}
