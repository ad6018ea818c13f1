"""Model directories for predictor tests: copies of the exported version, new versions."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from gateway.predictors.saved_model import available_versions
from training.export import export_version
from training.model import build_model


def newest_version_dir(base: Path) -> Path:
    return base / str(available_versions(base)[-1])


def install_version(source: Path, base: Path, version: int) -> Path:
    """Copy the version directory ``source`` to ``base/version`` the way exports publish:
    under a temporary name first, then one rename."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".tmp-copy-{version}"
    shutil.copytree(source, staging)
    return staging.rename(base / str(version))


def export_untrained_version(base: Path) -> int:
    """Export a fresh, untrained network as the next version under ``base``; its number."""
    path = export_version(
        build_model(),
        base,
        metrics={"purpose": "predictor tests: a second version"},
        warmup_batch=np.zeros((1, 28, 28, 1), np.float32),
    )
    return int(path.name)


def reference_outputs(version_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the SavedModel itself answers, called directly through TensorFlow."""
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    outputs = signature(image=tf.constant(images))
    return outputs["probabilities"].numpy(), outputs["digit"].numpy()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
