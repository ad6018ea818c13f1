"""Micro-batching: concurrent predict() calls share one model call.

The images of requests that arrive together go to the model as one batch, as TF
Serving's own batching does; see ``gateway.concurrency.coalescing`` for when a batch closes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gateway import errors
from gateway.concurrency.coalescing import Coalescer
from gateway.predictors.base import ModelStatus, Prediction, Predictor


class MicroBatcher:
    """A Predictor that merges concurrent calls into batches for the ``inner`` Predictor."""

    def __init__(
        self,
        inner: Predictor,
        *,
        max_size: int,
        window_seconds: float,
        observe_size: Callable[[int], None] = lambda images: None,
    ) -> None:
        self.model_name = inner.model_name
        self._inner = inner
        self._coalescer: Coalescer[np.ndarray, list[Prediction]] = Coalescer(
            "predict-batcher",
            self._predict_together,
            max_size=max_size,
            window_seconds=window_seconds,
            closed_error=lambda: errors.PredictorUnavailable("the predictor is shutting down"),
            # Images of another shape (a caller's bug) run in a batch of their own, so
            # they fail alone instead of failing others.
            joinable=lambda first, other: first.shape[1:] == other.shape[1:],
            observe_size=observe_size,
        )

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        if len(batch) == 0:
            return []
        return self._coalescer.submit(batch)

    def status(self) -> ModelStatus:
        return self._inner.status()

    def close(self) -> None:
        self._coalescer.close()
        self._inner.close()

    def _predict_together(self, parts: list[np.ndarray]) -> list[list[Prediction]]:
        images = np.concatenate(parts) if len(parts) > 1 else parts[0]
        predictions = self._inner.predict(images)
        if len(predictions) != len(images):
            raise errors.PredictorFailed(
                f"the model returned {len(predictions)} predictions for {len(images)} images"
            )
        answers, start = [], 0
        for part in parts:
            answers.append(predictions[start : start + len(part)])
            start += len(part)
        return answers
