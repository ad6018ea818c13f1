"""Coalescing: concurrent calls from requests share one call of a slow handler.

A gunicorn worker runs many requests at once (greenlets under the gevent worker, threads
under gthread; this module works with either). One model call, or one database write,
per request spends most of the two CPU cores on per-call overhead: TensorFlow's
dispatch, Cassandra's request handling and commit-log syncs. A collector thread takes the
oldest queued part and whatever else is already queued (up to ``max_size`` items), makes
ONE call of the handler, and hands each caller its own outcome.

Latency at low load: a lone part goes straight through, it never waits for the window.
Throughput at high load: while one call runs, the next parts queue up and form the next
call by themselves. The window adds a short wait for more parts only when several were
already queued together, i.e. when there is evidence right now that others are arriving;
no part waits longer than ``window_seconds`` after it was queued.

Used by ``gateway.predictors.batching`` (images into one model call) and
``gateway.store.batching`` (records into one write).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.concurrency.background import LazyDaemon, reset_in_forked_child

PartT = TypeVar("PartT", bound=Sequence)
ResultT = TypeVar("ResultT")

# handle(parts) -> one outcome per part: its result, or the exception that part raises.
Handler = Callable[[list[PartT]], Sequence["ResultT | BaseException"]]

_STOP = object()


class _Pending(Generic[PartT, ResultT]):
    """One caller's part, and the slot where the collector puts its outcome."""

    def __init__(self, part: PartT) -> None:
        self.part = part
        self.queued_at = time.monotonic()
        self._done = threading.Event()
        self._outcome: ResultT | BaseException | None = None

    def settle(self, outcome: ResultT | BaseException) -> None:
        self._outcome = outcome
        self._done.set()

    def wait(self) -> ResultT:
        self._done.wait()
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            # Every caller of a failed call raises its own copy: one exception object
            # raised in many threads at once would interleave their tracebacks.
            raise _copy_of(outcome) from outcome
        return outcome  # type: ignore[return-value]


def _copy_of(error: BaseException) -> BaseException:
    try:
        return copy.copy(error)
    except Exception:
        return error


class Coalescer(Generic[PartT, ResultT]):
    """Runs ``handle`` on the parts that concurrent ``submit()`` calls queue, together.

    ``joinable(first, other)`` says whether ``other`` may share a call with ``first``; a
    part that may not (or that would exceed ``max_size`` items) starts the next call.
    ``closed_error()`` is what callers get once the coalescer is closed, and
    ``observe_size(items)`` hears the size of every call (for metrics).
    """

    def __init__(
        self,
        name: str,
        handle: Handler,
        *,
        max_size: int,
        window_seconds: float,
        closed_error: Callable[[], BaseException],
        joinable: Callable[[PartT, PartT], bool] = lambda first, other: True,
        observe_size: Callable[[int], None] = lambda items: None,
        collectors: int = 1,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if collectors < 1:
            raise ValueError(f"collectors must be at least 1, got {collectors}")
        self._handle = handle
        self._max_size = max_size
        self._window_seconds = window_seconds
        self._closed_error = closed_error
        self._joinable = joinable
        self._observe_size = observe_size
        self._collectors = [
            LazyDaemon(f"{name}-{index}", self._collect_until_stopped)
            for index in range(collectors)
        ]
        self._new_queue()
        reset_in_forked_child(self._new_queue)

    def _new_queue(self) -> None:
        # Parts queued in a parent process belong to threads the child does not have.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def submit(self, part: PartT) -> ResultT:
        """Queue ``part``, wait for the call it joins, and return its outcome (or raise it)."""
        if self._collectors[0].stopping:
            raise self._closed_error()
        pending: _Pending[PartT, ResultT] = _Pending(part)
        for collector in self._collectors:
            collector.ensure_running()
        self._queue.put(pending)
        return pending.wait()

    def close(self) -> None:
        """Wake the collectors, let them finish the calls they run, fail what is queued."""
        for _ in self._collectors:
            self._queue.put(_STOP)  # one for each collector to take
        for collector in self._collectors:
            collector.stop()

    # --- the collector threads ---------------------------------------------------------

    def _collect_until_stopped(self, stop: threading.Event) -> None:
        # A part that could not join this collector's last call opens its next one.
        held_over: _Pending | None = None
        while not stop.is_set():
            first = held_over if held_over is not None else self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Pending)
            batch, held_over = self._gather(first)
            self._run(batch)
        if held_over is not None:
            held_over.settle(self._closed_error())
        self._fail_queued()

    def _gather(self, first: _Pending) -> tuple[list[_Pending], _Pending | None]:
        """The parts for one call, opened by ``first``; and a part taken that did not fit."""
        batch = [first]
        size = len(first.part)
        deadline = first.queued_at + self._window_seconds
        while size < self._max_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or len(batch) == 1:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            assert isinstance(item, _Pending)
            fits = size + len(item.part) <= self._max_size
            if not fits or not self._joinable(first.part, item.part):
                return batch, item
            batch.append(item)
            size += len(item.part)
        return batch, None

    def _run(self, batch: list[_Pending]) -> None:
        self._observe_size(sum(len(pending.part) for pending in batch))
        try:
            outcomes = list(self._handle([pending.part for pending in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"the handler gave {len(outcomes)} outcomes for {len(batch)}")
        except BaseException as error:
            outcomes = [error] * len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.settle(outcome)

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Pending):
                item.settle(self._closed_error())
            else:
                self._queue.put(_STOP)  # another collector's stop signal: leave it
                return
