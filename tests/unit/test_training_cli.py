"""``python -m training``: the quality gate, argument and data errors, an end-to-end run."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from mnist_contract import (
    METRICS_FILE,
    RESULT_DATA_ERROR,
    RESULT_EXPORTED,
    RESULT_REFUSED,
    version_numbers,
)
from tests.support.paths import REPO_ROOT
from training import cli
from training.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS


@pytest.fixture
def tiny_quick_mode(monkeypatch):
    """--quick on a few hundred images, for in-process runs that only need *a* model."""
    monkeypatch.setattr(cli, "QUICK_TRAIN_EXAMPLES", 256)
    monkeypatch.setattr(cli, "QUICK_TEST_EXAMPLES", 200)


def test_below_min_accuracy_exports_nothing_and_exits_3(
    tmp_path, mnist_data_dir, tiny_quick_mode, caplog
):
    export_dir = tmp_path / "models"
    argv = ["--export-dir", str(export_dir), "--data-dir", str(mnist_data_dir)]
    result_file = tmp_path / "result.json"
    argv += ["--result-file", str(result_file)]
    with caplog.at_level(logging.INFO, logger="training"):
        code = cli.main([*argv, "--quick", "--epochs", "1", "--min-accuracy", "0.99"])
    assert code == cli.EXIT_BELOW_MIN_ACCURACY == 3
    assert "below --min-accuracy 0.9900: nothing exported" in caplog.text
    assert version_numbers(export_dir) == []
    # The result mnistctl reads from the pod's termination message.
    result = json.loads(result_file.read_text())
    assert result["result"] == RESULT_REFUSED
    assert result["min_accuracy"] == 0.99 and result["test_accuracy"] < 0.99
    assert (result["epochs"], result["arch"]) == (1, "compact")
    assert "version" not in result


def test_unreadable_data_is_exit_1_naming_the_file(tmp_path, caplog):
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        (tmp_path / f"{name}.gz").write_bytes(b"not gzip")
    result_file = tmp_path / "result.json"
    argv = ["--export-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path)]
    assert cli.main([*argv, "--result-file", str(result_file)]) == cli.EXIT_DATA_ERROR == 1
    assert f"{TRAIN_IMAGES}.gz: not a valid gzip file" in caplog.text
    result = json.loads(result_file.read_text())
    assert result["result"] == RESULT_DATA_ERROR
    assert f"{TRAIN_IMAGES}.gz: not a valid gzip file" in result["error"]


@pytest.mark.parametrize(
    "bad_args", [["--epochs", "0"], ["--arch", "lenet"], ["--batch-size", "-1"], []]
)
def test_bad_arguments_are_usage_errors(bad_args, tmp_path):
    export_args = ["--export-dir", str(tmp_path)] if bad_args else []
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([*export_args, *bad_args])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, mnist_data_dir):
    export_dir = tmp_path / "models"
    command = [sys.executable, "-m", "training", "--quick", "--epochs", "1", "--seed", "3"]
    result_file = tmp_path / "result.json"
    result = subprocess.run(
        [*command, "--export-dir", str(export_dir), "--result-file", str(result_file)],
        cwd=REPO_ROOT,
        env={**os.environ, "MNIST_DATA_DIR": str(mnist_data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[training] training compact for 1 epochs on 6000 images" in result.stderr
    metrics = json.loads((export_dir / "1" / METRICS_FILE).read_text())
    # Keras writes its per-epoch lines to stdout too; the result is the last line.
    assert result.stdout.splitlines()[-1] == (
        f"exported {export_dir / '1'} (test accuracy {metrics['test_accuracy']:.4f})"
    )
    assert (metrics["epochs"], metrics["seed"]) == (1, 3)
    assert (metrics["train_examples"], metrics["test_examples"]) == (6000, 1000)
    assert metrics["test_accuracy"] > 0.8
    summary = json.loads(result_file.read_text())
    assert summary["result"] == RESULT_EXPORTED and summary["version"] == 1
    assert summary["test_accuracy"] == round(metrics["test_accuracy"], 6)
