"""Group commit: concurrent save_many() calls share one write.

Cassandra spends most of its CPU per request, not per row (the native protocol, the
hand-offs between its thread pools, the commit-log sync every writer waits for); SQLite
spends it per transaction. So the records of requests that finish together are written
in one batch (see ``gateway.concurrency.coalescing`` for when a batch closes). Each caller still
returns only once its own records are durable, and fails if they are not: nothing is
acknowledged that the store did not take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from uuid import UUID

from gateway import errors
from gateway.concurrency.coalescing import Coalescer
from gateway.store.base import Page, PredictionRecord, Store
from gateway.store.ids import id_day
from gateway.store.stats import Stats
from gateway.store.validation import check_records

Records = Sequence[PredictionRecord]


class BatchingStore:
    """A Store whose concurrent ``save_many`` calls reach ``inner`` as one call.

    ``writers`` writes may be in flight at once. A write waits for the network and for
    Cassandra's commit-log sync, so one writer caps a worker process at one batch per
    round trip; more writers split the queue into smaller batches, and Cassandra's CPU goes
    per write (the default and its measurement: ``Config.store_writers``). Records queued
    while a write runs join the next one; once two or more callers are queued together,
    the write also waits up to ``window_seconds`` (counted from the first one's arrival)
    for more (``Config.store_window_ms``). A lone caller never waits.
    """

    def __init__(
        self,
        inner: Store,
        *,
        max_records: int,
        writers: int = 1,
        window_seconds: float = 0.0,
        observe_size: Callable[[int], None] = lambda records: None,
    ) -> None:
        self._inner = inner
        self._coalescer: Coalescer[Records, None] = Coalescer(
            "store-batcher",
            self._save_together,
            max_size=max_records,
            window_seconds=window_seconds,
            closed_error=lambda: errors.StoreUnavailable("the store is shutting down"),
            # One day is one Cassandra partition: a single-partition batch is applied as
            # one mutation, without the batch log and its size limits.
            joinable=lambda first, other: id_day(first[0].id) == id_day(other[0].id),
            observe_size=observe_size,
            collectors=writers,
        )

    def save_many(self, records: Records) -> None:
        # Checked here, so that one caller's malformed record cannot fail other callers.
        check_records(records)
        if records:
            self._coalescer.submit(records)

    def _save_together(self, parts: list[Records]) -> list[BaseException | None]:
        try:
            self._inner.save_many([record for part in parts for record in part])
        except errors.StoreUnavailable:
            raise  # every caller gets the 503; retrying each part would only add load
        except Exception:
            if len(parts) == 1:
                raise
            return [_outcome_alone(self._inner, part) for part in parts]
        return [None] * len(parts)

    def get(self, prediction_id: UUID) -> PredictionRecord | None:
        return self._inner.get(prediction_id)

    def list(self, limit: int, cursor: str | None = None) -> Page:
        return self._inner.list(limit, cursor)

    def set_label(self, prediction_id: UUID, label: int) -> PredictionRecord | None:
        return self._inner.set_label(prediction_id, label)

    def labelled(self, page_size: int = 500) -> Iterator[PredictionRecord]:
        return self._inner.labelled(page_size)

    def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        return self._inner.stats(since, until, bucket_seconds)

    def ping(self) -> None:
        self._inner.ping()

    def close(self) -> None:
        self._coalescer.close()
        self._inner.close()


def _outcome_alone(store: Store, part: Records) -> BaseException | None:
    """Write one caller's records by themselves, so a failure stays with its cause."""
    try:
        store.save_many(part)
    except Exception as error:
        return error
    return None
