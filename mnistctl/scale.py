"""``mnistctl scale gateway|serving N``: replicas, aware of a HorizontalPodAutoscaler.

Without an HPA the Deployment's scale subresource is set to N. With one, a replica count
on the Deployment would be undone by the HPA at its next sync, so N becomes the HPA's
``minReplicas`` (and its ``maxReplicas`` when N is above it): the HPA then keeps at least
N replicas and may add more under load; the Deployment is raised to N at once when below.
Helm owns both numbers in the release's values: a later ``helm upgrade`` sets them back
unless the values say the same (``<component>.replicaCount``,
``<component>.autoscaling.minReplicas/maxReplicas``); the output says so.
"""

from __future__ import annotations

import time
from typing import Any

from mnistctl.errors import EXIT_REFUSED, EXIT_TIMEOUT, EXIT_USAGE, CliError
from mnistctl.release import Release
from mnistctl.status import pod_problem

POLL_SECONDS = 1.0


def scale(
    release: Release,
    component: str,
    replicas: int,
    *,
    max_replicas: int | None = None,
    wait: bool = False,
    timeout: float = 300.0,
) -> dict[str, Any]:
    if replicas < 0:
        raise CliError(f"replicas must be 0 or more, not {replicas}", EXIT_USAGE)
    deployment = release.read_deployment(component)
    name = deployment.metadata.name
    before = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    hpa = release.hpa_for(deployment)
    result: dict[str, Any] = {
        "release": release.name,
        "namespace": release.namespace,
        "component": component,
        "deployment": name,
        "replicas_before": before,
        "replicas": replicas,
        "hpa": None,
        "ready": None,
        "helm_values": None,
    }
    if hpa is None:
        if max_replicas is not None:
            raise CliError(
                f"--max applies to an HPA; {name} has none (helm value "
                f"{component}.autoscaling.enabled)",
                EXIT_USAGE,
            )
        _set_replicas(release, name, replicas)
        result["helm_values"] = {f"{component}.replicaCount": replicas}
    else:
        if replicas < 1:
            raise CliError(
                f"{name} is scaled by HorizontalPodAutoscaler {hpa.metadata.name}, which cannot "
                "go below 1 replica; turn autoscaling off in the release's values to scale to 0",
                EXIT_REFUSED,
            )
        old_min, old_max = hpa.spec.min_replicas or 1, hpa.spec.max_replicas
        new_max = max_replicas if max_replicas is not None else max(old_max, replicas)
        if new_max < replicas:
            raise CliError(f"--max {new_max} is below the requested {replicas}", EXIT_USAGE)
        release.kube.call(
            f"patch HorizontalPodAutoscaler {hpa.metadata.name}",
            release.kube.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            hpa.metadata.name,
            release.namespace,
            {"spec": {"minReplicas": replicas, "maxReplicas": new_max}},
        )
        if before < replicas:
            _set_replicas(release, name, replicas)
        result["hpa"] = {
            "name": hpa.metadata.name,
            "min_before": old_min,
            "max_before": old_max,
            "min": replicas,
            "max": new_max,
        }
        result["helm_values"] = {
            f"{component}.autoscaling.minReplicas": replicas,
            f"{component}.autoscaling.maxReplicas": new_max,
        }
    if wait:
        result["ready"] = wait_ready(release, name, replicas, exact=hpa is None, timeout=timeout)
    return result


def _set_replicas(release: Release, name: str, replicas: int) -> None:
    release.kube.call(
        f"scale Deployment {name}",
        release.kube.apps.patch_namespaced_deployment_scale,
        name,
        release.namespace,
        {"spec": {"replicas": replicas}},
    )


def wait_ready(release: Release, name: str, replicas: int, *, exact: bool, timeout: float) -> int:
    """Until the Deployment has ``replicas`` Ready, up-to-date pods (exactly, or at least when
    an HPA may add more); returns the Ready count."""
    deadline = time.monotonic() + timeout
    while True:
        deployment = release.kube.call(
            f"read Deployment {name}",
            release.kube.apps.read_namespaced_deployment,
            name,
            release.namespace,
        )
        status = deployment.status
        ready = (status.ready_replicas or 0) if status else 0
        total = (status.replicas or 0) if status else 0
        updated = (status.updated_replicas or 0) if status else 0
        observed = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        if observed and exact and ready == total == replicas and updated >= replicas:
            return ready
        if observed and not exact and ready >= replicas and updated >= replicas:
            return ready
        if time.monotonic() >= deadline:
            selector = ",".join(
                f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items()
            )
            pods = release.pods(selector=selector)
            problems = [f"{p.metadata.name}: {r}" for p in pods if (r := pod_problem(p))]
            raise CliError(
                f"timed out after {timeout:.0f} s: {ready}/{replicas} Ready"
                + (f" ({'; '.join(problems[:3])})" if problems else ""),
                EXIT_TIMEOUT,
            )
        time.sleep(POLL_SECONDS)


def scale_table(data: dict[str, Any]) -> str:
    lines = []
    hpa = data["hpa"]
    if hpa is None:
        lines.append(
            f"deployment.apps/{data['deployment']} scaled from {data['replicas_before']} to "
            f"{data['replicas']} replicas"
        )
    else:
        lines.append(
            f"horizontalpodautoscaler/{hpa['name']}: replicas "
            f"{hpa['min_before']}..{hpa['max_before']} -> {hpa['min']}..{hpa['max']} "
            f"(it keeps at least {hpa['min']} and may add more)"
        )
    if data["ready"] is not None:
        lines.append(f"{data['ready']} replicas Ready")
    values = " ".join(f"--set {k}={v}" for k, v in data["helm_values"].items())
    lines.append(f"A helm upgrade keeps this only with the same values: {values}")
    return "\n".join(lines)
