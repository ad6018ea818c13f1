"""Export a trained model as the next numbered version of a TF Serving model base directory.

Layout of one version, ``<base>/<N>/``::

    saved_model.pb, variables/, fingerprint.pb   the SavedModel (signature below)
    metrics.json                                 how it was trained and how well it scored
    assets.extra/tf_serving_warmup_requests      PredictionLog records TF Serving replays on load

TF Serving and the gateway poll ``<base>`` and load the highest all-digit directory name, so a
version must never be visible half-written: it is assembled under a dot-prefixed temporary
name inside ``<base>`` (same filesystem) and renamed to ``<N>`` in one step.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from mnist_contract import (
    IMAGE_SHAPE,
    INPUT_NAME,
    METRICS_FILE,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE_NAME,
    STAGING_PREFIX,
    version_numbers,
)

if TYPE_CHECKING:
    from training.train import TrainedModel

WARMUP_FILE = Path("assets.extra", "tf_serving_warmup_requests")


# Test images a training run's export replays as its warm-up requests.
WARMUP_EXAMPLES = 8


def export_trained(
    trained: TrainedModel,
    base_dir: Path,
    *,
    data_checksums: Mapping[str, str],
    test_images: np.ndarray,
    extra_metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Export a training run as the next version of ``base_dir``: its model, its metrics
    (with ``extra_metrics`` added), and warm-up requests built from the first of the images
    it was tested on."""
    return export_version(
        trained.model,
        base_dir,
        metrics={**trained.metrics(data_checksums), **(extra_metrics or {})},
        warmup_batch=test_images[:WARMUP_EXAMPLES],
    )


def export_version(
    model: keras.Model,
    base_dir: Path,
    *,
    metrics: Mapping[str, Any],
    warmup_batch: np.ndarray,
) -> Path:
    """Write ``model`` as ``base_dir/<N>`` with N above every existing version; return that path.

    ``metrics`` (JSON-serialisable) is stored in metrics.json together with the version,
    the TensorFlow version and the creation time. ``warmup_batch`` (float32 [n, 28, 28, 1])
    supplies the warm-up requests: one of its first image and one of the whole batch.
    """
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=base_dir))
    try:
        _save_signature(model, staging)
        write_warmup_requests(staging / WARMUP_FILE, warmup_batch)
        return _publish(staging, base_dir, metrics)
    finally:
        # Gone after a successful rename; otherwise remove what a failed export left behind.
        shutil.rmtree(staging, ignore_errors=True)


def next_version(base_dir: Path) -> int:
    """One above every version-named directory, complete or not: numbers only grow."""
    return max(version_numbers(base_dir), default=0) + 1


def _save_signature(model: keras.Model, directory: Path) -> None:
    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name=INPUT_NAME)])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(model(image, training=False), tf.float32)
        return {
            OUTPUT_PROBABILITIES: probabilities,
            OUTPUT_DIGIT: tf.argmax(probabilities, axis=1, output_type=tf.int64),
        }

    # A bare Module holding the model keeps the SavedModel free of Keras-specific objects.
    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(directory), signatures={SIGNATURE_NAME: serve})


def write_warmup_requests(path: Path, batch: np.ndarray) -> None:
    """Write TFRecord PredictionLogs for ``serving_default``: a single image, then ``batch``."""
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1:] != IMAGE_SHAPE or len(batch) == 0:
        raise ValueError(f"warm-up batch must be [n>0, 28, 28, 1], got {batch.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = [batch[:1]] if len(batch) == 1 else [batch[:1], batch]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for images in batches:
            writer.write(_prediction_log(images).SerializeToString())


def _prediction_log(images: np.ndarray) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name=SIGNATURE_NAME)
    )
    request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(images))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def _publish(staging: Path, base_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Rename ``staging`` to the next free version number, retrying if another exporter won."""
    while True:
        version = next_version(base_dir)
        _write_metrics(staging / METRICS_FILE, metrics, version)
        target = base_dir / str(version)
        try:
            # rename(2) refuses a non-empty target, and a published version is never empty,
            # so a concurrent exporter that took this number makes us try the next one.
            os.rename(staging, target)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            continue
        return target


def _write_metrics(path: Path, metrics: Mapping[str, Any], version: int) -> None:
    record = {
        **metrics,
        "version": version,
        "tf_version": tf.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
