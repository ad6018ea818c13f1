"""The MNIST test digits for benchmarks, from MNIST_DATA_DIR or the download cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def load_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [10000, 28, 28, 1] (white on black) and their labels."""
    from training.data import load_mnist

    data_dir = os.environ.get("MNIST_DATA_DIR")
    test = load_mnist(Path(data_dir) if data_dir else None).test
    return test.images, test.labels
