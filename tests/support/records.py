"""Prediction records made the way the gateway makes them, for store tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np

from gateway.store import PredictionRecord, new_prediction_id
from gateway.store.ids import truncate_to_millisecond


def make_record(at: datetime, sequence: int = 0, **changes: object) -> PredictionRecord:
    """A record as the gateway makes one: float32 softmax, 784-byte image, sha256 hex."""
    rng = np.random.default_rng(at.toordinal() * 10_000 + at.microsecond + sequence)
    logits = rng.normal(size=10)
    probabilities = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
    record = PredictionRecord(
        id=new_prediction_id(at, sequence),
        created_at=truncate_to_millisecond(at),
        filename=f"digit-{sequence}.png",
        digit=int(probabilities.argmax()),
        confidence=float(probabilities.max()),
        probabilities=tuple(float(p) for p in probabilities),
        model_name="mnist",
        model_version="3",
        upload_sha256=rng.bytes(32).hex(),
        input_image=rng.integers(0, 256, size=784, dtype=np.uint8).tobytes(),
        latency_ms=float(rng.uniform(1, 50)),
    )
    return replace(record, **changes)
