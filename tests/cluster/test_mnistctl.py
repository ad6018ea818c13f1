"""mnistctl against the real API server of `make cluster-up`, on one installed release.

Every command runs as its own process (``python -m mnistctl``), as an operator would run
it: its exit code, its one-line errors and its ``-o json`` (validated against the schemas
of docs/operations.md) are checked, and each change is read back from the API objects with
kubectl. The nodes are kwok fakes: pods turn Ready and Jobs complete without running a
container. So a training pod writes no termination message here; the tests write the
result JSON into the completed pod's status, where the kubelet would put the file
``python -m training`` writes (tests/unit/test_training_cli.py covers that side). Nothing
here asks a pod anything: ``predict``, ``logs`` and ``--live`` are checked up to the API
server's authorization, never proxied to a fake pod's address.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.kube import CHART, HELM_TIMEOUT, Cluster
from tests.support.paths import REPO_ROOT as ROOT
from tests.unit.test_mnistctl import schema_validator

RELEASE = "mnist"
NAMESPACE = "t-mnistctl"
OPERATOR = "mnist-operator"
NOBODY = "mnist-nobody"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
TRAINING = f"{INSTANCE},app.kubernetes.io/component=training"
MODELS_CONFIG_MAP = f"{RELEASE}-serving-models"
PIN_ANNOTATION = "mnist-serving.local/pinned-version"
CLI_TIMEOUT = 240


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@dataclass(frozen=True)
class Mnistctl:
    kubeconfig: Path
    namespace: str = NAMESPACE

    def __call__(self, *args: str, namespace: str | None = None) -> Result:
        command = [sys.executable, "-m", "mnistctl", "--kubeconfig", str(self.kubeconfig)]
        command += ["-n", namespace or self.namespace, *args]
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
        )
        # Never a traceback, whatever happened.
        assert "Traceback" not in done.stderr, done.stderr
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.code == 0, f"mnistctl {' '.join(args)} exited {result.code}: {result.err}"
        return result

    def json(self, schema: str, *args: str) -> dict:
        data = self.ok(*args, "-o", "json").json()
        schema_validator(schema).validate(data)
        return data


def one_line_error(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


# ---------- the release ----------


def helm_install(cluster: Cluster, *args: str, command: str = "upgrade") -> None:
    cluster.helm(
        command, RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--wait-for-jobs",
        "--timeout", HELM_TIMEOUT, *args,
    )  # fmt: skip


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Cluster]:
    """The chart with its CI defaults and the operator Role bound to the user OPERATOR."""
    cluster.delete_namespace(NAMESPACE)
    cluster.create_namespace(NAMESPACE)
    helm_install(
        cluster,
        "--values", str(CHART / "ci" / "default-values.yaml"),
        "--set", "operator.rbac.create=true",
        "--set", "operator.rbac.subjects[0].kind=User",
        "--set", f"operator.rbac.subjects[0].name={OPERATOR}",
        "--set", "operator.rbac.subjects[0].apiGroup=rbac.authorization.k8s.io",
        command="install",
    )  # fmt: skip
    yield cluster
    cluster.delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def admin(release: Cluster) -> Mnistctl:
    return Mnistctl(release.kubeconfig)


def config_map(cluster: Cluster) -> dict:
    return cluster.get(NAMESPACE, "configmap", MODELS_CONFIG_MAP)


def training_jobs(cluster: Cluster) -> list[dict]:
    return sorted(
        cluster.items(NAMESPACE, "jobs", TRAINING), key=lambda j: j["metadata"]["creationTimestamp"]
    )


def report_result(cluster: Cluster, job: str, result: dict) -> None:
    """Write a training result where the kubelet puts the train container's
    /dev/termination-log: its terminated state's message."""
    (pod,) = cluster.items(NAMESPACE, "pods", f"batch.kubernetes.io/job-name={job}")
    statuses = pod["status"]["containerStatuses"]
    index = next(i for i, s in enumerate(statuses) if s["name"] == "train")
    assert "terminated" in statuses[index]["state"], statuses[index]
    patch = [
        {
            "op": "add",
            "path": f"/status/containerStatuses/{index}/state/terminated/message",
            "value": json.dumps(result),
        }
    ]
    cluster.kubectl(
        "-n", NAMESPACE, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
        "--type=json", "-p", json.dumps(patch),
    )  # fmt: skip


def exported(version: int, accuracy: float) -> dict:
    return {
        "result": "exported", "version": version, "test_accuracy": accuracy,
        "min_accuracy": 0.97, "arch": "compact", "epochs": 3, "train_seconds": 12.5,
    }  # fmt: skip


# ---------- status, scale ----------


def test_status_shows_every_component_ready(release, admin):
    data = admin.json("status", "status")
    components = {c["component"]: c for c in data["components"]}
    assert set(components) == {"gateway", "serving", "cassandra"}
    for name, component in components.items():
        live = release.get(NAMESPACE, component["kind"].lower(), component["name"])
        assert component["desired"] == live["spec"]["replicas"], name
        assert component["ready"] == live["status"]["readyReplicas"] == component["desired"]
        assert component["healthy"] and component["reasons"] == []
    assert data["healthy"] is True
    assert [n["status"] for n in data["cassandra_nodes"]] == ["UN"]
    assert data["serving"]["config_map"] == MODELS_CONFIG_MAP
    assert data["serving"]["policy"]["type"] == "latest" and data["serving"]["pinned"] is None
    (helm_job,) = training_jobs(release)
    (run,) = data["training"]["runs"]
    assert (run["job"], run["state"], run["created_by"]) == (
        helm_job["metadata"]["name"], "Complete", "Helm",
    )  # fmt: skip
    assert data["live"] is None
    table = admin.ok("status").out
    assert f"Release {RELEASE} in namespace {NAMESPACE}: healthy" in table
    assert "(TF Serving's own view: --live)" in table


def test_status_names_the_reason_of_a_pod_that_cannot_run(release, admin):
    deployment = release.get(NAMESPACE, "deployment", f"{RELEASE}-gateway")
    selector = {"nodeSelector": {"mnist-serving.local/no-such-node": "true"}}
    patch = {"spec": {"template": {"spec": selector}}}
    release.kubectl("-n", NAMESPACE, "patch", "deployment", deployment["metadata"]["name"],
                    "--type=strategic", "-p", json.dumps(patch))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            data = admin.json("status", "status")
            gateway = next(c for c in data["components"] if c["component"] == "gateway")
            if any("unschedulable" in r for r in gateway["reasons"]):
                break
            assert time.monotonic() < deadline, gateway
            time.sleep(1)
        assert "didn't match Pod's node affinity/selector" in " ".join(gateway["reasons"])
    finally:
        release.kubectl("-n", NAMESPACE, "rollout", "undo", "deployment", f"{RELEASE}-gateway")
        release.kubectl("-n", NAMESPACE, "rollout", "status", "deployment", f"{RELEASE}-gateway",
                        "--timeout=120s")  # fmt: skip


def test_scale_gateway_waits_for_ready_replicas(release, admin):
    data = admin.json("scale", "scale", "gateway", "3", "--wait")
    assert (data["replicas"], data["ready"], data["hpa"]) == (3, 3, None)
    assert data["helm_values"] == {"gateway.replicaCount": 3}
    live = release.get(NAMESPACE, "deployment", f"{RELEASE}-gateway")
    assert live["spec"]["replicas"] == 3 and live["status"]["readyReplicas"] == 3
    assert "scaled from 3 to 1 replicas" in admin.ok("scale", "gateway", "1", "--wait").out
    assert release.get(NAMESPACE, "deployment", f"{RELEASE}-gateway")["spec"]["replicas"] == 1


def test_scale_with_an_hpa_moves_its_bounds(release, admin):
    helm_install(release, "--reuse-values", "--set", "serving.autoscaling.enabled=true")
    hpa = release.get(NAMESPACE, "hpa", f"{RELEASE}-serving")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    data = admin.json("scale", "scale", "serving", "4", "--wait")
    assert data["hpa"] == {"name": f"{RELEASE}-serving", "min_before": 2, "max_before": 6,
                           "min": 4, "max": 6}  # fmt: skip
    assert data["ready"] >= 4
    hpa = release.get(NAMESPACE, "hpa", f"{RELEASE}-serving")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 6)
    assert release.get(NAMESPACE, "deployment", f"{RELEASE}-serving")["spec"]["replicas"] >= 4
    # Above maxReplicas: the ceiling moves with it.
    admin.ok("scale", "serving", "8")
    hpa = release.get(NAMESPACE, "hpa", f"{RELEASE}-serving")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (8, 8)
    status = admin.json("status", "status")
    (autoscaler,) = status["autoscalers"]
    assert (autoscaler["component"], autoscaler["min"], autoscaler["max"]) == ("serving", 8, 8)
    # An HPA cannot hold 0 replicas: refused, nothing changed.
    message = one_line_error(admin("scale", "serving", "0"), 6)
    assert "cannot go below 1 replica" in message
    assert release.get(NAMESPACE, "hpa", f"{RELEASE}-serving")["spec"]["minReplicas"] == 8
    helm_install(release, "--reuse-values", "--set", "serving.autoscaling.enabled=false")
    assert not release.exists(NAMESPACE, "hpa", f"{RELEASE}-serving")


# ---------- retrain, models, pin ----------


def test_retrain_refuses_while_a_training_job_runs(release, admin):
    (helm_job,) = training_jobs(release)
    blocked = json.loads(json.dumps(helm_job))
    name = f"{RELEASE}-training-blocked"
    template = blocked["spec"]["template"]
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                "batch.kubernetes.io/job-name"):  # fmt: skip
        template["metadata"]["labels"].pop(key, None)
    template["spec"]["nodeSelector"] = {"mnist-serving.local/no-such-node": "true"}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": helm_job["metadata"]["labels"]},
        "spec": {"backoffLimit": 0, "template": template},
    }
    release.run_stdin("-n", NAMESPACE, "apply", "-f", "-", stdin=json.dumps(job))
    try:
        deadline = time.monotonic() + 30
        while not release.get(NAMESPACE, "job", name).get("status", {}).get("active"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        message = one_line_error(admin("retrain"), 6)
        assert f"training Job {name} is still running" in message
        assert len(training_jobs(release)) == 2  # no Job created
    finally:
        release.kubectl("-n", NAMESPACE, "delete", "job", name, "--wait=true")


def test_retrain_wait_ends_with_a_completed_job(release, admin):
    before = {j["metadata"]["name"] for j in training_jobs(release)}
    data = admin.json("retrain", "retrain", "--wait", "--no-logs", "--epochs", "2")
    assert data["job"] not in before and data["template"].startswith("job/mnist-training-")
    assert data["run"]["state"] == "Complete" and data["run"]["created_by"] == "mnistctl"
    job = release.get(NAMESPACE, "job", data["job"])
    assert any(
        c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "training"]
    assert "--epochs=2" in container["args"] and data["args"] == container["args"]
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mnistctl"
    # The same hardened pod as the chart's Job (restricted PodSecurity admitted it).
    helm_job = release.get(NAMESPACE, "job", sorted(before)[0])
    assert (
        container["securityContext"]
        == helm_job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    )


def test_retrain_from_the_cronjob_template(release, admin):
    helm_install(release, "--reuse-values", "--set", "training.cronJob.enabled=true",
                 "--set", "training.cronJob.suspend=true")  # fmt: skip
    result = admin.ok("retrain", "--wait", "--no-logs")
    assert "created from cronjob/mnist-retrain" in result.out
    assert "Complete: completed without a reported result" in result.out
    assert f"{RELEASE}-retrain-" in result.err  # progress lines go to stderr
    status = admin.json("status", "status")
    (cronjob,) = status["training"]["cronjobs"]
    assert (cronjob["name"], cronjob["suspended"]) == (f"{RELEASE}-retrain", True)


def test_models_lists_reported_versions_with_their_metrics(release, admin):
    jobs = [j["metadata"]["name"] for j in training_jobs(release)]
    assert len(jobs) >= 3
    report_result(release, jobs[0], exported(1, 0.9812))
    report_result(release, jobs[1], exported(2, 0.9905))
    refused = {"result": "refused", "test_accuracy": 0.95, "min_accuracy": 0.97, "epochs": 3,
               "arch": "compact"}  # fmt: skip
    report_result(release, jobs[2], refused)
    data = admin.json("models", "models")
    versions = {v["version"]: v for v in data["versions"]}
    assert set(versions) == {1, 2}
    assert (versions[1]["test_accuracy"], versions[1]["job"]) == (0.9812, jobs[0])
    assert (versions[2]["test_accuracy"], versions[2]["epochs"]) == (0.9905, 3)
    # The default policy serves the newest.
    assert [v["configured"] for v in (versions[1], versions[2])] == [False, True]
    assert data["serving"]["expected_versions"] == [2]
    runs = {r["job"]: r for r in admin.json("status", "status")["training"]["runs"]}
    assert runs[jobs[2]]["message"] == (
        "quality gate refused the model: test accuracy 0.9500 is below 0.97; nothing exported"
    )
    table = admin.ok("models").out
    assert table.splitlines()[0].split()[:3] == ["VERSION", "ACCURACY", "ARCH"]


def test_pin_survives_helm_upgrades_and_unpin_restores_the_release_policy(release, admin):
    before = config_map(release)["data"]
    data = admin.json("pin", "pin", "1")
    assert (data["pinned"], data["pinned_before"]) == (1, None)
    pinned = config_map(release)
    assert "specific { versions: 1 }" in pinned["data"]["models.config"]
    assert pinned["data"]["release.config"] == before["release.config"]
    assert pinned["metadata"]["annotations"][PIN_ANNOTATION] == "1"
    models = admin.json("models", "models")
    assert models["serving"]["pinned"] == 1 and models["serving"]["expected_versions"] == [1]

    # An upgrade that does not touch versions keeps the pin, byte for byte.
    helm_install(release, "--reuse-values", "--set", "gateway.replicaCount=2")
    after = config_map(release)
    assert after["data"] == pinned["data"]
    assert after["metadata"]["annotations"][PIN_ANNOTATION] == "1"
    # One that changes the policy lands in release.config; the pin still holds.
    helm_install(release, "--reuse-values", "--set", "serving.versionPolicy.latestCount=2")
    after = config_map(release)
    assert after["data"]["models.config"] == pinned["data"]["models.config"]
    assert "latest { num_versions: 2 }" in after["data"]["release.config"]

    # A version nobody reported is refused, nothing changed.
    message = one_line_error(admin("pin", "7"), 6)
    assert "version 7 is not among the versions training runs reported (1, 2)" in message
    assert config_map(release)["data"] == after["data"]

    data = admin.json("pin", "unpin")
    assert (data["pinned"], data["pinned_before"]) == (None, 1)
    unpinned = config_map(release)
    assert unpinned["data"]["models.config"] == unpinned["data"]["release.config"]
    assert "latest { num_versions: 2 }" in unpinned["data"]["models.config"]
    assert PIN_ANNOTATION not in unpinned["metadata"].get("annotations", {})
    helm_install(release, "--reuse-values", "--set", "gateway.replicaCount=1")
    assert config_map(release)["data"] == unpinned["data"]
    assert "not pinned" in admin.ok("unpin").out


# ---------- errors ----------


def test_error_paths_are_one_line_with_their_exit_code(release, admin, tmp_path):
    message = one_line_error(admin("status", namespace="no-such-namespace"), 4)
    assert message == 'error: namespace "no-such-namespace" not found'
    message = one_line_error(admin("status", "--release", "other"), 4)
    assert f'release "other" not found in namespace "{NAMESPACE}"' in message
    message = one_line_error(admin("predict", str(CHART / "files" / "digit-7.png"),
                                   "--release", "other"), 4)  # fmt: skip
    assert 'release "other" not found' in message
    config = yaml.safe_load(release.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    message = one_line_error(Mnistctl(dead)("status"), 3)
    assert (
        message == "error: cannot reach the API server at https://127.0.0.1:9: connection refused"
    )


def test_logs_without_a_real_node_fail_in_one_line(release, admin):
    # kwok's nodes publish no address, so the API server has no kubelet to ask: the request
    # passes authorization, then fails before any connection.
    message = one_line_error(admin("logs", "gateway", "--tail", "5"), 1)
    assert message.startswith(f"error: cannot read the logs of pod {RELEASE}-gateway-"), message
    assert "address" in message, message


# ---------- RBAC ----------


def client_kubeconfig(cluster: Cluster, user: str, directory: Path) -> Path:
    """A kubeconfig for a client certificate with CN=user, signed through the API's own
    CertificateSigningRequest flow (signer kubernetes.io/kube-apiserver-client)."""
    key, csr = directory / f"{user}.key", directory / f"{user}.csr"
    for command in (
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
        ["req", "-new", "-key", str(key), "-subj", f"/CN={user}", "-out", str(csr)],
    ):
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    name = f"{NAMESPACE}-{user}"
    cluster.kubectl("delete", "csr", name, "--ignore-not-found")
    request = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(csr.read_bytes()).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 3600,
            "usages": ["client auth"],
        },
    }
    cluster.run_stdin("apply", "-f", "-", stdin=json.dumps(request))
    cluster.kubectl("certificate", "approve", name)
    deadline = time.monotonic() + 60
    while not (certificate := _csr(cluster, name).get("status", {}).get("certificate")):
        assert time.monotonic() < deadline, "the controller-manager signed no certificate"
        time.sleep(0.5)
    cluster.kubectl("delete", "csr", name)
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [
        {
            "name": user,
            "user": {
                "client-certificate-data": certificate,
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            },
        }
    ]
    for context in config["contexts"]:
        context["context"]["user"] = user
    path = directory / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _csr(cluster: Cluster, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "csr", name, "-o", "json").stdout)


def can(user: Mnistctl, verb: str, resource: str, name: str, subresource: str = "") -> bool:
    """SelfSubjectAccessReview as that user: may it make this request?"""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": NAMESPACE, "verb": verb, "resource": resource,
                "subresource": subresource, "name": name,
            }
        },
    }  # fmt: skip
    done = subprocess.run(
        # --validate=false: kubectl's client-side validation lists CRDs, a right the
        # operator has no need of.
        [os.environ["KUBECTL"], "--kubeconfig", str(user.kubeconfig), "create", "-f", "-",
         "--validate=false", "-o", "json"],
        input=json.dumps(review), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)["status"]["allowed"]


def test_a_user_bound_to_the_operator_role_runs_every_command(release, tmp_path):
    operator = Mnistctl(client_kubeconfig(release, OPERATOR, tmp_path))
    assert operator.json("status", "status")["healthy"] is True
    assert {v["version"] for v in operator.json("models", "models")["versions"]} == {1, 2}
    assert operator.json("scale", "scale", "gateway", "2", "--wait")["ready"] == 2
    assert operator.json("pin", "pin", "2")["pinned"] == 2
    assert operator.json("pin", "unpin")["pinned_before"] == 2
    assert operator.json("retrain", "retrain", "--wait", "--no-logs")["run"]["state"] == "Complete"
    # predict, logs and --live reach pods, which kwok's nodes do not run: their requests
    # are checked with the API server's authorizer, under the names mnistctl uses.
    for verb, resource, name, subresource in (
        ("create", "services", f"{RELEASE}-gateway:http", "proxy"),  # predict
        ("get", "services", f"{RELEASE}-gateway:http", "proxy"),  # status --live
        ("get", "services", f"{RELEASE}-serving:http", "proxy"),  # models --live, pin --wait
        ("get", "services", f"{RELEASE}-gateway", ""),
        ("get", "pods", "any-pod", "log"),  # logs, retrain --wait
    ):
        assert can(operator, verb, resource, name, subresource), (verb, resource, name)
    # ... and nothing beyond the release's own objects.
    assert not can(operator, "get", "secrets", f"{RELEASE}-cassandra-auth")
    assert not can(operator, "create", "pods", "x", "exec")
    assert not can(operator, "patch", "configmaps", "kube-root-ca.crt")
    assert not can(operator, "create", "services", "kubernetes:https", "proxy")


def test_a_user_without_the_role_gets_the_clear_error(release, tmp_path):
    nobody = Mnistctl(client_kubeconfig(release, NOBODY, tmp_path))
    jobs = len(training_jobs(release))
    image = str(CHART / "files" / "digit-7.png")
    for command in (["status"], ["models"], ["scale", "gateway", "2"], ["retrain"], ["pin", "1"],
                    ["unpin"], ["predict", image], ["logs", "gateway"]):  # fmt: skip
        message = one_line_error(nobody(*command), 5)
        assert f'is forbidden: User "{NOBODY}" cannot list resource "deployments"' in message
        assert message.endswith("(mnistctl's rights: the chart's operator Role, "
                                "operator.rbac.create=true)"), message  # fmt: skip
    assert len(training_jobs(release)) == jobs  # nothing was created
