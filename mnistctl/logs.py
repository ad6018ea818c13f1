"""``mnistctl logs COMPONENT [-f]``: the logs of a component's pods, one stream per pod.

Pods are found by the chart's labels; training means the pods of the newest training Job.
With several pods each line is prefixed with ``[pod]`` (like ``kubectl logs --prefix``);
``-f`` follows every pod at once, one thread per stream, until all end or Ctrl-C.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

import urllib3
from kubernetes.client import V1Pod
from kubernetes.client.rest import ApiException

from mnistctl.errors import EXIT_FAILED, EXIT_NOT_FOUND, CliError
from mnistctl.kube import api_error, status_message
from mnistctl.release import Release

# Containers whose logs a component means (the pod's first container otherwise).
MAIN_CONTAINER = {
    "gateway": "gateway",
    "serving": "serving",
    "cassandra": "cassandra",
    "training": "train",
}
MAX_FOLLOWED = 10


def component_pods(release: Release, component: str) -> list[V1Pod]:
    release.require()
    if component == "training":
        jobs = release.training_jobs()
        if not jobs:
            raise CliError(f'release "{release.name}" has no training Job', EXIT_NOT_FOUND)
        pods = release.job_pods(jobs[-1])
    else:
        pods = sorted(release.pods(component), key=lambda p: p.metadata.name)
    if not pods:
        raise CliError(f'release "{release.name}" has no {component} pod', EXIT_NOT_FOUND)
    return pods


def container_for(pod: V1Pod, component: str, container: str | None) -> str:
    names = [c.name for c in pod.spec.containers] + [c.name for c in pod.spec.init_containers or []]
    wanted = container or MAIN_CONTAINER.get(component)
    if wanted in names:
        return wanted
    if container:
        raise CliError(
            f"pod {pod.metadata.name} has no container {container} ({', '.join(names)})",
            EXIT_NOT_FOUND,
        )
    return pod.spec.containers[0].name


def show(
    release: Release,
    component: str,
    *,
    follow: bool,
    tail: int | None,
    container: str | None,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    pods = component_pods(release, component)[-MAX_FOLLOWED:]
    prefix = len(pods) > 1
    streams = [(pod.metadata.name, container_for(pod, component, container)) for pod in pods]
    if not follow:
        for name, container_name in streams:
            _copy(release, name, container_name, tail=tail, follow=False, prefix=prefix, out=out)
        return
    errors: list[CliError] = []
    lock = threading.Lock()

    def run(name: str, container_name: str) -> None:
        try:
            _copy(
                release,
                name,
                container_name,
                tail=tail,
                follow=True,
                prefix=prefix,
                out=out,
                lock=lock,
            )
        except CliError as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=s, daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    if errors:
        raise errors[0]


def _copy(
    release: Release,
    pod: str,
    container: str,
    *,
    tail: int | None,
    follow: bool,
    prefix: bool,
    out: TextIO,
    lock: threading.Lock | None = None,
) -> None:
    kube = release.kube
    try:
        response = kube.core.read_namespaced_pod_log(
            pod,
            release.namespace,
            container=container,
            follow=follow,
            tail_lines=tail,
            _preload_content=False,
            _request_timeout=(kube.request_timeout, None) if follow else kube.request_timeout,
        )
    except ApiException as error:
        failure = api_error(error, f"logs of pod {pod}")
        if failure.code == EXIT_FAILED:
            # The API server could not reach the pod's kubelet (no node address, node down).
            failure = CliError(
                f"cannot read the logs of pod {pod}: {status_message(error)}", EXIT_FAILED
            )
        raise failure from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise CliError(f"logs of pod {pod}: {error}", EXIT_FAILED) from None
    pending = b""
    label = f"[{pod}] ".encode() if prefix else b""
    try:
        for chunk in response.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                _write(out, b"".join(label + line + b"\n" for line in lines), lock)
        if pending:
            _write(out, label + pending + b"\n", lock)
    finally:
        response.release_conn()


def _write(out: TextIO, data: bytes, lock: threading.Lock | None) -> None:
    text = data.decode(errors="replace")
    if lock is None:
        out.write(text)
        out.flush()
        return
    with lock:
        out.write(text)
        out.flush()
