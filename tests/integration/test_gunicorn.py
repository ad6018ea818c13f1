"""The production entry point: gunicorn builds the app from the environment alone, and its
gevent workers switch to a new model version while they serve."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from gateway.gunicorn_conf import GUNICORN_CONFIG
from tests.support.http import free_port
from tests.support.images import encode

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_serves_the_app_configured_by_environment(
    exported_model_dir, mnist_test_set, tmp_path
):
    # A private copy of the model base dir, so that a new version can be added.
    model_dir = tmp_path / "models"
    shutil.copytree(exported_model_dir, model_dir)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "MODEL_POLL_SECONDS": "0.5",
        "SQLITE_PATH": str(tmp_path / "predictions.sqlite3"),
        "GUNICORN_CMD_ARGS": "--workers 2 --bind 127.0.0.1:" + str(port),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "--config", GUNICORN_CONFIG, "gateway:create_app()"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    images, _ = mnist_test_set

    def predict(index: int) -> dict:
        response = requests.post(
            url + "/api/v1/predictions",
            files={"file": (f"{index}.png", encode(images[index % len(images)]))},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["predictions"][0]

    try:
        wait_until_ready(url, process)
        # Several requests reach both workers; each opened its own store and model.
        assert {predict(index)["model_version"] for index in range(6)} == {"1"}
        history = requests.get(url + "/api/v1/predictions", params={"limit": 10}, timeout=10)
        assert len(history.json()["predictions"]) == 6

        # A new version appears as the export writes it: complete, renamed into place.
        shutil.copytree(model_dir / "1", model_dir / ".incoming-2")
        (model_dir / ".incoming-2").rename(model_dir / "2")
        # Both workers load it off their event loop while requests go on being answered.
        versions_seen = []
        deadline = time.monotonic() + 60
        while versions_seen[-8:] != ["2"] * 8 and time.monotonic() < deadline:
            versions_seen.append(predict(len(versions_seen))["model_version"])
        assert versions_seen[-8:] == ["2"] * 8, versions_seen
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Booting worker" in output
    assert "Using worker: gevent" in output
    # Patched before anything created a lock or a socket (see gateway/__init__.py).
    assert "MonkeyPatchWarning" not in output


def test_loading_the_gunicorn_config_imports_nothing_gevent_must_patch_first():
    script = (
        "import sys, gateway.gunicorn_conf; "
        "print(sorted(m for m in ('ssl', 'socket', 'threading', 'flask', 'requests', "
        "'cassandra', 'tensorflow') if m in sys.modules and m not in BEFORE))"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys; BEFORE = set(sys.modules); " + script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"gunicorn was not ready within {timeout} s")
