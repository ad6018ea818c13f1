"""Model directories for predictor tests: copies of the exported version, new versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from mnist_contract import IMAGE_SHAPE, SIGNATURE_NAME, available_versions
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
        warmup_batch=np.zeros((1, *IMAGE_SHAPE), np.float32),
    )
    return int(path.name)


def reference_outputs(version_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the SavedModel itself answers, called directly through TensorFlow."""
    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_NAME]
    outputs = signature(image=tf.constant(images))
    return outputs["probabilities"].numpy(), outputs["digit"].numpy()
