"""The gateway image (Dockerfile.gateway), started as the chart starts it.

With the real local Cassandra node and a TF Serving REST endpoint: the endpoint is
``TFServingStandIn`` (serving_standin), a stand-in for TF Serving's REST API that runs the
real SavedModel the training code exported (production runs the official
``tensorflow/serving`` image, which no package registry ships). The container answers
/healthz, turns ready, stores an uploaded digit in Cassandra, runs the schema Job's command
and the chart's helm test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from cassandra.cluster import Session
from packaging.utils import canonicalize_name

from serving_standin.server import TFServingStandIn
from tests.chart.conftest import CHART
from tests.images.conftest import APP_UID, LIMITS, Image, podman
from tests.support.dependencies import (
    LIST_DISTRIBUTIONS,
    PROJECT,
    locked_versions,
    parse_listing,
    project_requirements,
    unmet_requirements,
)
from tests.support.http import free_port
from tests.support.images import encode
from tests.support.waiting import wait_until

API = "/api/v1/predictions"
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "ld", "as", "make")


def listing(image: Image) -> tuple[dict[str, str], dict[str, dict]]:
    return parse_listing(image.run(["python", "-c", LIST_DISTRIBUTIONS]).stdout)


@pytest.fixture(scope="module")
def gateway_listing(gateway_image) -> tuple[dict[str, str], dict[str, dict]]:
    return listing(gateway_image)


def test_image_holds_exactly_the_locked_dependencies(gateway_listing):
    environment, distributions = gateway_listing
    versions = {canonicalize_name(name): d["version"] for name, d in distributions.items()}
    expected = locked_versions("gateway", environment)
    # The venv's own installer stays (as in the official base); the project itself.
    assert versions.pop(PROJECT) is not None
    assert versions.pop("pip") is not None
    assert versions == expected


def test_every_runtime_requirement_is_installed(gateway_listing):
    environment, distributions = gateway_listing
    assert unmet_requirements(project_requirements("gateway"), distributions, environment) == []


def test_image_holds_no_tensorflow_and_no_compiler(gateway_image, gateway_listing):
    _, distributions = gateway_listing
    assert not [n for n in distributions if n.lower().startswith(("tensorflow", "keras"))]
    probe = gateway_image.run(
        [
            "python",
            "-c",
            "import importlib.util, shutil, sys; "
            "print(importlib.util.find_spec('tensorflow') is None); "
            f"print([c for c in {list(COMPILERS)!r} if shutil.which(c)])",
        ]
    )
    assert probe.stdout.split("\n")[:2] == ["True", "[]"], probe.stdout


def test_image_size_is_reported(gateway_image, record_property):
    size = gateway_image.size_mb()
    record_property("gateway_image_mb", round(size))
    print(f"{gateway_image.ref}: {size:.0f} MB")
    # The base plus Flask, gunicorn/gevent, Pillow, numpy and the Cassandra driver.
    assert size < 400


@pytest.fixture(scope="module")
def serving(exported_model_dir) -> Iterator[TFServingStandIn]:
    with TFServingStandIn(exported_model_dir, poll_seconds=0.5) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def keyspace(cassandra_admin: Session) -> Iterator[str]:
    name = f"test_image_{uuid.uuid4().hex[:12]}"
    yield name
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {name}")


@dataclass(frozen=True)
class Running:
    url: str
    container: str


@pytest.fixture(scope="module")
def gateway(gateway_image, serving, cassandra_node, keyspace) -> Iterator[Running]:
    """The image's CMD with the chart's environment (one worker, loopback only)."""
    port = free_port()
    name = f"mnist-gateway-test-{uuid.uuid4().hex[:8]}"
    env = {
        "PORT": str(port),
        # The chart's GUNICORN_CMD_ARGS, with one worker, bound to loopback.
        "GUNICORN_CMD_ARGS": f"--workers 1 --worker-connections 64 --timeout 60 "
        f"--worker-tmp-dir /tmp --access-logfile - --bind 127.0.0.1:{port}",
        "SERVING_URL": serving.url,
        "MODEL_NAME": serving.model_name,
        "CASSANDRA_HOSTS": cassandra_node,
        "CASSANDRA_KEYSPACE": keyspace,
        "LOG_LEVEL": "INFO",
    }
    gateway_image.start(name, env=env)
    try:
        yield Running(f"http://127.0.0.1:{port}", name)
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "--force", "--time", "10", name, check=False)
        print(logs.stdout[-4000:], logs.stderr[-4000:])


def answers(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except (requests.ConnectionError, requests.Timeout):
        return None


def test_gateway_serves_as_the_chart_runs_it(gateway, cassandra_admin, keyspace, mnist_test_set):
    url = gateway.url
    healthz = wait_until(lambda: answers(url + "/healthz"), timeout=120, what="/healthz")
    assert healthz.status_code == 200

    def ready() -> requests.Response | None:
        response = answers(url + "/readyz")
        return response if response is not None and response.status_code == 200 else None

    readyz = wait_until(ready, timeout=180, interval=1, what="/readyz to turn 200")
    assert readyz.json()["model"]["ready"] is True
    assert readyz.json()["store"]["ready"] is True

    images, labels = mnist_test_set
    created = requests.post(url + API, files={"file": ("digit.png", encode(images[0]))}, timeout=60)
    assert created.status_code == 201, created.text
    (prediction,) = created.json()["predictions"]
    assert prediction["digit"] == int(labels[0])

    rows = cassandra_admin.execute(
        f"SELECT id, digit, model_name FROM {keyspace}.predictions"
    ).all()
    assert [(str(r.id), r.digit, r.model_name) for r in rows] == [
        (prediction["id"], prediction["digit"], "mnist")
    ]

    # The container ran as the chart's user, without capabilities or new privileges.
    container = gateway.container
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == str(APP_UID)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    # Even the owner of /opt/venv (root) may not write there: the root filesystem is read-only.
    written = podman("exec", "--user", "0", container, "touch", "/opt/venv/x", check=False)
    assert written.returncode != 0
    assert "Read-only file system" in written.stdout + written.stderr


def test_schema_command_runs_in_the_image(gateway_image, cassandra_node, cassandra_admin):
    keyspace = f"test_image_schema_{uuid.uuid4().hex[:8]}"
    try:
        result = gateway_image.run(
            ["python", "-m", "gateway.store.schema", "--wait", "60"],
            env={"CASSANDRA_HOSTS": cassandra_node, "CASSANDRA_KEYSPACE": keyspace},
            timeout=300,
        )
        assert f"table {keyspace}.predictions" in result.stdout
        tables = cassandra_admin.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
        )
        assert {row.table_name for row in tables} == {"predictions", "prediction_days"}
    finally:
        cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_helm_test_script_passes_in_the_image(gateway_image, gateway, tmp_path):
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    shutil.copy(CHART / "files" / "test_predict.py", fixtures / "test_predict.py")
    shutil.copy(CHART / "files" / "digit-7.png", fixtures / "digit.png")
    # The chart's test pod: the gateway image, the script and the digit from a ConfigMap.
    result = gateway_image.run(
        ["python", "/fixtures/test_predict.py"],
        env={
            "GATEWAY_URL": gateway.url,
            "IMAGE_PATH": "/fixtures/digit.png",
            "EXPECTED_DIGIT": "7",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        volumes=[f"{fixtures}:/fixtures:ro"],
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: digit 7")


@pytest.fixture(scope="module")
def without_packaging(gateway_image) -> Iterator[Image]:
    """The gateway image with one runtime dependency (``packaging``) uninstalled."""
    suffix = uuid.uuid4().hex[:8]
    container, ref = f"mnist-gateway-mutant-{suffix}", f"localhost/mnist-gateway-mutant:{suffix}"
    podman(
        "run", "--name", container, *LIMITS, "--user", "0", gateway_image.ref,
        "pip", "uninstall", "--yes", "packaging",
    )  # fmt: skip
    config = podman(
        "image", "inspect", "--format", "{{json .Config.Cmd}}\n{{.Config.User}}", gateway_image.ref
    ).stdout.split("\n")
    try:
        # The image's own CMD and USER, not those of the uninstalling container.
        podman(
            "commit", "--quiet", "--change", f"CMD {config[0]}", "--change", f"USER {config[1]}",
            container, ref,
        )  # fmt: skip
    finally:
        podman("rm", "--force", container, check=False)
    yield Image(ref)
    podman("rmi", "--force", ref, check=False)


def test_a_missing_runtime_dependency_fails_the_checks(without_packaging):
    """What the first real start of the image hit (gunicorn's gevent worker needs
    ``packaging``): the requirement walk names it, and the CMD dies as it did then."""
    environment, distributions = listing(without_packaging)
    assert unmet_requirements(project_requirements("gateway"), distributions, environment) == [
        "packaging (wanted by gunicorn[gevent]) is not installed"
    ]
    port = free_port()
    started = without_packaging.run(
        env={"PORT": str(port), "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"},
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "No module named 'packaging'" in started.stdout + started.stderr
