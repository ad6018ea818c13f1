"""The TF Serving STAND-IN image (Dockerfile.serving-standin), run as the chart runs TF Serving.

Not TF Serving: the official ``tensorflow/serving`` image cannot be pulled here and no
registry ships ``tensorflow_model_server``; the stand-in serves TF Serving's REST API over
the real SavedModel with ``tensorflow_model_server``'s flags. What the chart runs is read
from the committed manifests (k8s/manifests/mnist.yaml, the chart rendered with its default
values; tests/chart/test_manifests.py keeps them fresh): the serving container's command
and arguments, its init container's script, the mount paths and the two ConfigMaps.

Each container runs as the pod would: user 10001, read-only root with /tmp writable,
every capability dropped, no new privileges, the model volume read-only, each ConfigMap a
directory laid out as the kubelet lays it out (``..data`` swapped by one rename on an
update), and a network namespace of its own (``--network none``), as a pod has. The test
reaches the container inside that namespace with ``nsenter``, as the kubelet's probes
reach a pod's address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from mnistctl import modelconfig
from tests.images.conftest import APP_UID, AS_THE_CHART, LIMITS, Image, owned_by_app_user, podman
from tests.support.models import export_untrained_version, reference_outputs
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until

MANIFESTS = REPO_ROOT / "k8s" / "manifests" / "mnist.yaml"
# The chart's pod has its own network namespace: so does the container here.
AS_THE_POD = (*(a for a in AS_THE_CHART if a not in ("--network", "host")), "--network", "none")
# Run in the container's network namespace by the host's Python, stdlib only: one HTTP
# request or TCP connection, answered as JSON [status, body].
CLIENT = """
import json, socket, sys, urllib.error, urllib.request
method, url, body = json.load(sys.stdin)
if method == "TCP":
    host, port = url.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        print(json.dumps([1, ""]))
    except OSError as error:
        print(json.dumps([0, repr(error)]))
    raise SystemExit
request = urllib.request.Request(
    url, data=None if body is None else body.encode(), method=method,
    headers={"Content-Type": "application/json"},
)
try:
    with urllib.request.urlopen(request, timeout=120) as response:
        print(json.dumps([response.status, response.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode()]))
except OSError as error:
    print(json.dumps([0, repr(error)]))
"""


@dataclass(frozen=True)
class Chart:
    """The chart's serving pod, as rendered."""

    init_command: list[str]
    command: list[str]
    args: list[str]
    mounts: dict[str, str]  # volume name -> mount path
    model_config: dict[str, str]  # the serving-models ConfigMap
    server_config: dict[str, str]  # the serving ConfigMap
    ports: dict[str, int]  # "grpc", "http"
    metadata_probe: str  # the readiness probe's path
    base_path: str


@pytest.fixture(scope="module")
def chart() -> Chart:
    objects = [o for o in yaml.safe_load_all(MANIFESTS.read_text()) if o]
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    pod = by_name["Deployment", "mnist-serving"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (serving,) = pod["containers"]
    model_config = by_name["ConfigMap", "mnist-serving-models"]["data"]
    return Chart(
        init_command=[*init["command"], *init["args"]],
        command=serving["command"],
        args=serving["args"],
        mounts={m["name"]: m["mountPath"] for m in serving["volumeMounts"]},
        model_config=model_config,
        server_config=by_name["ConfigMap", "mnist-serving"]["data"],
        ports={p["name"]: p["containerPort"] for p in serving["ports"]},
        metadata_probe=serving["readinessProbe"]["httpGet"]["path"],
        base_path=modelconfig.parse(model_config["models.config"])["base_path"],
    )


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet writes it: the data in a timestamped directory,
    ``..data`` pointing at it, each key a symlink through ``..data``; an update writes a new
    directory and swaps ``..data`` in one rename."""

    def __init__(self, root: Path, data: dict[str, str]) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.update(data)

    def update(self, data: dict[str, str]) -> None:
        stamp = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
        stamp.mkdir()
        for key, value in data.items():
            (stamp / key).write_text(value)
        previous = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        (self.root / "..data_tmp").symlink_to(stamp.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        for key in data:
            if not (self.root / key).is_symlink():
                (self.root / key).symlink_to(f"..data/{key}")
        if previous is not None:
            shutil.rmtree(previous)


def publish_version(source: Path, base: Path, version: int) -> None:
    """Put a complete version directory at ``base/version`` in one rename, owned by the
    app user (as an export by the training Job on the same volume)."""
    staging = base.parent / f".staging-{version}"
    shutil.copytree(source, staging)
    owned_by_app_user(staging)
    staging.rename(base / str(version))


@dataclass
class Pod:
    name: str
    pid: int
    http_port: int

    def request(self, method: str, path: str, body: object = None) -> tuple[int, str]:
        """An HTTP request to the container's REST port from inside its network namespace."""
        return self._client(method, f"http://127.0.0.1:{self.http_port}{path}", body)

    def connects(self, port: int) -> bool:
        return self._client("TCP", f"127.0.0.1:{port}", None)[0] == 1

    def json(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, text = self.request(method, path, body)
        return status, json.loads(text) if text.startswith("{") else {"text": text}

    def _client(self, method: str, url: str, body: object) -> tuple[int, str]:
        payload = json.dumps([method, url, None if body is None else json.dumps(body)])
        result = subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", sys.executable, "-I", "-S", "-c", CLIENT],
            input=payload,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        status, text = json.loads(result.stdout)
        return status, text

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


def start_pod(
    image: Image,
    name: str,
    command: list[str],
    volumes: list[str],
    *,
    entrypoint: bool,
    http_port: int = 0,
) -> Pod:
    """``command`` as the pod's container: the chart's ``command`` replaces the image's
    entrypoint and its ``args`` its CMD (``entrypoint``), or the whole of it is the CMD."""
    prefix = ["--entrypoint", json.dumps(command[:1])] if entrypoint else []
    rest = command[1:] if entrypoint else command
    podman(
        "run", "--detach", "--name", name, *LIMITS, *AS_THE_POD,
        *(f"--volume={v}" for v in volumes), *prefix, image.ref, *rest,
    )  # fmt: skip
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    return Pod(name, pid, http_port)


@pytest.fixture
def volumes(tmp_path: Path, chart: Chart) -> dict:
    """An empty model volume (as before the first training run) and the two ConfigMaps."""
    models = tmp_path / "models"
    models.mkdir()
    owned_by_app_user(models)
    return {
        "models": models,
        "model-config": ConfigMapVolume(tmp_path / "model-config", chart.model_config),
        "server-config": ConfigMapVolume(tmp_path / "server-config", chart.server_config),
    }


def mounts(chart: Chart, volumes: dict) -> list[str]:
    paths = {
        "models": volumes["models"],
        "model-config": volumes["model-config"].root,
        "server-config": volumes["server-config"].root,
    }
    return [
        f"{paths[name]}:{chart.mounts[name]}:ro"
        for name in ("models", "model-config", "server-config")
    ]


@pytest.fixture
def pod_name() -> Iterator[str]:
    name = f"mnist-serving-standin-test-{uuid.uuid4().hex[:8]}"
    yield name
    logs = podman("logs", name, check=False)
    podman("rm", "--force", "--time", "10", name, check=False)
    print(logs.stdout[-6000:], logs.stderr[-6000:])


# --- the image -------------------------------------------------------------------------------


def test_image_is_named_a_stand_in_and_runs_as_the_app_user(serving_standin_image, record_property):
    inspect = podman(
        "image", "inspect", "--format", "{{.Config.User}}\n{{json .Config.Cmd}}",
        serving_standin_image.ref,
    ).stdout.split("\n")  # fmt: skip
    assert inspect[0] == f"{APP_UID}:{APP_UID}"
    assert json.loads(inspect[1])[0] == "/usr/bin/tensorflow_model_server"  # exec form
    size = serving_standin_image.size_mb()
    record_property("serving_standin_image_mb", round(size))
    print(f"{serving_standin_image.ref}: {size:.0f} MB")


def test_the_command_line_says_it_is_a_stand_in_and_refuses_unknown_flags(serving_standin_image):
    commands = [
        "--help",
        "--version",
        "--rest_api_port=8501 --rest_api_timeout_in_ms=100",
        "--rest_api_port=8501 --model_base_dir=/models",
    ]
    # One container for all (with vfs storage each container is a full copy of the image).
    script = "exec 2>&1\n" + "".join(
        f'tensorflow_model_server {command}\necho "== exit $?"\n' for command in commands
    )
    output = serving_standin_image.run(["/bin/sh", "-c", script]).stdout
    answers = re.findall(r"(.*?)== exit (\d+)\n", output, re.S)
    assert len(answers) == len(commands), output
    (shown, status), (version, _), (not_implemented, status_3), (unknown, status_4) = answers
    assert status == "0"
    assert "A STAND-IN for TensorFlow Serving" in shown
    assert "does NOT speak gRPC" in shown
    import tensorflow as tf

    assert version.splitlines() == [
        "TensorFlow ModelServer: STAND-IN (serving_standin, REST only)",
        f"TensorFlow Library: {tf.__version__}",
    ]
    assert status_3 == status_4 == "2"
    assert "--rest_api_timeout_in_ms: a TF Serving flag the stand-in does not" in not_implemented
    assert "unknown argument: --model_base_dir=/models" in unknown


def test_the_tensorflow_layer_is_the_training_images(serving_standin_image, train_image):
    """Dockerfile.serving-standin's deps stage is Dockerfile.train's: every layer but the
    last (the stand-in's own code) is one of the training image's, in the same order,
    TensorFlow included."""

    def layers(image: Image) -> list[str]:
        return json.loads(
            podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", image.ref).stdout
        )

    standin, train = layers(serving_standin_image), layers(train_image)
    assert len(standin) == 3  # the base, /opt/venv, the stand-in
    assert standin[:-1] == train[: len(standin) - 1]


# --- the serving pod -------------------------------------------------------------------------


def test_the_init_container_waits_for_the_first_version(
    serving_standin_image, chart, volumes, pod_name, exported_model_dir
):
    base = volumes["models"] / Path(chart.base_path).relative_to(chart.mounts["models"])
    pod = start_pod(
        serving_standin_image,
        pod_name,
        chart.init_command,
        mounts(chart, volumes),
        entrypoint=False,
    )
    wait_until(
        lambda: f"waiting for a model version under {chart.base_path}" in pod.logs(),
        timeout=60,
        interval=1,
        what="the init container to wait",
    )
    base.mkdir()
    owned_by_app_user(base)
    publish_version(exported_model_dir / "1", base, 1)
    exit_code = podman("wait", "--interval", "1s", pod_name, timeout=60).stdout.strip()
    assert exit_code == "0", pod.logs()


def test_serves_pins_and_moves_on_as_the_chart_runs_it(
    serving_standin_image, chart, volumes, pod_name, exported_model_dir, mnist_test_set, tmp_path,
    record_property,
):  # fmt: skip
    base = volumes["models"] / Path(chart.base_path).relative_to(chart.mounts["models"])
    probe = chart.metadata_probe
    pod = start_pod(
        serving_standin_image, pod_name, [*chart.command, *chart.args], mounts(chart, volumes),
        entrypoint=True, http_port=chart.ports["http"],
    )  # fmt: skip

    # Started on an empty volume: the ports open (startup and liveness probes pass) and
    # the readiness probe fails with 404 until a version is AVAILABLE.
    wait_until(lambda: pod.connects(pod.http_port), timeout=180, interval=1, what="REST port")
    assert pod.connects(chart.ports["grpc"])
    assert pod.json("GET", probe) == (
        404,
        {"error": "Servable not found for request: Latest(mnist)"},
    )
    assert pod.json("GET", "/v1/models/mnist")[0] == 404

    # The first version appears: within --file_system_poll_wait_seconds it serves.
    base.mkdir()
    owned_by_app_user(base)
    publish_version(exported_model_dir / "1", base, 1)
    wait_until(lambda: pod.request("GET", probe)[0] == 200, timeout=90, interval=1, what="v1")
    metadata = pod.json("GET", probe)[1]
    assert metadata["model_spec"]["version"] == "1"
    image = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert image["image"]["dtype"] == "DT_FLOAT"

    # A predict as the gateway sends it, answered by the real SavedModel.
    images = mnist_test_set[0][:8]
    status, answer = pod.json(
        "POST",
        "/v1/models/mnist/versions/1:predict",
        {"signature_name": "serving_default", "inputs": {"image": images.tolist()}},
    )
    assert status == 200, answer
    probabilities = np.asarray(answer["outputs"]["probabilities"], np.float32)
    digits = np.asarray(answer["outputs"]["digit"])
    assert probabilities.shape == (8, 10) and digits.shape == (8,)
    expected_probabilities, expected_digits = reference_outputs(exported_model_dir / "1", images)
    assert digits.tolist() == expected_digits.tolist()
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=1e-4, atol=1e-5)

    # The chart's monitoring config: Prometheus metrics on the REST port.
    metrics_path = "/monitoring/prometheus/metrics"
    assert f'path: "{metrics_path}"' in chart.server_config["monitoring.config"]
    status, metrics = pod.request("GET", metrics_path)
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="mnist",status="OK"} 1' in metrics

    # A second training run exports version 2: the policy (latest) moves serving to it.
    scratch = tmp_path / "scratch"
    export_untrained_version(scratch)
    publish_version(scratch / "1", base, 2)

    def states() -> dict[str, str]:
        body = pod.json("GET", "/v1/models/mnist")[1]
        return {v["version"]: v["state"] for v in body.get("model_version_status", [])}

    wait_until(
        lambda: states() == {"2": "AVAILABLE", "1": "END"}, timeout=90, interval=1, what="v2"
    )
    assert pod.json("GET", probe)[1]["model_spec"]["version"] == "2"

    # `mnistctl pin 1` edits the ConfigMap; the kubelet swaps the mounted file; the
    # stand-in re-reads it within --model_config_file_poll_wait_seconds and serves 1 only.
    release = chart.model_config["release.config"]
    volumes["model-config"].update(
        {"models.config": modelconfig.pinned(release, 1), "release.config": release}
    )
    wait_until(
        lambda: states() == {"2": "END", "1": "AVAILABLE"}, timeout=120, interval=1, what="pin"
    )
    assert pod.json("GET", probe)[1]["model_spec"]["version"] == "1"
    missing = pod.json("POST", "/v1/models/mnist/versions/2:predict", {"instances": [[0]]})
    assert missing[0] == 404

    # `mnistctl unpin`: the release's policy again, the newest version.
    volumes["model-config"].update(chart.model_config)
    wait_until(
        lambda: states() == {"2": "AVAILABLE", "1": "END"}, timeout=120, interval=1, what="unpin"
    )

    # The process: the chart's user, no capabilities, no new privileges, read-only root.
    status_lines = Path(f"/proc/{pod.pid}/status").read_text().splitlines()
    fields = dict(line.split(":\t", 1) for line in status_lines if ":\t" in line)
    assert fields["Uid"].split()[0] == str(APP_UID)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    record_property("serving_standin_rss_mb", round(rss_mb))
    print(f"stand-in process: {rss_mb:.0f} MB resident")
    written = podman("exec", "--user", "0", pod_name, "touch", "/opt/venv/x", check=False)
    assert "Read-only file system" in written.stdout + written.stderr

    logs = pod.logs()
    assert "TF Serving STAND-IN (not tensorflow_model_server)" in logs
    assert "Finished reading warmup data" in logs  # the export's warm-up records ran
    assert "Traceback" not in logs
