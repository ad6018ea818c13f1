"""The MNIST test digits for benchmarks, from MNIST_DATA_DIR or the download cache."""

from __future__ import annotations

import numpy as np


def load_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [10000, 28, 28, 1] (white on black) and their labels."""
    from training.data import default_data_dir, load_mnist

    test = load_mnist(default_data_dir()).test
    return test.images, test.labels
