"""bench.models: a benchmark trains its model only when the checkout holds none."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.models import ensure_model
from bench.preprocess_bench import describe_training
from mnist_contract import available_versions

# Arguments `python -m training` refuses: any attempt to train with them fails loudly.
REFUSED_TRAINING_ARGS = ("--epochs", "0")


def test_a_directory_holding_a_version_is_left_alone(exported_model_dir, tmp_path):
    model_dir = tmp_path / "models"
    shutil.copytree(exported_model_dir, model_dir)

    ensure_model(model_dir, REFUSED_TRAINING_ARGS, "nothing")

    assert available_versions(model_dir) == [1]


def test_an_empty_directory_gets_a_trained_version(tmp_path, mnist_data_dir, capsys):
    model_dir = tmp_path / "models"
    training_args = ("--quick", "--epochs", "1", "--seed", "2", "--data-dir", str(mnist_data_dir))

    ensure_model(model_dir, training_args, "a quick model")

    assert available_versions(model_dir) == [1]
    assert f"No model in {model_dir}: training a quick model" in capsys.readouterr().out
    assert describe_training(model_dir / "1").startswith("compact, 1 epoch on 6,000 images, seed 2")


def test_a_failed_training_run_is_an_error(tmp_path):
    with pytest.raises(subprocess.CalledProcessError):
        ensure_model(tmp_path / "models", REFUSED_TRAINING_ARGS, "a model that cannot be")
    assert available_versions(tmp_path / "models") == []


def test_the_description_names_how_the_model_was_trained(exported_model_dir):
    description = describe_training(exported_model_dir / "1")

    assert description.startswith("compact, ")
    assert " MNIST test images" in description
