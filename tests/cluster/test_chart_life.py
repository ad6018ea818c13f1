"""The chart's whole life on a real API server, for every scenario it ships.

For each helm/mnist/ci/*-values.yaml and k8s/kind-values.yaml, in a namespace
that enforces PodSecurity `restricted`: install (--wait --wait-for-jobs), helm
test, upgrades (replicas, training generation, version pin and back, a gateway
config change), refused upgrades of install-time-only values, rollback,
uninstall and a reinstall over the kept volumes. Each step is checked on the
API objects (ready replicas, Job conditions, pod template hashes, what exists),
not only on Helm's exit code. The nodes are kwok fakes: pods turn Ready and
Jobs complete without running containers, so what is proven here is the API
side (validation, admission, controllers, scheduling, Helm's logic), not the
containers' behaviour.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.support.kube import CHART, HELM_TIMEOUT, Cluster
from tests.support.paths import REPO_ROOT as ROOT

RELEASE = "mnist"
SCENARIOS = {
    p.stem.removesuffix("-values"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
}
SCENARIOS["kind"] = ROOT / "k8s" / "kind-values.yaml"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
# Always in a namespace, whatever a release did there.
NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
KINDS = (
    "deployments,statefulsets,replicasets,jobs,cronjobs,pods,services,configmaps,secrets,"
    "serviceaccounts,persistentvolumeclaims,networkpolicies,poddisruptionbudgets,"
    "horizontalpodautoscalers,ingresses"
)


# ---------- helpers ----------


def install(cluster: Cluster, namespace: str, *args: str, command: str = "install"):
    result = cluster.helm(
        command, RELEASE, str(CHART), "-n", namespace, "--wait", "--wait-for-jobs",
        "--timeout", HELM_TIMEOUT, *args,
    )  # fmt: skip
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    return result


def upgrade(cluster: Cluster, namespace: str, *args: str):
    return install(cluster, namespace, *args, command="upgrade")


def revision(cluster: Cluster, namespace: str) -> int:
    status = json.loads(cluster.helm("status", RELEASE, "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed", status["info"]
    return status["version"]


def computed_values(cluster: Cluster, namespace: str) -> dict:
    return json.loads(
        cluster.helm("get", "values", RELEASE, "-n", namespace, "--all", "-o", "json").stdout
    )


def of_component(cluster: Cluster, namespace: str, kind: str, component: str) -> list[dict]:
    return cluster.items(namespace, kind, f"{INSTANCE},{COMPONENT}={component}")


def condition(obj: dict, kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c["status"]
    return None


def assert_rolled_out(deployment: dict) -> None:
    spec, status = deployment["spec"], deployment["status"]
    name = deployment["metadata"]["name"]
    assert status.get("observedGeneration") == deployment["metadata"]["generation"], name
    for field in ("readyReplicas", "updatedReplicas", "availableReplicas"):
        assert status.get(field, 0) == spec["replicas"], f"{name}: {field} {status}"


def template_hash(cluster: Cluster, namespace: str, component: str) -> str:
    """pod-template-hash of the Deployment's current ReplicaSet."""
    (deployment,) = of_component(cluster, namespace, "deployment", component)
    current = deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    for rs in of_component(cluster, namespace, "replicaset", component):
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == current:
            return rs["metadata"]["labels"]["pod-template-hash"]
    raise AssertionError(f"no ReplicaSet at revision {current} for {component}")


def training_jobs(cluster: Cluster, namespace: str) -> dict[str, dict]:
    return {j["metadata"]["name"]: j for j in of_component(cluster, namespace, "job", "training")}


def assert_workloads_ready(cluster: Cluster, namespace: str, values: dict) -> None:
    for component in ("gateway", "serving"):
        (deployment,) = of_component(cluster, namespace, "deployment", component)
        assert_rolled_out(deployment)
        settings = values[component]
        if settings["autoscaling"]["enabled"]:
            minimum = settings["autoscaling"]["minReplicas"]
            assert deployment["status"]["readyReplicas"] >= minimum, (component, minimum)
            (hpa,) = of_component(cluster, namespace, "hpa", component)
            assert hpa["spec"]["minReplicas"] == minimum
        else:
            assert deployment["spec"]["replicas"] == settings["replicaCount"], component
        pods = [
            p
            for p in of_component(cluster, namespace, "pod", component)
            if "deletionTimestamp" not in p["metadata"]
        ]
        assert len({p["spec"]["nodeName"] for p in pods}) >= 1
        assert all(condition(p, "Ready") == "True" for p in pods), component
    cassandra = values["cassandra"]
    statefulsets = of_component(cluster, namespace, "statefulset", "cassandra")
    if cassandra["enabled"]:
        (sts,) = statefulsets
        assert sts["status"].get("readyReplicas") == cassandra["replicaCount"]
        claims = [
            c
            for c in of_component(cluster, namespace, "pvc", "cassandra")
            if c["metadata"]["name"].startswith("data-")
        ]
        assert len(claims) == cassandra["replicaCount"]
        assert all(c["status"]["phase"] == "Bound" for c in claims)
        if cassandra["antiAffinity"] == "hard":
            pods = of_component(cluster, namespace, "pod", "cassandra")
            assert len({p["spec"]["nodeName"] for p in pods}) == len(pods)
        if cassandra["auth"]["enabled"]:
            (roles,) = of_component(cluster, namespace, "job", "cassandra-roles")
            assert condition(roles, "Complete") == "True"
    else:
        assert statefulsets == []
    (models,) = of_component(cluster, namespace, "pvc", "models")
    assert models["status"]["phase"] == "Bound"
    jobs = training_jobs(cluster, namespace)
    assert len(jobs) == 1 and all(condition(j, "Complete") == "True" for j in jobs.values()), jobs
    # The schema hook ran to completion and was deleted (hook-succeeded).
    status = json.loads(cluster.helm("status", RELEASE, "-n", namespace, "-o", "json").stdout)
    schema_hooks = [h for h in status.get("hooks", []) if h["kind"] == "Job"]
    assert schema_hooks and all(h["last_run"]["phase"] == "Succeeded" for h in schema_hooks)
    assert of_component(cluster, namespace, "job", "schema") == []


def leftovers(cluster: Cluster, namespace: str) -> set[tuple[str, str]]:
    items = json.loads(cluster.kubectl("-n", namespace, "get", KINDS, "-o", "json").stdout)["items"]
    return {(i["kind"], i["metadata"]["name"]) for i in items} - NAMESPACE_DEFAULTS


def user_secrets(values_file: Path) -> set[str]:
    """Secrets a scenario expects to exist already (created by the operator, not the chart)."""
    values = yaml.safe_load(values_file.read_text()) or {}
    names = {values.get("cassandra", {}).get("auth", {}).get("existingSecret")}
    names.add(values.get("gateway", {}).get("ingress", {}).get("tlsSecretName"))
    return {n for n in names if n}


def create_user_secrets(cluster: Cluster, namespace: str, names: set[str]) -> None:
    for name in sorted(names):
        cluster.kubectl(
            "-n", namespace, "create", "secret", "generic", name,
            "--from-literal=cassandra-password=app-password",
            "--from-literal=cassandra-admin-password=admin-password",
        )  # fmt: skip


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    data = cluster.get(namespace, "secret", name)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


# ---------- the whole life, per scenario ----------


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_life(cluster: Cluster, namespace: str, scenario: str):
    values_file = SCENARIOS[scenario]
    base = ("--values", str(values_file))
    secrets = user_secrets(values_file)
    create_user_secrets(cluster, namespace, secrets)

    # Install: every workload up, Jobs complete, claims bound, nothing refused by PodSecurity.
    install(cluster, namespace, *base)
    assert revision(cluster, namespace) == 1
    values = computed_values(cluster, namespace)
    assert_workloads_ready(cluster, namespace, values)
    first_jobs = set(training_jobs(cluster, namespace))
    claims = {c["metadata"]["name"]: c["metadata"]["uid"] for c in cluster.items(namespace, "pvc")}
    gateway_hash = template_hash(cluster, namespace, "gateway")
    serving_hash = template_hash(cluster, namespace, "serving")

    # helm test passes (kwok completes the pod) and leaves nothing behind.
    cluster.helm("test", RELEASE, "-n", namespace, "--timeout", HELM_TIMEOUT)
    assert of_component(cluster, namespace, "pod", "test") == []
    assert of_component(cluster, namespace, "configmap", "test") == []
    assert of_component(cluster, namespace, "networkpolicy", "test") == []

    # Replicas: more pods, same pod template.
    if values["gateway"]["autoscaling"]["enabled"]:
        more = values["gateway"]["autoscaling"]["minReplicas"] + 1
        upgrade(cluster, namespace, *base, "--set", f"gateway.autoscaling.minReplicas={more}")
    else:
        more = values["gateway"]["replicaCount"] + 2
        upgrade(cluster, namespace, *base, "--set", f"gateway.replicaCount={more}")
    (gateway,) = of_component(cluster, namespace, "deployment", "gateway")
    assert_rolled_out(gateway)
    assert gateway["spec"]["replicas"] == more
    assert template_hash(cluster, namespace, "gateway") == gateway_hash
    assert training_jobs(cluster, namespace).keys() == first_jobs

    # A new training generation: a new Job, run to completion; the old one removed.
    generation = (*base, "--set", "training.generation=2")
    upgrade(cluster, namespace, *generation)
    jobs = training_jobs(cluster, namespace)
    assert len(jobs) == 1 and not jobs.keys() & first_jobs, (jobs.keys(), first_jobs)
    assert condition(next(iter(jobs.values())), "Complete") == "True"
    second_jobs = set(jobs)
    assert template_hash(cluster, namespace, "serving") == serving_hash

    # Pin a model version and go back to the newest: TF Serving re-reads its config
    # file, so the serving pods must not roll.
    models_config = f"{RELEASE}-serving-models"
    upgrade(cluster, namespace, *generation, "--set", "serving.versionPolicy.type=specific",
            "--set", "serving.versionPolicy.versions={1}")  # fmt: skip
    pinned = cluster.get(namespace, "configmap", models_config)["data"]["models.config"]
    assert "specific" in pinned and "versions: 1" in pinned, pinned
    upgrade(cluster, namespace, *generation)
    latest = cluster.get(namespace, "configmap", models_config)["data"]["models.config"]
    assert "latest" in latest and "specific" not in latest, latest
    assert template_hash(cluster, namespace, "serving") == serving_hash
    assert training_jobs(cluster, namespace).keys() == second_jobs

    # A gateway setting changes its environment: the gateway pods must roll.
    upgrade(cluster, namespace, *generation, "--set", "gateway.config.logLevel=DEBUG")
    assert cluster.get(namespace, "configmap", f"{RELEASE}-gateway")["data"]["LOG_LEVEL"] == "DEBUG"
    (gateway,) = of_component(cluster, namespace, "deployment", "gateway")
    assert_rolled_out(gateway)
    rolled_hash = template_hash(cluster, namespace, "gateway")
    assert rolled_hash != gateway_hash
    pods = [
        p
        for p in of_component(cluster, namespace, "pod", "gateway")
        if "deletionTimestamp" not in p["metadata"]
    ]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods} == {rolled_hash}

    # Install-time-only values: refused with a message, and no revision is recorded.
    before = revision(cluster, namespace)
    refusals = [("model.persistence.accessModes={ReadOnlyMany}", "model.persistence.accessModes")]
    refusals.append(("model.persistence.size=7Gi", "model.persistence.size"))
    if values["cassandra"]["enabled"]:
        refusals.append(("cassandra.persistence.size=77Gi", "cassandra.persistence.size"))
        refusals.append(
            ("cassandra.persistence.storageClass=other", "cassandra.persistence.storageClass")
        )
    for setting, key in refusals:
        result = cluster.helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "-n",
            namespace,
            *generation,
            "--set",
            setting,
            check=False,
        )
        assert result.returncode != 0, setting
        assert f"{key}:" in result.stderr and "refused" in result.stderr, result.stderr
    assert revision(cluster, namespace) == before

    # Rollback to the first revision: its objects come back, and the training Job
    # Helm recreates is one that exits without training (its marker is on the volume).
    cluster.helm("rollback", RELEASE, "1", "-n", namespace, "--wait", "--wait-for-jobs",
                 "--timeout", HELM_TIMEOUT)  # fmt: skip
    assert revision(cluster, namespace) == before + 1
    jobs = training_jobs(cluster, namespace)
    assert jobs.keys() == first_jobs
    (job,) = jobs.values()
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"/models/.trained/{job['metadata']['name']}" in script and "exit 0" in script
    assert cluster.get(namespace, "configmap", f"{RELEASE}-gateway")["data"]["LOG_LEVEL"] == "INFO"
    assert_workloads_ready(cluster, namespace, values)

    # Uninstall: only the documented keepers stay (volumes, the chart's password
    # Secrets: Cassandra's and retraining's reader's, the operator's Secrets).
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", HELM_TIMEOUT)
    kept = {("PersistentVolumeClaim", name) for name in claims}
    kept |= {("Secret", name) for name in secrets}
    auth, training = values["cassandra"]["auth"], values["training"]
    if auth["enabled"] and not auth["existingSecret"]:
        kept.add(("Secret", f"{RELEASE}-cassandra-auth"))
    feedback = training["feedback"]
    reader_role = auth["enabled"] and training["cronJob"]["enabled"] and feedback["enabled"]
    if reader_role and not feedback["existingSecret"]:
        kept.add(("Secret", f"{RELEASE}-training-reader"))
    assert leftovers(cluster, namespace) == kept

    # Reinstall over the kept volumes: the same claims (same UIDs), still bound.
    install(cluster, namespace, *base)
    assert_workloads_ready(cluster, namespace, values)
    again = {c["metadata"]["name"]: c["metadata"]["uid"] for c in cluster.items(namespace, "pvc")}
    assert again == claims


# ---------- no values at all ----------


def test_bare_install_generates_and_keeps_passwords(cluster: Cluster, namespace: str):
    install(cluster, namespace)
    values = computed_values(cluster, namespace)
    assert_workloads_ready(cluster, namespace, values)
    secret = f"{RELEASE}-cassandra-auth"
    generated = secret_data(cluster, namespace, secret)
    assert set(generated) == {"cassandra-password", "cassandra-admin-password"}
    assert all(len(v) == 32 and v.isalnum() for v in generated.values())
    assert generated["cassandra-password"] != generated["cassandra-admin-password"]

    upgrade(cluster, namespace, "--set", "gateway.replicaCount=3")
    assert secret_data(cluster, namespace, secret) == generated

    # A password given in values wins; the other one is kept.
    upgrade(cluster, namespace, "--set", "cassandra.auth.password=chosen-password")
    changed = secret_data(cluster, namespace, secret)
    assert changed["cassandra-password"] == "chosen-password"
    assert changed["cassandra-admin-password"] == generated["cassandra-admin-password"]

    # Uninstall keeps the Secret with the data it opens; a reinstall reuses both.
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", HELM_TIMEOUT)
    assert secret_data(cluster, namespace, secret) == changed
    install(cluster, namespace)
    assert secret_data(cluster, namespace, secret) == changed


def test_existing_secret_wins_and_the_chart_makes_none(cluster: Cluster, namespace: str):
    create_user_secrets(cluster, namespace, {"operator-secret"})
    install(cluster, namespace, "--set", "cassandra.auth.existingSecret=operator-secret")
    assert not cluster.exists(namespace, "secret", f"{RELEASE}-cassandra-auth")
    (gateway,) = of_component(cluster, namespace, "deployment", "gateway")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CASSANDRA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "operator-secret"


def test_autoscaled_workloads_start_at_the_minimum(cluster: Cluster, namespace: str):
    install(cluster, namespace, "--set", "gateway.autoscaling.enabled=true",
            "--set", "gateway.autoscaling.minReplicas=4",
            "--set", "serving.autoscaling.enabled=true")  # fmt: skip
    (gateway,) = of_component(cluster, namespace, "deployment", "gateway")
    assert gateway["spec"]["replicas"] == 4 and gateway["status"]["readyReplicas"] == 4
    (serving,) = of_component(cluster, namespace, "deployment", "serving")
    assert serving["status"]["readyReplicas"] == 2
    # The HPA scales the gateway out; an upgrade must not take that back.
    cluster.kubectl("-n", namespace, "scale", "deployment", f"{RELEASE}-gateway", "--replicas=6")
    autoscaled = ("--set", "gateway.autoscaling.enabled=true",
                  "--set", "gateway.autoscaling.minReplicas=4",
                  "--set", "serving.autoscaling.enabled=true")  # fmt: skip
    upgrade(cluster, namespace, *autoscaled, "--set", "gateway.config.logLevel=DEBUG")
    (gateway,) = of_component(cluster, namespace, "deployment", "gateway")
    assert gateway["spec"]["replicas"] == 6


# ---------- the plain manifests ----------


def test_plain_manifests_pass_a_server_side_dry_run(cluster: Cluster, namespace: str):
    manifests = ROOT / "k8s" / "manifests"
    objects = [
        o for p in sorted(manifests.glob("*.yaml")) for o in yaml.safe_load_all(p.read_text()) if o
    ]
    result = cluster.kubectl(
        "-n", namespace, "apply", "--dry-run=server", "-f", str(manifests), "-o", "json"
    )
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    applied = json.loads(result.stdout)
    applied_items = applied["items"] if applied.get("kind") == "List" else [applied]
    assert {(o["kind"], o["metadata"]["name"]) for o in applied_items} == {
        (o["kind"], o["metadata"]["name"]) for o in objects
    }
    # A dry run persists nothing.
    assert leftovers(cluster, namespace) == set()
