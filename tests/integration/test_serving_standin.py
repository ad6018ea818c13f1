"""The TF Serving stand-in's version management, config reloads and metrics, in-process
with the real exported model (the image test runs the same code as the chart runs it:
tests/images/test_serving_standin_image.py)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mnistctl import modelconfig
from serving_standin.cli import check_flags, parse_flags, serve
from serving_standin.config import ConfigError, ModelSpec, VersionPolicy
from serving_standin.server import WARMUP_FILE, ServerOptions, TFServingStandIn
from tests.support.http import free_port
from tests.support.models import export_untrained_version
from tests.support.waiting import wait_until

MODEL_CONFIG = """model_config_list {{
  config {{
    name: "mnist"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{
      latest {{ num_versions: 1 }}
    }}
  }}
}}
"""


@pytest.fixture
def base(exported_model_dir: Path, tmp_path: Path) -> Path:
    """A model base path with versions 1 (the trained fixture) and 2 (untrained)."""
    base = tmp_path / "mnist"
    shutil.copytree(exported_model_dir, base)
    assert export_untrained_version(base) == 2
    return base


def get(server: TFServingStandIn, path: str) -> requests.Response:
    return requests.get(server.url + path, timeout=30)


def states(server: TFServingStandIn) -> list[tuple[str, str]]:
    status = get(server, "/v1/models/mnist").json()["model_version_status"]
    return [(entry["version"], entry["state"]) for entry in status]


def served_version(server: TFServingStandIn, path: str = "/v1/models/mnist") -> str:
    return get(server, path + "/metadata").json()["model_spec"]["version"]


def spec(base: Path, policy: VersionPolicy, labels: dict[str, int] | None = None) -> ModelSpec:
    return ModelSpec("mnist", base, policy, labels or {})


def test_policies_load_before_they_unload_and_report_end(base, mnist_test_set):
    with TFServingStandIn(base, poll_seconds=0) as server:
        # The default policy: the newest version; the older one is not loaded at all.
        assert server.served_versions == [2]
        assert states(server) == [("2", "AVAILABLE")]

        server.set_models([spec(base, VersionPolicy("specific", versions=(1,)))])
        assert server.served_versions == [1]
        assert states(server) == [("2", "END"), ("1", "AVAILABLE")]
        assert served_version(server) == "1"
        predicted = requests.post(
            server.url + "/v1/models/mnist:predict",
            json={"inputs": {"image": mnist_test_set[0][:3].tolist()}},
            timeout=30,
        )
        assert predicted.status_code == 200, predicted.text
        assert len(predicted.json()["outputs"]["digit"]) == 3
        missing = requests.post(
            server.url + "/v1/models/mnist/versions/2:predict", json={"instances": [0]}, timeout=30
        )
        assert missing.status_code == 404
        assert missing.json()["error"] == "Servable not found for request: Specific(mnist, 2)"

        server.set_models([spec(base, VersionPolicy("all"))])
        assert server.served_versions == [1, 2]
        assert served_version(server) == "2"

        # A pin to a version that does not exist serves nothing (mnistctl pin --force).
        server.set_models([spec(base, VersionPolicy("specific", versions=(9,)))])
        assert server.served_versions == []
        assert get(server, "/v1/models/mnist/metadata").status_code == 404


def test_labels_name_available_versions_only(base):
    both = VersionPolicy("specific", versions=(1, 2))
    with TFServingStandIn(base, poll_seconds=0) as server:
        with pytest.raises(ConfigError, match="version 1 of model mnist, which is not currently"):
            server.set_models([spec(base, both, {"stable": 1})])
        assert server.served_versions == [2]  # the refused config changed nothing

        server.set_models([spec(base, both)])
        server.set_models([spec(base, both, {"stable": 1, "canary": 2})])
        assert served_version(server, "/v1/models/mnist/labels/stable") == "1"
        assert served_version(server, "/v1/models/mnist/labels/canary") == "2"
        assert get(server, "/v1/models/mnist/labels/stable").json()["model_version_status"] == [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
        unknown = get(server, "/v1/models/mnist/labels/beta/metadata")
        assert (unknown.status_code, unknown.json()["error"]) == (
            400,
            "Unrecognized servable version label: beta",
        )


def test_labels_for_unavailable_versions_when_allowed(base):
    options = ServerOptions(allow_labels_for_unavailable=True)
    models = [spec(base, VersionPolicy("specific", versions=(1,)), {"next": 2})]
    with TFServingStandIn(models=models, poll_seconds=0, options=options) as server:
        assert server.served_versions == [1]
        assert get(server, "/v1/models/mnist/labels/next/metadata").status_code == 404


def test_a_version_that_fails_to_load_is_end_and_the_previous_one_serves(base, tmp_path):
    version_2 = tmp_path / "version-2"
    (base / "2").rename(version_2)
    # Warm-up records that do not parse: the load fails, as TF Serving's would.
    (version_2 / WARMUP_FILE).write_bytes(b"not a TFRecord")
    with TFServingStandIn(base, poll_seconds=0.1) as server:
        assert server.served_versions == [1]
        version_2.rename(base / "2")
        wait_until(
            lambda: server.version_states() == {1: "AVAILABLE", 2: "END"}, timeout=60, what="2"
        )
        status = get(server, "/v1/models/mnist/versions/2").json()["model_version_status"]
        assert status[0]["status"]["error_code"] == "UNKNOWN"
        assert "DataLossError" in status[0]["status"]["error_message"]
        # Not tried again; version 1, which it was to replace, keeps serving.
        time.sleep(0.5)
        assert server.served_versions == [1]
        assert served_version(server) == "1"
    with TFServingStandIn(base, poll_seconds=0, options=ServerOptions(warmup=False)) as server:
        assert server.served_versions == [2]


def test_the_grpc_port_is_listened_on_but_speaks_nothing(base):
    grpc_port = free_port()
    options = ServerOptions(grpc_port=grpc_port)
    with (
        TFServingStandIn(base, poll_seconds=0, options=options),
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5) as connection,
    ):
        connection.settimeout(5)
        assert connection.recv(1) == b""  # accepted, then closed
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", grpc_port)):
        pass


@pytest.fixture
def cli_server(base: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``serve`` with the chart's flags (ports and poll intervals made short) in a thread;
    yields its URL and the model config file."""
    config = tmp_path / "models.config"
    config.write_text(MODEL_CONFIG.format(base=base))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config {\n  enable: true\n  path: "/metrics"\n}\n')
    rest_port = free_port()
    flags = parse_flags(
        [
            f"--port={free_port()}",
            f"--rest_api_port={rest_port}",
            f"--model_config_file={config}",
            "--model_config_file_poll_wait_seconds=1",
            "--file_system_poll_wait_seconds=1",
            f"--monitoring_config_file={monitoring}",
        ]
    )
    check_flags(flags)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(flags, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{rest_port}"
    try:
        wait_until(lambda: _answers(url), timeout=120, what="the stand-in's REST port")
        yield url, config
    finally:
        stop.set()
        thread.join(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/v1/models/mnist/metadata", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_command_line_rereads_its_model_config(cli_server, base):
    url, config = cli_server

    def version() -> str:
        return requests.get(url + "/v1/models/mnist/metadata", timeout=10).json()["model_spec"][
            "version"
        ]

    assert version() == "2"
    release = config.read_text()
    # What `mnistctl pin 1` writes into the ConfigMap, then `mnistctl unpin`.
    config.write_text(modelconfig.pinned(release, 1))
    wait_until(lambda: version() == "1", timeout=30, what="the pin to take effect")
    config.write_text("model_config_list { config { nam: 1 } }")
    time.sleep(2.5)  # re-read twice and refused: version 1 keeps serving
    assert version() == "1"
    config.write_text(release)
    wait_until(lambda: version() == "2", timeout=30, what="the unpin to take effect")

    # A new version on disk is picked up by the file-system poll.
    assert export_untrained_version(base) == 3
    wait_until(lambda: version() == "3", timeout=60, what="version 3")

    metrics = requests.get(url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'serving_standin_versions_available{model_name="mnist"} 1' in metrics.text
    assert 'serving_standin_version_loads_total{model_name="mnist",status="ok"}' in metrics.text
    requests.post(url + "/v1/models/mnist:predict", json={"instances": [[0]]}, timeout=10)
    metrics = requests.get(url + "/metrics", timeout=10).text
    assert ':tensorflow:serving:request_count{model_name="mnist",status="INVALID_ARGUMENT"} 1' in (
        metrics
    )
    assert (
        ':tensorflow:serving:request_latency_count{model_name="mnist",API="predict",'
        'entrypoint="REST"} 1' in metrics
    )
