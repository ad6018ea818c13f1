"""The production entry point: gunicorn builds the app from the environment alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.http import free_port
from tests.support.images import encode

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_serves_the_app_configured_by_environment(
    exported_model_dir, mnist_test_set, tmp_path
):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_DIR": str(exported_model_dir),
        "SQLITE_PATH": str(tmp_path / "predictions.sqlite3"),
        "GUNICORN_CMD_ARGS": "--workers 2 --threads 4 --bind 127.0.0.1:" + str(port),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "gateway:create_app()"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        images, _ = mnist_test_set
        # Several requests reach both workers; each opened its own store and model.
        for index in range(6):
            response = requests.post(
                url + "/api/v1/predictions",
                files={"file": (f"{index}.png", encode(images[index]))},
                timeout=30,
            )
            assert response.status_code == 201, response.text
        history = requests.get(url + "/api/v1/predictions", params={"limit": 10}, timeout=10)
        assert len(history.json()["predictions"]) == 6
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Booting worker" in output


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
