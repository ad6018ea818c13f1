"""The prediction pipeline: uploads -> MNIST inputs -> one model batch -> stored records.

Every upload is preprocessed before the model is asked or anything is stored, so a
request with one bad image stores nothing; the records of one request are saved in one
all-or-nothing write.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import numpy as np

from gateway.concurrency.background import IMAGE_DECODE_THREADS
from gateway.metrics import GatewayMetrics
from gateway.pipeline.preprocess import declared_pixels, preprocess, to_uint8
from gateway.predictors.base import Predictor
from gateway.store.base import PredictionRecord, Store
from gateway.store.ids import new_prediction_id, truncate_to_millisecond

MAX_FILENAME_CHARS = 255
# Uploads up to this size are preprocessed on the event loop: a 256x256 image takes a
# few milliseconds, less than handing it to a thread and back would save. Larger ones
# (a phone photo, a 6000x6000 PNG: up to a second or more) go to the CPU pool, so the
# worker's other requests and its probes are answered meanwhile.
INLINE_MAX_PIXELS = 256 * 256


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


def utc_now() -> datetime:
    return truncate_to_millisecond(datetime.now(UTC))


def clean_filename(name: str | None) -> str | None:
    """Keep the client's name for display only: printable, bounded, never used as a path."""
    if not name:
        return None
    printable = "".join(ch for ch in name if ch.isprintable())
    return printable[:MAX_FILENAME_CHARS] or None


def predict_and_store(
    uploads: Sequence[Upload],
    *,
    predictor: Predictor,
    store: Store,
    metrics: GatewayMetrics,
    max_pixels: int,
    clock: Callable[[], datetime] = utc_now,
) -> list[PredictionRecord]:
    images, preprocess_seconds = _preprocess_all(uploads, max_pixels, metrics)
    batch = np.stack(images)[..., np.newaxis]

    started = time.perf_counter()
    predictions = predictor.predict(batch)
    model_seconds = time.perf_counter() - started
    metrics.model_seconds.observe(model_seconds)

    created_at = clock()
    records = [
        PredictionRecord(
            id=new_prediction_id(created_at, sequence=index),
            created_at=created_at,
            filename=clean_filename(upload.filename),
            digit=prediction.digit,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            upload_sha256=hashlib.sha256(upload.data).hexdigest(),
            input_image=to_uint8(image),
            latency_ms=round((seconds + model_seconds) * 1000, 3),
        )
        for index, (upload, image, seconds, prediction) in enumerate(
            zip(uploads, images, preprocess_seconds, predictions, strict=True)
        )
    ]

    with metrics.store_seconds.labels("save").time():
        store.save_many(records)
    for record in records:
        metrics.predictions.labels(str(record.digit)).inc()
    return records


def _preprocess_all(
    uploads: Sequence[Upload], max_pixels: int, metrics: GatewayMetrics
) -> tuple[list[np.ndarray], list[float]]:
    images, seconds = [], []
    for upload in uploads:
        started = time.perf_counter()
        pixels = declared_pixels(upload.data)
        if pixels is not None and INLINE_MAX_PIXELS < pixels <= max_pixels:
            images.append(
                IMAGE_DECODE_THREADS.run(partial(preprocess, max_pixels=max_pixels), upload.data)
            )
        else:
            images.append(preprocess(upload.data, max_pixels=max_pixels))
        elapsed = time.perf_counter() - started
        metrics.preprocess_seconds.observe(elapsed)
        seconds.append(elapsed)
    return images, seconds
