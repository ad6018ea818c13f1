"""The API against its OpenAPI document: a bounded schemathesis run with every check.

Schemathesis generates requests from the document (valid and invalid ones, and
sequences that follow its links from an upload to the prediction, its input image and
its feedback; the operations on one prediction also get a stored one) against the real
gateway (in-process SavedModel, SQLite) over HTTP, and fails on any answer the document
does not allow: a 5xx, an undocumented status or header, a body off its schema, a 405
without Allow, invalid data accepted, valid data refused. Its settings are in
schemathesis.toml beside this file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gateway.config import Config
from gateway.web.app import create_app
from tests.support.http import serve, wait_until_ready
from tests.support.images import encode

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
# Bounded: at most this many generated cases per operation and phase (about 400 in all),
# a fixed seed, so the run takes a minute or two and finds the same things every time.
MAX_EXAMPLES = 15
SEED = 22


@pytest.mark.slow
def test_the_api_conforms_to_its_openapi_document(exported_model_dir, mnist_test_set, tmp_path):
    config = Config(
        model_dir=exported_model_dir,
        sqlite_path=tmp_path / "predictions.sqlite3",
        max_upload_bytes=2 * 1024 * 1024,
        log_level="WARNING",
    )
    with serve(create_app(config)) as url:
        wait_until_ready(url)
        # A stored prediction for the operations on one (schemathesis.toml: PREDICTION_ID).
        upload = {"file": ("seven.png", encode(mnist_test_set[0][0]))}
        created = requests.post(f"{url}/api/v1/predictions", files=upload, timeout=60)
        assert created.status_code == 201, created.text
        prediction_id = created.json()["predictions"][0]["id"]
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(CONFIG_FILE),
                "run",
                f"{url}/api/v1/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--generation-database",
                "none",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, "PREDICTION_ID": prediction_id},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    summary = run.stdout[-6000:]
    assert run.returncode == 0, f"schemathesis found failures:\n{summary}\n{run.stderr[-2000:]}"
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    assert selected and selected[1] == selected[2], summary  # every operation selected
    assert f"Tested: {selected[1]}" in run.stdout, summary  # and every one tested
