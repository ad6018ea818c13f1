"""The `helm test` script, run for real against a gateway with a trained model.

The chart's test pod runs helm/mnist/files/test_predict.py in the gateway image; here
the same file runs against the gateway app served locally (in-process model, SQLite).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.config import Config
from gateway.web.app import create_app
from tests.chart.conftest import CHART
from tests.support.http import serve

SCRIPT = CHART / "files" / "test_predict.py"


@pytest.fixture(scope="module")
def gateway_url(exported_model_dir, tmp_path_factory):
    config = Config(
        model_dir=exported_model_dir,
        sqlite_path=tmp_path_factory.mktemp("store") / "predictions.sqlite3",
    )
    with serve(create_app(config)) as url:
        yield url


def run_script(url: str, expected: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEWAY_URL": url,
        "IMAGE_PATH": str(CHART / "files" / "digit-7.png"),
        "EXPECTED_DIGIT": str(expected),
        "RETRY_SECONDS": "10",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )


def test_passes_when_the_gateway_reads_the_digit(gateway_url):
    result = run_script(gateway_url, expected=7)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: digit 7")


def test_fails_when_the_answer_is_wrong(gateway_url):
    result = run_script(gateway_url, expected=3)
    assert result.returncode == 1
    assert "FAIL: expected digit 3" in result.stdout
