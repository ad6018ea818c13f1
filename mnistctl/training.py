"""Training runs: a new Job from the release's own template, and what each run reported.

A run's result (exported version and test accuracy, or why the quality gate refused it) is
the JSON that ``python -m training`` writes to ``/dev/termination-log``; the kubelet keeps
it in the pod's status as the container's termination message, so mnistctl reads it from
the API without exec'ing into a pod or mounting the model volume. A Job that has been
deleted (Helm replaces its training Job on upgrades; the CronJob keeps a short history)
takes its result with it.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import V1Job, V1JobSpec, V1ObjectMeta, V1Pod, V1PodTemplateSpec

from mnist_contract import RESULT_EXPORTED, RESULT_REFUSED
from mnistctl.errors import EXIT_NOT_FOUND, CliError
from mnistctl.release import JOB_NAME_LABEL, LABEL_MANAGED_BY

TRAIN_CONTAINER = "train"
CREATED_BY_ANNOTATION = "mnist-serving.local/created-by"
# Labels the Job controller adds to a Job's pod template; a copy must not carry them.
CONTROLLER_LABELS = (
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    JOB_NAME_LABEL,
)


def training_command(container) -> tuple[list[str], list[str]]:
    """(command, args) of a plain training run from the template's train container.

    The CronJob's template runs ``python -m training ARGS``; the chart's own Job wraps the
    same arguments in a shell script that skips training when the configuration has
    trained once already (``sh -c SCRIPT train ARGS``). A retrain always trains."""
    command = list(container.command or [])
    args = list(container.args or [])
    if command[:3] == ["python", "-m", "training"]:
        return ["python", "-m", "training"], command[3:] + args
    if command[:2] == ["/bin/sh", "-c"] and len(args) >= 2 and args[1] == "train":
        return ["python", "-m", "training"], args[2:]
    raise CliError(
        f"cannot derive a training command from the template's container {container.name!r} "
        f"(command {command})",
        EXIT_NOT_FOUND,
    )


def with_epochs(args: list[str], epochs: int | None) -> list[str]:
    if epochs is None:
        return args
    kept = [a for a in args if not a.startswith("--epochs=")]
    # "--epochs N" as two arguments.
    cleaned: list[str] = []
    skip = False
    for arg in kept:
        if skip:
            skip = False
            continue
        if arg == "--epochs":
            skip = True
            continue
        cleaned.append(arg)
    return [*cleaned, f"--epochs={epochs}"]


def retrain_job(
    template: V1JobSpec,
    *,
    name: str,
    labels: dict[str, str],
    epochs: int | None,
    source: str,
) -> V1Job:
    """A Job that trains once, from a Job spec of the release (a CronJob's jobTemplate or
    the chart's training Job), with the controller's generated labels and selector removed."""
    pod_template: V1PodTemplateSpec = copy.deepcopy(template.template)
    pod_labels = {
        k: v for k, v in (pod_template.metadata.labels or {}).items() if k not in CONTROLLER_LABELS
    }
    pod_labels[LABEL_MANAGED_BY] = "mnistctl"
    pod_template.metadata = V1ObjectMeta(labels=pod_labels)
    containers = pod_template.spec.containers
    train = next((c for c in containers if c.name == TRAIN_CONTAINER), containers[0])
    train.command, args = training_command(train)
    train.args = with_epochs(args, epochs)
    job_labels = {**labels, LABEL_MANAGED_BY: "mnistctl"}
    return V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=V1ObjectMeta(
            name=name,
            labels=job_labels,
            annotations={CREATED_BY_ANNOTATION: f"mnistctl retrain, from {source}"},
        ),
        spec=V1JobSpec(
            backoff_limit=template.backoff_limit,
            active_deadline_seconds=template.active_deadline_seconds,
            template=pod_template,
        ),
    )


def retrain_name(prefix: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{prefix[: 63 - len(stamp) - 9]}-retrain-{stamp}"


def pod_result(pod: V1Pod) -> dict[str, Any] | None:
    """The train container's termination message as a dict, or None when it has none."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name != TRAIN_CONTAINER:
            continue
        terminated = status.state.terminated if status.state else None
        if terminated is None or not terminated.message:
            return None
        try:
            result = json.loads(terminated.message)
        except ValueError:
            return None
        return result if isinstance(result, dict) and "result" in result else None
    return None


def job_state(job: V1Job) -> str:
    """Complete, Failed, Running, Suspended or Pending."""
    for condition in job.status.conditions or [] if job.status else []:
        if condition.status == "True" and condition.type in ("Complete", "Failed"):
            return condition.type
    if job.spec.suspend:
        return "Suspended"
    if job.status and (job.status.active or 0) > 0:
        return "Running"
    return "Pending"


def job_failure(job: V1Job) -> str | None:
    for condition in job.status.conditions or [] if job.status else []:
        if condition.type == "Failed" and condition.status == "True":
            return (
                f"{condition.reason}: {condition.message}"
                if condition.message
                else condition.reason
            )
    return None


def run_summary(job: V1Job, pods: list[V1Pod]) -> dict[str, Any]:
    """One training run as mnistctl reports it (docs/operations.md, "training run")."""
    state = job_state(job)
    result = None
    for pod in reversed(pods):  # the newest pod that reported
        result = pod_result(pod)
        if result is not None:
            break
    status = job.status
    summary: dict[str, Any] = {
        "job": job.metadata.name,
        "created_by": (job.metadata.labels or {}).get(LABEL_MANAGED_BY) or "unknown",
        "state": state,
        "started": _time(status.start_time if status else None),
        "finished": _time(status.completion_time if status else None) or _failed_time(job),
        "result": result.get("result") if result else None,
        "version": result.get("version") if result else None,
        "test_accuracy": result.get("test_accuracy") if result else None,
        "min_accuracy": result.get("min_accuracy") if result else None,
        "epochs": result.get("epochs") if result else None,
        "arch": result.get("arch") if result else None,
        "message": outcome(state, result, job),
    }
    return summary


def outcome(state: str, result: dict[str, Any] | None, job: V1Job) -> str:
    if result and result.get("result") == RESULT_EXPORTED:
        return f"exported version {result.get('version')} (test accuracy {_acc(result)})"
    if result and result.get("result") == RESULT_REFUSED and result.get("reason"):
        return f"quality gate refused the model: {result['reason']}; nothing exported"
    if result and result.get("result") == RESULT_REFUSED:
        return (
            f"quality gate refused the model: test accuracy {_acc(result)} is below "
            f"{result.get('min_accuracy')}; nothing exported"
        )
    if result:
        return f"{result.get('result')}: {result.get('error', '')}".strip()
    if state == "Failed":
        return f"failed ({job_failure(job)})"
    if state == "Complete":
        return "completed without a reported result"
    return state.lower()


def _acc(result: dict[str, Any]) -> str:
    value = result.get("test_accuracy")
    return f"{value:.4f}" if isinstance(value, int | float) else "?"


def _time(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _failed_time(job: V1Job) -> str | None:
    for condition in job.status.conditions or [] if job.status else []:
        if condition.type == "Failed" and condition.status == "True":
            return _time(condition.last_transition_time)
    return None
