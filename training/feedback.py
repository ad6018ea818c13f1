"""Feedback: the predictions users labelled, as training data and as a test of each version.

The gateway stores every prediction with the 28x28 input the model saw and the version that
made it; a user's label makes it an example. Retraining reads them all from the store the
gateway writes (same settings, opened read-only: ``gateway.store.open_reader``) and

- splits them into train and holdout by id: a hash of the id decides, so an example stays
  on its side however much feedback arrives later, and a version trained on the train side
  never saw the holdout it is compared on;
- weights the train side so that it cannot outweigh MNIST: per digit, the feedback that
  claims that digit weighs at most ``max_share`` of MNIST's training examples of it (2% by
  default). A burst of deliberate mislabels is then label noise of at most that share on
  one class, which a CNN trained on the rest shrugs off, while a few hundred real examples
  of a new style still weigh a few times one MNIST image each;
- counts, per model version, how often the stored prediction matched the label.

The gateway's packages are imported only when feedback is read, so training without
feedback needs nothing of the gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from mnist_contract import IMAGE_SHAPE, NUM_CLASSES, SIGNATURE_NAME, available_versions
from training.data import Split

if TYPE_CHECKING:
    from gateway.store.base import PredictionRecord, Store

DEFAULT_HOLDOUT_PERCENT = 20
# Each feedback example weighs this many MNIST examples, within the per-digit share below.
DEFAULT_WEIGHT = 4.0
DEFAULT_MAX_SHARE = 0.02


@dataclass(frozen=True)
class Feedback:
    """The labelled predictions of one store snapshot, split by id."""

    train: Split
    holdout: Split
    source: str  # which store, without credentials
    snapshot: datetime | None  # the newest label read: what this run saw of the store
    # model version -> {"labelled", "correct", "accuracy"} of the predictions it made.
    by_model_version: dict[str, dict[str, float]]

    @property
    def labelled(self) -> int:
        return len(self.train.labels) + len(self.holdout.labels)


def in_holdout(prediction_id: UUID, holdout_percent: int) -> bool:
    """Whether the example with this id belongs to the holdout: the same answer in every run."""
    digest = hashlib.sha256(prediction_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % 100 < holdout_percent


def split_feedback(
    records: Iterable[PredictionRecord], *, holdout_percent: int, source: str
) -> Feedback:
    """Train and holdout from labelled records, each side in id order (a stable order)."""
    labelled = sorted((r for r in records if r.label is not None), key=lambda r: r.id.bytes)
    sides: dict[bool, list[PredictionRecord]] = {False: [], True: []}
    for record in labelled:
        sides[in_holdout(record.id, holdout_percent)].append(record)
    return Feedback(
        train=_as_split(sides[False]),
        holdout=_as_split(sides[True]),
        source=source,
        snapshot=max((r.labelled_at for r in labelled if r.labelled_at), default=None),
        by_model_version=accuracy_by_model_version(labelled),
    )


def _as_split(records: list[PredictionRecord]) -> Split:
    images = np.frombuffer(b"".join(r.input_image for r in records), dtype=np.uint8)
    return Split(
        images=(images.astype(np.float32) / 255.0).reshape(len(records), *IMAGE_SHAPE),
        labels=np.array([r.label for r in records], dtype=np.uint8),
    )


def accuracy_by_model_version(records: Iterable[PredictionRecord]) -> dict[str, dict[str, float]]:
    """For each model version, its labelled predictions and how many it got right."""
    counts: dict[str, list[int]] = {}
    for record in records:
        if record.label is not None:
            seen = counts.setdefault(record.model_version, [0, 0])
            seen[0] += 1
            seen[1] += int(record.digit == record.label)
    return {
        version: {"labelled": total, "correct": correct, "accuracy": correct / total}
        for version, (total, correct) in sorted(counts.items(), key=_version_order)
    }


def _version_order(item: tuple[str, Any]) -> tuple[int, int | str]:
    version = item[0]
    return (0, int(version)) if version.isdigit() else (1, version)


def feedback_weights(
    feedback_labels: np.ndarray,
    mnist_labels: np.ndarray,
    *,
    weight: float = DEFAULT_WEIGHT,
    max_share: float = DEFAULT_MAX_SHARE,
) -> np.ndarray:
    """Per-example training weights of the feedback (MNIST's examples weigh 1 each).

    Each example weighs ``weight``, except where the examples claiming one digit would then
    weigh more than ``max_share`` of MNIST's training examples of that digit: there they
    share that much equally.
    """
    weights = np.zeros(len(feedback_labels), dtype=np.float32)
    mnist_counts = np.bincount(mnist_labels, minlength=NUM_CLASSES)
    for digit in range(NUM_CLASSES):
        chosen = feedback_labels == digit
        if chosen.any():
            cap = max_share * mnist_counts[digit] / chosen.sum()
            weights[chosen] = min(weight, cap)
    return weights


def open_configured_store() -> tuple[Store, str]:
    """The store the gateway's environment configures, opened for reading, and its name.

    Raises ``gateway.config.ConfigError`` on a bad setting.
    """
    from gateway.config import Config
    from gateway.store import open_reader

    config = Config.from_env()
    if config.uses_cassandra:
        hosts = ",".join(config.cassandra_hosts)
        where = f"cassandra keyspace {config.cassandra_keyspace} on {hosts}"
    else:
        where = f"sqlite {config.sqlite_path}"
    return open_reader(config), where


def read_feedback(store: Store, source: str, *, holdout_percent: int) -> Feedback:
    """Every labelled prediction in ``store``, split. Raises ``StoreUnavailable``."""
    return split_feedback(store.labelled(), holdout_percent=holdout_percent, source=source)


# --- the version a run is compared against ---------------------------------------------


def serving_version(export_dir: Path) -> int | None:
    """The version TF Serving and the gateway serve from ``export_dir``: the newest."""
    versions = available_versions(export_dir)
    return versions[-1] if versions else None


def saved_model_digits(version_dir: Path, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The digits an exported version predicts for ``images``, through its signature."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_NAME]
    digits = [
        signature(image=tf.constant(images[start : start + batch]))["digit"].numpy()
        for start in range(0, len(images), batch)
    ]
    return np.concatenate(digits) if digits else np.zeros(0, dtype=np.int64)


def feedback_metrics(
    feedback: Feedback,
    *,
    holdout_percent: int,
    weights: np.ndarray,
    holdout_accuracy: float | None,
    compared_against: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``feedback`` section of metrics.json."""
    return {
        "source": feedback.source,
        "snapshot": None if feedback.snapshot is None else feedback.snapshot.isoformat(),
        "labelled": feedback.labelled,
        "train_examples": len(feedback.train.labels),
        "holdout_examples": len(feedback.holdout.labels),
        "holdout_percent": holdout_percent,
        "train_weight_total": round(float(weights.sum()), 3),
        "holdout_accuracy": holdout_accuracy,
        "compared_against": None if compared_against is None else dict(compared_against),
        "accuracy_by_model_version": feedback.by_model_version,
    }
