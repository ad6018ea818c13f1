"""Group commit (gateway.store.batching) around a recording fake of the inner store.

The fake stands in for SQLite or Cassandra only to count and fail calls on demand; the
store contract suite (tests/integration/test_store_contract.py) runs the same wrapper
over the real backends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway import errors
from gateway.store.base import PredictionRecord
from gateway.store.batching import BatchingStore
from tests.support.concurrency import run_concurrently
from tests.support.records import make_record

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class RecordingFakeStore:
    """Keeps saved records in a list; fails a call as ``fail_when(records)`` says."""

    def __init__(
        self,
        *,
        seconds_per_call: float = 0.0,
        fail_when: Callable[[Sequence[PredictionRecord]], Exception | None] = lambda r: None,
    ) -> None:
        self.calls: list[int] = []
        self.saved: list[PredictionRecord] = []
        self.seconds_per_call = seconds_per_call
        self.fail_when = fail_when
        self.closed = False

    def save_many(self, records: Sequence[PredictionRecord]) -> None:
        self.calls.append(len(records))
        time.sleep(self.seconds_per_call)
        error = self.fail_when(records)
        if error is not None:
            raise error
        self.saved.extend(records)

    def close(self) -> None:
        self.closed = True


def records_of(caller: int, count: int = 1, day: datetime = NOON) -> list[PredictionRecord]:
    at = day + timedelta(milliseconds=caller)
    return [make_record(at, sequence) for sequence in range(count)]


@pytest.fixture
def make_store() -> Iterator[Callable[..., BatchingStore]]:
    stores: list[BatchingStore] = []

    def make(
        inner: RecordingFakeStore,
        max_records: int = 256,
        writers: int = 1,
        window_seconds: float = 0.0,
    ) -> BatchingStore:
        store = BatchingStore(
            inner,  # type: ignore[arg-type]
            max_records=max_records,
            writers=writers,
            window_seconds=window_seconds,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def test_concurrent_saves_share_writes_and_each_record_is_written_once(make_store):
    inner = RecordingFakeStore(seconds_per_call=0.01)
    store = make_store(inner)
    sent = [records_of(caller, count=1 + caller % 3) for caller in range(32)]

    outcomes = run_concurrently(32, lambda caller: store.save_many(sent[caller]))

    assert outcomes == [None] * 32
    assert sorted(r.id for r in inner.saved) == sorted(r.id for part in sent for r in part)
    assert len(inner.calls) < 32 / 4, inner.calls


def test_a_save_returns_only_once_its_records_are_written(make_store):
    inner = RecordingFakeStore(seconds_per_call=0.02)
    store = make_store(inner)

    def save_then_check(caller: int) -> bool:
        records = records_of(caller)
        store.save_many(records)
        return all(record in inner.saved for record in records)

    assert run_concurrently(16, save_then_check) == [True] * 16


def test_an_unavailable_store_fails_every_caller_of_the_write(make_store):
    inner = RecordingFakeStore(
        seconds_per_call=0.01,
        fail_when=lambda records: errors.StoreUnavailable("Cassandra unavailable: test"),
    )
    store = make_store(inner)

    outcomes = run_concurrently(12, lambda caller: store.save_many(records_of(caller)))

    assert all(isinstance(outcome, errors.StoreUnavailable) for outcome in outcomes)
    assert inner.saved == []
    # Not retried part by part: an unavailable backend gets no extra load.
    assert sum(inner.calls) == 12


def test_a_record_the_backend_rejects_fails_only_its_own_caller(make_store):
    sent = [records_of(caller) for caller in range(12)]
    culprit = sent[5][0].id
    inner = RecordingFakeStore(
        seconds_per_call=0.01,
        fail_when=lambda records: (
            RuntimeError("rejected") if any(r.id == culprit for r in records) else None
        ),
    )
    store = make_store(inner)

    outcomes = run_concurrently(12, lambda caller: store.save_many(sent[caller]))

    assert isinstance(outcomes[5], RuntimeError)
    assert [o for i, o in enumerate(outcomes) if i != 5] == [None] * 11
    assert len(inner.saved) == 11


def test_a_malformed_record_is_refused_before_it_is_queued(make_store):
    inner = RecordingFakeStore()
    store = make_store(inner)
    bad = replace(records_of(0)[0], input_image=b"short")

    with pytest.raises(ValueError, match="input_image"):
        store.save_many([bad])
    assert inner.calls == []


def test_records_of_different_days_are_never_written_together(make_store):
    inner = RecordingFakeStore(seconds_per_call=0.01)
    store = make_store(inner)
    days = [NOON, NOON + timedelta(days=1)]

    def save(caller: int) -> None:
        store.save_many(records_of(caller, day=days[caller % 2]))

    run_concurrently(16, save)

    by_id = {record.id: record for record in inner.saved}
    assert len(by_id) == 16
    written, start = [], 0
    for size in inner.calls:
        written.append(inner.saved[start : start + size])
        start += size
    for call in written:
        assert len({record.created_at.date() for record in call}) == 1


def test_a_write_holds_at_most_max_records(make_store):
    inner = RecordingFakeStore(seconds_per_call=0.01)
    store = make_store(inner, max_records=5)

    run_concurrently(20, lambda caller: store.save_many(records_of(caller, count=2)))

    assert max(inner.calls) <= 5
    assert sum(inner.calls) == 40


@pytest.mark.parametrize("writers", [1, 4])
def test_closing_stops_taking_writes_and_closes_the_backend(make_store, writers):
    inner = RecordingFakeStore()
    store = make_store(inner, writers=writers)
    store.save_many(records_of(0))

    store.close()

    assert inner.closed
    with pytest.raises(errors.StoreUnavailable):
        store.save_many(records_of(1))


def test_several_writers_keep_writes_in_flight_together(make_store):
    class OverlapRecordingStore(RecordingFakeStore):
        def __init__(self) -> None:
            super().__init__(seconds_per_call=0.05)
            self.lock = threading.Lock()
            self.in_flight = self.most_in_flight = 0

        def save_many(self, records: Sequence[PredictionRecord]) -> None:
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                super().save_many(records)
            finally:
                with self.lock:
                    self.in_flight -= 1

    inner = OverlapRecordingStore()
    store = make_store(inner, writers=4)

    outcomes = run_concurrently(24, lambda caller: store.save_many(records_of(caller)))

    assert outcomes == [None] * 24
    assert len(inner.saved) == 24
    assert 1 < inner.most_in_flight <= 4


def test_the_window_keeps_a_write_open_for_callers_that_arrive_after_it_formed(make_store):
    # Callers 20 ms apart, 50 ms writes: without a window the callers queued during one
    # write form the next (four writes, such as 1, 4, 2 and 1 records). Once two are
    # queued together, the window (from the first one's arrival) gathers the later ones.
    inner = RecordingFakeStore(seconds_per_call=0.05)
    store = make_store(inner, window_seconds=0.4)

    def save_after_a_pause(caller: int) -> None:
        time.sleep(0.02 * caller)
        store.save_many(records_of(caller))

    assert run_concurrently(8, save_after_a_pause) == [None] * 8
    assert sum(inner.calls) == 8
    assert len(inner.calls) <= 2, inner.calls  # the first caller, alone, does not wait


def test_a_lone_caller_does_not_wait_for_the_store_window(make_store):
    window = 0.5
    store = make_store(RecordingFakeStore(), window_seconds=window)
    run_concurrently(8, lambda caller: store.save_many(records_of(caller)))

    for caller in range(8, 13):
        started = time.perf_counter()
        store.save_many(records_of(caller))
        assert time.perf_counter() - started < window / 5
