"""Fixtures shared by every test package: the real MNIST test set and a small trained model.

TensorFlow is imported inside the fixtures, so tests that use neither do not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Enough for a usable model (about 90% accuracy) in seconds: tests that check a digit
# round-trips through the gateway need right answers on most clear test images.
FIXTURE_TRAIN_EXAMPLES = 3_000
FIXTURE_EPOCHS = 2
FIXTURE_SEED = 20190101


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """$MNIST_DATA_DIR, which ``make`` exports; a test run without it fails, never skips."""
    value = os.environ.get("MNIST_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail(
            f"MNIST_DATA_DIR is {value!r}, not a directory with the MNIST IDX files. Run the "
            "tests through `make test`, or export MNIST_DATA_DIR=../shared/data/mnist.",
            pytrace=False,
        )
    return Path(value)


@pytest.fixture(scope="session")
def mnist_test_set(mnist_data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 real test images, float32 [n, 28, 28, 1] in [0, 1], and uint8 labels."""
    from training.data import TEST_IMAGES, TEST_LABELS, load_split

    test = load_split(TEST_IMAGES, TEST_LABELS, mnist_data_dir)
    return test.images, test.labels


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory: pytest.TempPathFactory, mnist_data_dir: Path) -> Path:
    """A model base dir holding one version, ``1``, trained briefly by the real training code.

    Shared by the whole session, so read-only: copy it to add or remove versions.
    """
    import keras

    from training.data import load_mnist
    from training.export import export_trained
    from training.train import train

    mnist = load_mnist(mnist_data_dir)
    # Seeded but without op determinism, which is process-wide and would slow other tests.
    keras.utils.set_random_seed(FIXTURE_SEED)
    trained = train(
        mnist.train.head(FIXTURE_TRAIN_EXAMPLES),
        mnist.test.head(1_000),
        arch="compact",
        epochs=FIXTURE_EPOCHS,
        seed=FIXTURE_SEED,
    )
    base = tmp_path_factory.mktemp("models")
    export_trained(trained, base, data_checksums=mnist.checksums, test_images=mnist.test.images)
    return base
