"""The whole stack on a real node: the chart's own workloads in real containers.

One release, installed once, taken through what an operator does to it: the first
upload through the gateway's Service, its row in Cassandra, ``helm test``, scaling to
three gateway pods, a rolling update under load, a second training run under load.
The tests run in file order and build on one another, as those steps would.
Figures (install to first upload, uploads per second with 1 and 3 gateway pods, each
pod's CPU and memory from the kubelet's stats summary) go to the ``figures`` fixture.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
import time

import pytest
import requests

from tests.node.conftest import NAMESPACE, RELEASE
from tests.support.kube import Cluster
from tests.support.load import SteadyLoad
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until

DIGIT_7 = (REPO_ROOT / "helm" / "mnist" / "files" / "digit-7.png").read_bytes()
ROLLOUT_TIMEOUT = "600s"
LOAD_CLIENTS = 4
THROUGHPUT_SECONDS = 20.0
THROUGHPUT_RUNS = 3


def component_pods(cluster: Cluster, component: str) -> list[dict]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    return cluster.items(NAMESPACE, "pod", selector)


def ready_pods(cluster: Cluster, component: str) -> list[dict]:
    return [
        p
        for p in component_pods(cluster, component)
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def service_url(cluster: Cluster, component: str) -> str:
    """The Service's ClusterIP: the host routes the Service range to the node."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    (service,) = [
        s
        for s in cluster.items(NAMESPACE, "service", selector)
        if s["spec"].get("clusterIP") not in (None, "None")
    ]
    (port,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == "http"]
    return f"http://{service['spec']['clusterIP']}:{port}"


def upload(url: str, image: bytes = DIGIT_7) -> requests.Response:
    return requests.post(f"{url}/api/v1/predictions", files={"file": ("d.png", image)}, timeout=60)


def cql(cluster: Cluster, statement: str) -> str:
    """Run CQL in the Cassandra pod with the admin credentials of the chart's Secret."""
    (secret,) = [
        s
        for s in cluster.items(NAMESPACE, "secret")
        if s["metadata"]["name"].endswith("cassandra-auth")
    ]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    (pod,) = component_pods(cluster, "cassandra")
    return cluster.kubectl(
        "-n", NAMESPACE, "exec", pod["metadata"]["name"], "-c", "cassandra", "--",
        "cqlsh", "-u", "cassandra", "-p", data["cassandra-admin-password"], "-e", statement,
    ).stdout  # fmt: skip


def restarts(pods: list[dict]) -> int:
    return sum(c["restartCount"] for p in pods for c in p["status"].get("containerStatuses", []))


def throughput(url: str) -> float:
    """Median uploads per second of LOAD_CLIENTS clients over THROUGHPUT_RUNS runs."""
    rates = []
    for _ in range(THROUGHPUT_RUNS):
        with SteadyLoad(url, DIGIT_7, clients=LOAD_CLIENTS) as load:
            time.sleep(THROUGHPUT_SECONDS)
        assert load.failed() == [], load.failed()[:5]
        rates.append(load.rate())
    return statistics.median(rates)


def test_install_runs_every_workload_for_real(cluster: Cluster, release: dict) -> None:
    (job,) = cluster.items(NAMESPACE, "job", "app.kubernetes.io/component=training")
    assert job["status"].get("succeeded") == 1, job["status"]
    # The training pod exported version 1 onto the models volume, and the serving pod
    # (the TF Serving STAND-IN) loaded it from there.
    status = requests.get(f"{service_url(cluster, 'serving')}/v1/models/mnist", timeout=30)
    assert status.status_code == 200, status.text
    versions = {v["version"]: v["state"] for v in status.json()["model_version_status"]}
    assert versions == {"1": "AVAILABLE"}, versions
    for component in ("gateway", "serving", "cassandra"):
        pods = ready_pods(cluster, component)
        assert pods, f"no Ready {component} pod"
        for pod in pods:
            assert pod["spec"]["nodeName"] == "mnist-node"
            statuses = pod["status"]["containerStatuses"]
            assert all(c["ready"] and c["state"].get("running") for c in statuses), statuses
            assert restarts([pod]) == 0, f"{component} restarted: {statuses}"


def test_first_upload_through_the_service_lands_in_cassandra(
    cluster: Cluster, release: dict, figures: dict
) -> None:
    url = service_url(cluster, "gateway")
    response = wait_until(
        lambda: (r := upload(url)).status_code == 201 and r,
        timeout=120,
        what="a 201 from the gateway Service",
        interval=1.0,
    )
    figures["install_to_first_upload_seconds"] = round(time.monotonic() - release["installed_at"])
    figures["helm_install_wait_seconds"] = round(release["install_seconds"])
    (prediction,) = response.json()["predictions"]
    assert prediction["digit"] == 7
    assert prediction["model_version"] == "1"  # the API's versions are strings (TF Serving's)
    # The table is partitioned by the UTC day of the prediction (gateway/store/schema.py).
    day = prediction["created_at"][:10]
    rows = cql(cluster, f"SELECT id, digit, model_version FROM mnist.predictions "
                        f"WHERE day = '{day}' AND id = {prediction['id']};")  # fmt: skip
    assert prediction["id"] in rows and "(1 rows)" in rows, rows


def test_helm_test_runs_a_real_pod_and_passes(cluster: Cluster, release: dict) -> None:
    result = cluster.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "300s")
    suite = re.search(r"TEST SUITE:\s+(\S+-test-predict)\n(?:.*\n)*?Phase:\s+(\w+)", result.stdout)
    assert suite and suite.group(2) == "Succeeded", result.stdout


def test_three_gateway_pods_share_the_uploads(
    cluster: Cluster, release: dict, figures: dict
) -> None:
    url = service_url(cluster, "gateway")
    figures["uploads_per_second_1_gateway"] = round(throughput(url), 1)
    cluster.kubectl(
        "-n", NAMESPACE, "scale", "deployment", f"{RELEASE}-gateway", "--replicas=3"
    )  # fmt: skip
    cluster.kubectl(
        "-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}-gateway",
        f"--timeout={ROLLOUT_TIMEOUT}",
    )  # fmt: skip
    cluster.helm(
        "upgrade", RELEASE, f"{REPO_ROOT / 'helm' / 'mnist'}", "-n", NAMESPACE, "--reuse-values",
        "--set", "gateway.replicaCount=3", "--wait", "--timeout", ROLLOUT_TIMEOUT,
    )  # fmt: skip
    pods = ready_pods(cluster, "gateway")
    assert len(pods) == 3
    figures["uploads_per_second_3_gateways"] = round(throughput(url), 1)
    served = {}
    for pod in pods:
        metrics = requests.get(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10).text
        served[pod["metadata"]["name"]] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("gateway_predictions_total")
        )
    assert all(count > 0 for count in served.values()), served


def test_rolling_update_under_load_fails_no_request(cluster: Cluster, release: dict) -> None:
    url = service_url(cluster, "gateway")
    before = {p["metadata"]["name"] for p in ready_pods(cluster, "gateway")}
    with SteadyLoad(url, DIGIT_7, clients=LOAD_CLIENTS) as load:
        time.sleep(5)
        # A config change rolls the gateway pods (their template carries its checksum).
        cluster.helm(
            "upgrade", RELEASE, f"{REPO_ROOT / 'helm' / 'mnist'}", "-n", NAMESPACE,
            "--reuse-values", "--set", "gateway.config.logLevel=DEBUG",
            "--wait", "--timeout", ROLLOUT_TIMEOUT,
        )  # fmt: skip
        time.sleep(5)
    after = {p["metadata"]["name"] for p in ready_pods(cluster, "gateway")}
    assert len(after) == 3 and not (after & before), (before, after)
    assert load.acknowledged(), "no upload was answered during the rollout"
    assert load.failed() == [], load.failed()[:10]


def test_second_training_run_moves_serving_to_version_2(
    cluster: Cluster, release: dict, figures: dict
) -> None:
    url = service_url(cluster, "gateway")
    with SteadyLoad(url, DIGIT_7, clients=2) as load:
        cluster.helm(
            "upgrade", RELEASE, f"{REPO_ROOT / 'helm' / 'mnist'}", "-n", NAMESPACE,
            "--reuse-values", "--set", "training.generation=2",
            "--wait", "--wait-for-jobs", "--timeout", "30m",
        )  # fmt: skip
        wait_until(
            lambda: any(o.model_version == "2" for o in load.outcomes[-20:]),
            timeout=180,
            what="answers from model version 2",
            interval=1.0,
        )
    versions = [o.model_version for o in load.outcomes if o.status == 201]
    assert versions[0] == "1" and versions[-1] == "2", sorted(set(versions))
    assert load.failed() == [], load.failed()[:10]
    figures["uploads_during_retraining"] = len(load.outcomes)


def test_pod_resources_from_the_kubelet(cluster: Cluster, release: dict, figures: dict) -> None:
    summary = json.loads(
        cluster.kubectl("get", "--raw", "/api/v1/nodes/mnist-node/proxy/stats/summary").stdout
    )
    pods = {
        p["podRef"]["name"]: p
        for p in summary["pods"]
        if p["podRef"]["namespace"] == NAMESPACE and p.get("cpu") and p.get("memory")
    }
    assert any("gateway" in name for name in pods), sorted(pods)
    figures["pods"] = {
        name: {
            "cpu_millicores": round(p["cpu"].get("usageNanoCores", 0) / 1e6),
            "memory_working_set_mib": round(p["memory"].get("workingSetBytes", 0) / 2**20),
        }
        for name, p in sorted(pods.items())
    }
    assert all(v["memory_working_set_mib"] > 0 for v in figures["pods"].values()), figures


@pytest.fixture(autouse=True)
def _no_unexpected_restarts(cluster: Cluster, release: dict) -> None:
    """After every step, no container of the release restarted (probes held)."""
    yield
    for component in ("gateway", "serving", "cassandra"):
        assert restarts(component_pods(cluster, component)) == 0, component
