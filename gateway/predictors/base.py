"""The predictor interface: a batch of MNIST-style inputs in, one result per image out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mnist_contract import NUM_CLASSES


@dataclass(frozen=True)
class Prediction:
    digit: int
    probabilities: tuple[float, ...]
    model_name: str
    model_version: str

    @property
    def confidence(self) -> float:
        return self.probabilities[self.digit]


@dataclass(frozen=True)
class ModelStatus:
    ready: bool
    model_name: str
    model_version: str | None
    detail: str


class Predictor(Protocol):
    model_name: str

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        """``batch``: float32 [n, 28, 28, 1] in [0, 1]. Returns n predictions, in order.

        Raises ``errors.PredictorUnavailable`` (503) when the model cannot answer now,
        ``errors.PredictorFailed`` (502) when it answered with a permanent error.
        """
        ...

    def status(self) -> ModelStatus: ...

    def close(self) -> None: ...


def predictions_from_outputs(
    probabilities: np.ndarray, digits: np.ndarray, *, model_name: str, model_version: str
) -> list[Prediction]:
    """One Prediction per row of the signature's outputs (both predictors end here)."""
    if probabilities.ndim != 2 or probabilities.shape != (len(digits), NUM_CLASSES):
        raise ValueError(
            f"outputs do not match the serving contract: probabilities {probabilities.shape}, "
            f"digit {digits.shape}"
        )
    return [
        Prediction(
            digit=int(digit),
            probabilities=tuple(row.tolist()),
            model_name=model_name,
            model_version=model_version,
        )
        for row, digit in zip(probabilities, digits, strict=True)
    ]
