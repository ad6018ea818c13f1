"""The store interface: every prediction, durably kept, with what is needed to audit and retrain."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from gateway.store.stats import Stats


@dataclass(frozen=True)
class PredictionRecord:
    id: UUID  # a time-based UUID (version 1): Cassandra's timeuuid
    created_at: datetime  # timezone-aware UTC, millisecond precision
    filename: str | None  # as the client named it; only ever stored, never a path
    digit: int
    confidence: float
    probabilities: tuple[float, ...]  # 10 values
    model_name: str
    model_version: str
    upload_sha256: str  # hex digest of the uploaded bytes
    input_image: bytes  # the preprocessed 28x28 input, 784 uint8 bytes, row-major
    latency_ms: float  # preprocess + predict, as measured by the gateway
    label: int | None = None  # the true digit, when a user gave feedback
    labelled_at: datetime | None = None


@dataclass(frozen=True)
class Page:
    records: list[PredictionRecord]
    next_cursor: str | None  # opaque; None when there is nothing older


class Store(Protocol):
    def save_many(self, records: Sequence[PredictionRecord]) -> None:
        """Store all records or none of them. Returns only once they are durable.

        Raises ``errors.StoreUnavailable`` when the backend cannot take the write.
        """
        ...

    def get(self, prediction_id: UUID) -> PredictionRecord | None: ...

    def list(self, limit: int, cursor: str | None = None) -> Page:
        """Newest first. Raises ``errors.BadRequest`` on a cursor it did not issue."""
        ...

    def set_label(self, prediction_id: UUID, label: int) -> PredictionRecord | None:
        """Record the true label; returns the updated record, or None if the id is unknown."""
        ...

    def labelled(self, page_size: int = 500) -> Iterator[PredictionRecord]:
        """Every record that has a label, in no particular order: what retraining reads.

        Read ``page_size`` records at a time, so a caller can stream any number. Records
        labelled while the iteration runs may or may not be included.
        """
        ...

    def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        """Aggregates of the predictions made in [since, until) (timezone-aware), with
        their count per ``bucket_seconds`` from ``since``: see ``gateway.store.stats``."""
        ...

    def ping(self) -> None:
        """Raises ``errors.StoreUnavailable`` unless the backend answers now."""
        ...

    def close(self) -> None: ...
