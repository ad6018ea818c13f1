"""Predictors: TF Serving over REST, or the SavedModel in this process, behind one interface.

Building a predictor is cheap and side-effect free (no connection, no model load, no
thread): gunicorn builds the app in the master and forks workers, so each worker starts
its threads and loads its model on first use (or on the first status() call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.predictors.base import ModelStatus, Prediction, Predictor
from gateway.predictors.batching import MicroBatcher
from gateway.predictors.saved_model import SavedModelPredictor
from gateway.predictors.tf_serving import TFServingPredictor

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.metrics import GatewayMetrics

__all__ = ["ModelStatus", "Prediction", "Predictor", "make_predictor"]


def make_predictor(config: Config, metrics: GatewayMetrics | None = None) -> Predictor:
    """TF Serving when SERVING_URL is set, else the in-process model; micro-batched."""
    inner: Predictor = (
        TFServingPredictor.from_config(config)
        if config.uses_tf_serving
        else SavedModelPredictor.from_config(config)
    )
    return MicroBatcher(
        inner,
        max_size=config.batch_max_size,
        window_seconds=config.batch_window_ms / 1000,
        observe_size=metrics.model_batch_images.observe if metrics else lambda images: None,
    )
