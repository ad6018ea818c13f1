"""``mnistctl retrain``: one training run now, from the release's own training template.

The template is the CronJob's jobTemplate when the release has one (``training.cronJob``),
else the chart's training Job. The run refuses to start while another training Job of the
release is active: two runs would race for the next version number (the CronJob's
``concurrencyPolicy: Forbid`` for the same reason). With ``--wait`` it follows the Job:
the training pod's log when the cluster can serve it (a real node), phase changes
otherwise, and ends with the exported version or the quality gate's refusal.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from kubernetes.client.rest import ApiException

from mnist_contract import RESULT_EXPORTED
from mnistctl.errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_TIMEOUT, CliError
from mnistctl.kube import status_message
from mnistctl.output import note
from mnistctl.release import LABEL_MANAGED_BY, Release
from mnistctl.status import pod_problem
from mnistctl.training import (
    TRAIN_CONTAINER,
    job_state,
    retrain_job,
    retrain_name,
    run_summary,
)

POLL_SECONDS = 1.0


def template(release: Release) -> tuple[Any, str, str]:
    """(Job spec, source description, name prefix) of the release's training template."""
    cronjobs = release.cronjobs()
    if cronjobs:
        cronjob = cronjobs[0]
        return cronjob.spec.job_template.spec, f"cronjob/{cronjob.metadata.name}", _prefix(release)
    helm_jobs = [
        j
        for j in release.training_jobs()
        if (j.metadata.labels or {}).get(LABEL_MANAGED_BY) == "Helm"
    ]
    if helm_jobs:
        job = helm_jobs[-1]
        return job.spec, f"job/{job.metadata.name}", _prefix(release)
    raise CliError(
        f'release "{release.name}" has no training template: neither a CronJob '
        "(training.cronJob.enabled) nor the chart's training Job (training.enabled)",
        EXIT_NOT_FOUND,
    )


def _prefix(release: Release) -> str:
    # "<fullname>-training" -> "<fullname>"; the gateway Deployment is "<fullname>-gateway".
    return release.deployment("gateway").metadata.name.removesuffix("-gateway")


def start(release: Release, *, epochs: int | None) -> dict[str, Any]:
    release.require()
    for job in release.training_jobs():
        if job_state(job) in ("Running", "Pending"):
            raise CliError(
                f"training Job {job.metadata.name} is still {job_state(job).lower()}: two runs "
                "would race for the next version number (wait for it, or delete it)",
                EXIT_REFUSED,
            )
    spec, source, prefix = template(release)
    labels = {
        k: v
        for k, v in (spec.template.metadata.labels or {}).items()
        if k.startswith("app.kubernetes.io/") or k == "helm.sh/chart"
    }
    job = retrain_job(spec, name=retrain_name(prefix), labels=labels, epochs=epochs, source=source)
    created = release.kube.call(
        "create Job", release.kube.batch.create_namespaced_job, release.namespace, job
    )
    return {
        "release": release.name,
        "namespace": release.namespace,
        "job": created.metadata.name,
        "template": source,
        "args": created.spec.template.spec.containers[0].args,
        "run": None,
    }


def wait(release: Release, job_name: str, *, timeout: float, logs: bool) -> dict[str, Any]:
    """Follow the Job to its end; the run's summary (mnistctl.training.run_summary)."""
    deadline = time.monotonic() + timeout
    last_line = ""
    streamed: set[str] = set()
    while True:
        job = release.kube.call(
            f"read Job {job_name}",
            release.kube.batch.read_namespaced_job,
            job_name,
            release.namespace,
        )
        pods = release.job_pods(job)
        state = job_state(job)
        line = _progress(state, pods)
        if line != last_line:
            note(f"{job_name}: {line}")
            last_line = line
        if state in ("Complete", "Failed"):
            return run_summary(job, pods)
        if logs:
            for pod in pods:
                if pod.metadata.name in streamed or not _started(pod):
                    continue
                streamed.add(pod.metadata.name)
                logs = _stream_log(release, pod.metadata.name)
        if time.monotonic() >= deadline:
            raise CliError(
                f"timed out after {timeout:.0f} s waiting for Job {job_name} ({line}); it keeps "
                "running: see `mnistctl logs training -f`",
                EXIT_TIMEOUT,
            )
        time.sleep(POLL_SECONDS)


def _progress(state: str, pods) -> str:
    if not pods:
        return f"{state.lower()}, no pod yet"
    pod = pods[-1]
    problem = pod_problem(pod)
    phase = pod.status.phase if pod.status else "Unknown"
    detail = f" ({problem})" if problem and phase == "Pending" else ""
    return f"{state.lower()}, pod {pod.metadata.name} {phase}{detail}"


def _started(pod) -> bool:
    return bool(pod.status and pod.status.phase in ("Running", "Succeeded", "Failed"))


def _stream_log(release: Release, pod_name: str) -> bool:
    """Copy the train container's log to stderr until it ends; False when the cluster
    cannot serve logs (then progress comes from the Job's status alone)."""
    try:
        response = release.kube.core.read_namespaced_pod_log(
            pod_name,
            release.namespace,
            container=TRAIN_CONTAINER,
            follow=True,
            _preload_content=False,
            _request_timeout=(release.kube.request_timeout, None),
        )
    except ApiException as error:
        note(f"(no log from {pod_name}: {status_message(error)}; following the Job's status)")
        return False
    try:
        for chunk in response.stream(4096):
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()
    finally:
        response.release_conn()
    return True


def result_exit_code(run: dict[str, Any]) -> int:
    if run["state"] == "Complete" and run["result"] in (RESULT_EXPORTED, None):
        return 0
    return EXIT_FAILED


def retrain_table(data: dict[str, Any]) -> str:
    lines = [f"job.batch/{data['job']} created from {data['template']}"]
    run = data["run"]
    if run is not None:
        lines.append(f"{run['job']}: {run['state']}: {run['message']}")
    return "\n".join(lines)
