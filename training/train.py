"""Fit a network on MNIST and measure it on the test set."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_contract import NUM_CLASSES
from training.data import Split
from training.model import architecture, build_model, with_augmentation


@dataclass(frozen=True)
class TrainedModel:
    model: keras.Model
    arch: str
    epochs: int
    seed: int | None
    train_seconds: float
    test_accuracy: float
    per_class_accuracy: dict[str, float]

    batch_size: int
    train_examples: int
    test_examples: int

    @property
    def parameter_count(self) -> int:
        return self.model.count_params()

    def metrics(self, data_checksums: Mapping[str, str]) -> dict[str, Any]:
        """The JSON record of this run that goes into the exported version's metrics.json."""
        return {
            "arch": self.arch,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "train_examples": self.train_examples,
            "test_examples": self.test_examples,
            "train_seconds": round(self.train_seconds, 2),
            "test_accuracy": self.test_accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "parameter_count": self.parameter_count,
            "data_sha256": dict(data_checksums),
        }


def make_reproducible(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF kernels deterministic (slower)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(
    train_split: Split,
    test_split: Split,
    *,
    arch: str,
    epochs: int,
    batch_size: int = 128,
    seed: int | None = None,
    verbose: int = 0,
    sample_weight: np.ndarray | None = None,
) -> TrainedModel:
    """Build, compile and fit ``arch``; report accuracy on ``test_split``.

    ``seed`` is only recorded: seeding is process-wide, so the caller does it
    (``make_reproducible``) before building anything. ``sample_weight``, one per training
    example, scales each example's loss (feedback weighs differently from MNIST).
    """
    model = build_model(arch)
    trainable = with_augmentation(model, arch)
    steps_per_epoch = math.ceil(len(train_split.images) / batch_size)
    trainable.compile(
        optimizer=architecture(arch).optimizer(steps_per_epoch * epochs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    trainable.fit(
        train_split.images,
        train_split.labels,
        sample_weight=sample_weight,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started
    predicted = _predict_digits(model, test_split.images, batch_size)
    return TrainedModel(
        model=model,
        arch=arch,
        epochs=epochs,
        seed=seed,
        train_seconds=train_seconds,
        test_accuracy=float(np.mean(predicted == test_split.labels)),
        per_class_accuracy=per_class_accuracy(predicted, test_split.labels),
        batch_size=batch_size,
        train_examples=len(train_split.images),
        test_examples=len(test_split.images),
    )


def accuracy(model: keras.Model, split: Split, batch_size: int = 256) -> float | None:
    """The share of ``split`` that ``model`` gets right; None for an empty split."""
    if len(split.labels) == 0:
        return None
    return float(np.mean(_predict_digits(model, split.images, batch_size) == split.labels))


def _predict_digits(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.argmax(model.predict(images, batch_size=batch_size, verbose=0), axis=1)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Recall of each digit present in ``labels`` (a small subset may lack one), keyed "0".."9"."""
    return {
        str(digit): float(np.mean(predicted[labels == digit] == digit))
        for digit in range(NUM_CLASSES)
        if np.any(labels == digit)
    }
