"""The training image (Dockerfile.train), run as the chart's training Job runs it.

A quick run on the mounted MNIST files exports the next version into a mounted volume
as the image's user; that version loads in the gateway's in-process predictor and in
``TFServingStandIn`` (serving_standin: a stand-in for TF Serving's REST API running the
real SavedModel; production serves with the official ``tensorflow/serving`` image of the
same release).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import requests

from gateway.predictors.saved_model import load_version
from mnist_contract import available_versions
from serving_standin.server import TFServingStandIn
from tests.images.conftest import APP_UID, owned_by_app_user


def test_image_size_is_reported(train_image, record_property):
    size = train_image.size_mb()
    record_property("train_image_mb", round(size))
    print(f"{train_image.ref}: {size:.0f} MB")
    assert size > 0


def test_image_runs_the_tensorflow_tf_serving_runs(train_image):
    version = train_image.run(
        ["python", "-c", "from importlib.metadata import version; print(version('tensorflow'))"]
    ).stdout.strip()
    import tensorflow as tf

    # The venv's TensorFlow is the chart's TF Serving release (tests/unit/test_dependency_lock).
    assert version == tf.__version__


def test_training_exports_the_next_version_that_both_servers_load(
    train_image, exported_model_dir, mnist_data_dir, mnist_test_set, tmp_path
):
    models = tmp_path / "models"
    base = models / "mnist"
    # The volume already holds version 1, as after an earlier run.
    shutil.copytree(exported_model_dir / "1", base / "1")
    owned_by_app_user(models)

    result = train_image.run(
        [
            "python", "-m", "training", "--export-dir", "/models/mnist", "--arch", "compact",
            "--quick", "--epochs", "1", "--seed", "7", "--result-file", "/models/result.json",
        ],
        env={"HOME": "/tmp", "MNIST_DATA_DIR": "/data/mnist"},
        volumes=[f"{mnist_data_dir}:/data/mnist:ro", f"{models}:/models"],
        timeout=1800,
    )  # fmt: skip

    assert available_versions(base) == [1, 2], result.stdout + result.stderr
    assert (base / "2").stat().st_uid == APP_UID
    assert all(p.stat().st_uid == APP_UID for p in (base / "2").rglob("*"))
    outcome = json.loads((models / "result.json").read_text())
    assert outcome["version"] == 2, outcome

    images, labels = mnist_test_set
    sample, expected = images[:200], labels[:200]
    loaded = load_version(base, 2)
    probabilities, digits = loaded(sample)
    assert np.mean(digits == expected) > 0.8

    with TFServingStandIn(base) as serving:
        status = requests.get(f"{serving.url}/v1/models/mnist", timeout=30).json()
        assert status["model_version_status"][0]["version"] == "2"
        answer = requests.post(
            f"{serving.url}/v1/models/mnist/versions/2:predict",
            json={"instances": sample[:20].tolist()},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    assert [p["digit"] for p in served] == digits[:20].tolist()
    np.testing.assert_allclose(
        [p["probabilities"] for p in served], probabilities[:20], rtol=1e-4, atol=1e-5
    )
