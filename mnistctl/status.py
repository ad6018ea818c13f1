"""``mnistctl status`` and ``mnistctl models``: the release at a glance, from API objects.

Nothing here sends traffic to a pod unless ``--live`` asks for it:
- components: Deployments and the StatefulSet, with each not-ready pod's reason;
- Cassandra nodes: a pod is Ready only while ``nodetool status`` shows it UN (the chart's
  readiness probe), so readiness is the Up/Normal answer without exec'ing nodetool;
- model versions and metrics: the training pods' termination messages (mnistctl.training);
- what TF Serving is configured to serve: the model config ConfigMap (mnistctl.modelconfig);
- with ``--live``: TF Serving's own version states and the gateway's /readyz, through the
  API server's service proxy.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import V1Pod

from mnist_contract import RESULT_EXPORTED
from mnistctl import live, modelconfig
from mnistctl.errors import CliError
from mnistctl.output import columns
from mnistctl.release import LABEL_COMPONENT, Release
from mnistctl.training import run_summary

RECENT_RUNS = 5


# ---------- pods ----------


def pod_problem(pod: V1Pod) -> str | None:
    """Why a pod is not Ready, in a few words; None when it is."""
    status = pod.status
    if pod.metadata.deletion_timestamp:
        return "terminating"
    if status is None:
        return "no status yet"
    conditions = {c.type: c for c in status.conditions or []}
    ready = conditions.get("Ready")
    if ready is not None and ready.status == "True":
        return None
    if status.phase in ("Succeeded", "Failed"):
        return status.phase.lower()
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        return f"unschedulable: {scheduled.message or scheduled.reason}"
    for init in status.init_container_statuses or []:
        state = init.state
        if state and state.terminated and state.terminated.exit_code == 0:
            continue
        if state and state.waiting:
            return f"init container {init.name}: {_waiting(state.waiting)}"
        if state and state.terminated:
            return f"init container {init.name} exited {state.terminated.exit_code}"
        return f"init container {init.name} running"
    for container in status.container_statuses or []:
        state = container.state
        if state and state.waiting:
            return f"{container.name}: {_waiting(state.waiting)}"
        if state and state.terminated:
            return f"{container.name}: terminated ({state.terminated.reason})"
        if not container.ready:
            return f"{container.name}: running, not ready (readiness probe)"
    if ready is not None and ready.reason:
        return ready.reason
    return (status.phase or "unknown").lower()


def _waiting(waiting) -> str:
    message = f" ({waiting.message})" if waiting.message else ""
    return f"{waiting.reason or 'waiting'}{message}"[:200]


def _reasons(pods: list[V1Pod]) -> list[str]:
    return [f"{p.metadata.name}: {problem}" for p in pods if (problem := pod_problem(p))]


# ---------- gathering ----------


def gather(release: Release, *, want_live: bool) -> dict[str, Any]:
    release.require()
    pods_by_component: dict[str, list[V1Pod]] = {}
    for pod in release.pods():
        component = (pod.metadata.labels or {}).get(LABEL_COMPONENT, "")
        pods_by_component.setdefault(component, []).append(pod)

    components = []
    for component, deployment in sorted(release.deployments.items()):
        components.append(_deployment(component, deployment, pods_by_component.get(component, [])))
    nodes = []
    for statefulset in release.statefulsets("cassandra"):
        pods = sorted(pods_by_component.get("cassandra", []), key=lambda p: p.metadata.name)
        components.append(_statefulset("cassandra", statefulset, pods))
        nodes = [_cassandra_node(pod) for pod in pods]

    models = gather_models(release, want_live=want_live)
    runs = models.pop("runs")
    return {
        "release": release.name,
        "namespace": release.namespace,
        "healthy": all(c["healthy"] for c in components),
        "components": components,
        "autoscalers": _autoscalers(release),
        "cassandra_nodes": nodes,
        "serving": models["serving"],
        "versions": models["versions"],
        "training": {"runs": runs[-RECENT_RUNS:], "cronjobs": _cronjobs(release)},
        "live": models["live"],
    }


def _deployment(component: str, deployment, pods: list[V1Pod]) -> dict[str, Any]:
    desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    ready = (status.ready_replicas or 0) if status else 0
    reasons = _reasons(pods)
    for condition in (status.conditions or []) if status else []:
        if condition.status == "False" and condition.type in ("Available", "Progressing"):
            reasons.append(f"{condition.type}: {condition.reason}: {condition.message}")
    healthy = desired > 0 and ready >= desired
    if desired == 0:
        reasons.append("scaled to 0 replicas")
    # Reasons are listed even while enough replicas are Ready: a rollout whose new pods
    # cannot start keeps the old ones serving, and that is worth seeing.
    return {
        "component": component,
        "kind": "Deployment",
        "name": deployment.metadata.name,
        "desired": desired,
        "ready": ready,
        "updated": (status.updated_replicas or 0) if status else 0,
        "healthy": healthy,
        "reasons": reasons,
    }


def _statefulset(component: str, statefulset, pods: list[V1Pod]) -> dict[str, Any]:
    desired = statefulset.spec.replicas if statefulset.spec.replicas is not None else 1
    status = statefulset.status
    ready = (status.ready_replicas or 0) if status else 0
    healthy = desired > 0 and ready >= desired
    return {
        "component": component,
        "kind": "StatefulSet",
        "name": statefulset.metadata.name,
        "desired": desired,
        "ready": ready,
        "updated": (status.updated_replicas or 0) if status else 0,
        "healthy": healthy,
        "reasons": _reasons(pods) or ([] if healthy else ["not all replicas created yet"]),
    }


def _cassandra_node(pod: V1Pod) -> dict[str, Any]:
    problem = pod_problem(pod)
    return {
        "pod": pod.metadata.name,
        # Ready means "UN in nodetool status" (the chart's readiness probe).
        "status": "UN" if problem is None else "not UN",
        "node": pod.spec.node_name,
        "reason": problem,
    }


def _autoscalers(release: Release) -> list[dict[str, Any]]:
    names = {d.metadata.name: c for c, d in release.deployments.items()}
    hpas = release.kube.call(
        "list HorizontalPodAutoscalers",
        release.kube.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        release.namespace,
    ).items
    result = []
    for hpa in hpas:
        ref = hpa.spec.scale_target_ref
        if ref.kind != "Deployment" or ref.name not in names:
            continue
        status = hpa.status
        cpu = None
        for metric in (status.current_metrics or []) if status else []:
            if metric.resource and metric.resource.name == "cpu":
                cpu = metric.resource.current.average_utilization
        problems = [
            f"{c.type}: {c.reason}"
            for c in ((status.conditions or []) if status else [])
            if c.status == "False"
        ]
        result.append(
            {
                "component": names[ref.name],
                "name": hpa.metadata.name,
                "min": hpa.spec.min_replicas or 1,
                "max": hpa.spec.max_replicas,
                "current": (status.current_replicas or 0) if status else 0,
                "desired": (status.desired_replicas or 0) if status else 0,
                "cpu_percent": cpu,
                "problems": problems,
            }
        )
    return sorted(result, key=lambda h: h["component"])


def _cronjobs(release: Release) -> list[dict[str, Any]]:
    return [
        {
            "name": cj.metadata.name,
            "schedule": cj.spec.schedule,
            "suspended": bool(cj.spec.suspend),
            "last_schedule": cj.status.last_schedule_time.isoformat().replace("+00:00", "Z")
            if cj.status and cj.status.last_schedule_time
            else None,
        }
        for cj in release.cronjobs()
    ]


def training_runs(release: Release) -> list[dict[str, Any]]:
    return [run_summary(job, release.job_pods(job)) for job in release.training_jobs()]


def serving_config(release: Release) -> tuple[dict[str, Any], Any]:
    """(the serving section of status/models, the ConfigMap)."""
    name = release.model_config_map_name()
    config_map = release.kube.call(
        f"read ConfigMap {name}",
        release.kube.core.read_namespaced_config_map,
        name,
        release.namespace,
    )
    data = config_map.data or {}
    try:
        effective = modelconfig.parse(data.get(modelconfig.CONFIG_KEY, ""))
        from_release = (
            modelconfig.parse(data[modelconfig.RELEASE_KEY])
            if modelconfig.RELEASE_KEY in data
            else None
        )
    except modelconfig.ModelConfigError as error:
        raise CliError(f"ConfigMap {name}: {error}") from None
    pin = (config_map.metadata.annotations or {}).get(modelconfig.PIN_ANNOTATION)
    section = {
        "config_map": name,
        "model": effective["model"],
        "policy": _policy_json(effective),
        "release_policy": _policy_json(from_release) if from_release else None,
        "pinned": int(pin) if pin and pin.isdigit() else None,
    }
    return section, config_map


def _policy_json(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": policy["type"],
        "latest_count": policy.get("latest_count"),
        "versions": policy.get("versions"),
        "labels": policy["labels"],
        "text": modelconfig.describe(policy),
    }


def gather_models(release: Release, *, want_live: bool) -> dict[str, Any]:
    release.require()
    runs = training_runs(release)
    serving, _ = serving_config(release)
    exported: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run["result"] == RESULT_EXPORTED and isinstance(run["version"], int):
            exported[run["version"]] = run
    live_section = None
    live_states: dict[int, str] = {}
    if want_live:
        live_section = {
            "tf_serving": live.tf_serving(release, serving["model"] or "mnist"),
            "gateway": live.gateway_readiness(release),
        }
        live_states = {v["version"]: v["state"] for v in live_section["tf_serving"]["versions"]}
    known = sorted(set(exported) | set(live_states))
    policy = serving["policy"]
    expected = modelconfig.served_versions(
        {
            "type": policy["type"],
            "latest_count": policy["latest_count"] or 1,
            "versions": policy["versions"] or [],
        },
        known,
    )
    serving["expected_versions"] = expected
    versions = []
    for version in known:
        run = exported.get(version)
        versions.append(
            {
                "version": version,
                "test_accuracy": run["test_accuracy"] if run else None,
                "arch": run["arch"] if run else None,
                "epochs": run["epochs"] if run else None,
                "job": run["job"] if run else None,
                "trained": run["finished"] if run else None,
                "configured": version in expected,
                "live_state": live_states.get(version),
            }
        )
    return {
        "release": release.name,
        "namespace": release.namespace,
        "serving": serving,
        "versions": versions,
        "live": live_section,
        "runs": runs,
    }


def models_json(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "runs"}


# ---------- tables ----------


def status_table(data: dict[str, Any]) -> str:
    out = [
        f"Release {data['release']} in namespace {data['namespace']}: "
        + ("healthy" if data["healthy"] else "NOT HEALTHY"),
        "",
        columns(
            ["component", "kind", "name", "ready", "up-to-date", "status"],
            [
                [
                    c["component"],
                    c["kind"],
                    c["name"],
                    f"{c['ready']}/{c['desired']}",
                    c["updated"],
                    "ok" if c["healthy"] else "not ready",
                ]
                for c in data["components"]
            ],
        ),
    ]
    for c in data["components"]:
        for reason in c["reasons"]:
            out.append(f"  {c['component']}: {reason}")
    if data["autoscalers"]:
        out += [
            "",
            columns(
                ["autoscaler", "target", "current", "min", "max", "cpu"],
                [
                    [
                        h["name"],
                        h["component"],
                        h["current"],
                        h["min"],
                        h["max"],
                        f"{h['cpu_percent']}%" if h["cpu_percent"] is not None else None,
                    ]
                    for h in data["autoscalers"]
                ],
            ),
        ]
        for h in data["autoscalers"]:
            for problem in h["problems"]:
                out.append(f"  {h['name']}: {problem}")
    if data["cassandra_nodes"]:
        out += [
            "",
            columns(
                ["cassandra node", "status", "node", "reason"],
                [[n["pod"], n["status"], n["node"], n["reason"]] for n in data["cassandra_nodes"]],
            ),
        ]
    out += ["", _serving_lines(data)]
    out += ["", versions_table(data["versions"])]
    runs = data["training"]["runs"]
    out += [
        "",
        columns(
            ["training run", "state", "by", "finished", "result"],
            [[r["job"], r["state"], r["created_by"], r["finished"], r["message"]] for r in runs],
        )
        if runs
        else "No training runs.",
    ]
    for cj in data["training"]["cronjobs"]:
        out.append(
            f"CronJob {cj['name']}: {cj['schedule']}"
            + (" (suspended)" if cj["suspended"] else "")
            + (f", last run {cj['last_schedule']}" if cj["last_schedule"] else "")
        )
    return "\n".join(out)


def _serving_lines(data: dict[str, Any]) -> str:
    serving = data["serving"]
    line = f"Serving ({serving['config_map']}): {serving['policy']['text']}"
    if serving["pinned"] is not None:
        line += f", pinned by mnistctl to {serving['pinned']}"
        if serving["release_policy"]:
            line += f" (the release asks for {serving['release_policy']['text']})"
    expected = serving.get("expected_versions") or []
    line += "; configured: " + (", ".join(map(str, expected)) or "no known version")
    live_section = data.get("live")
    if live_section is None:
        line += "\n(TF Serving's own view: --live)"
    else:
        tf = live_section["tf_serving"]
        if tf["reachable"]:
            states = ", ".join(f"{v['version']} {v['state']}" for v in tf["versions"]) or "none"
            line += f"\nTF Serving: {states}"
        else:
            line += f"\nTF Serving: unreachable ({tf['error']})"
        gateway = live_section["gateway"]
        if gateway["reachable"]:
            line += (
                f"\nGateway: {'ready' if gateway['ready'] else 'not ready'}, "
                f"model version {gateway['model_version']}"
                + (f" ({gateway['detail']})" if gateway["detail"] and not gateway["ready"] else "")
            )
        else:
            line += f"\nGateway: unreachable ({gateway['detail']})"
    return line


def versions_table(versions: list[dict[str, Any]]) -> str:
    if not versions:
        return "No model versions reported (no training run with a result)."
    return columns(
        ["version", "accuracy", "arch", "epochs", "trained", "configured", "live", "job"],
        [
            [
                v["version"],
                v["test_accuracy"],
                v["arch"],
                v["epochs"],
                v["trained"],
                v["configured"],
                v["live_state"],
                v["job"],
            ]
            for v in versions
        ],
    )


def models_table(data: dict[str, Any]) -> str:
    return versions_table(data["versions"]) + "\n\n" + _serving_lines(data)
