"""Micro-batching: concurrent predict() calls share one model call.

gunicorn's gthread workers run many requests at once; one model call per request
would spend most of the two CPU cores on per-call overhead. A collector thread takes
the oldest queued request and whatever else is already queued (up to ``max_size``
images), makes ONE call to the wrapped predictor and hands each caller its slice.

Latency at low load: a lone request goes straight through, it never waits for the
window. Throughput at high load: while one batch runs, the next requests queue up and
form the next batch by themselves. The window adds a short wait for more requests only
when several were already queued together, i.e. when there is evidence right now that
others are arriving; no request waits longer than ``window_seconds`` after it was
queued.
"""

from __future__ import annotations

import copy
import queue
import threading
import time

import numpy as np

from gateway import errors
from gateway.predictors._background import LazyDaemon, reset_in_forked_child
from gateway.predictors.base import ModelStatus, Prediction, Predictor

_STOP = object()


class _PendingRequest:
    """One caller's images, and the slot where the collector puts its answer."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.queued_at = time.monotonic()
        self._done = threading.Event()
        self._predictions: list[Prediction] = []
        self._error: BaseException | None = None

    def resolve(self, predictions: list[Prediction]) -> None:
        self._predictions = predictions
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> list[Prediction]:
        self._done.wait()
        if self._error is not None:
            # Every caller of a failed batch raises its own copy: one exception object
            # raised in many threads at once would interleave their tracebacks.
            raise _copy_of(self._error) from self._error
        return self._predictions


def _copy_of(error: BaseException) -> BaseException:
    try:
        return copy.copy(error)
    except Exception:
        return error


class MicroBatcher:
    """A Predictor that merges concurrent calls into batches for the ``inner`` Predictor."""

    def __init__(self, inner: Predictor, *, max_size: int, window_seconds: float) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.model_name = inner.model_name
        self._inner = inner
        self._max_size = max_size
        self._window_seconds = window_seconds
        self._collector = LazyDaemon("predict-batcher", self._collect_until_stopped)
        self._new_queue()
        reset_in_forked_child(self._new_queue)

    def _new_queue(self) -> None:
        # Requests queued in a parent process belong to threads the child does not have.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._held_over: _PendingRequest | None = None

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        if self._collector.stopping:
            raise errors.PredictorUnavailable("the predictor is shutting down")
        if len(batch) == 0:
            return []
        request = _PendingRequest(batch)
        self._collector.ensure_running()
        self._queue.put(request)
        return request.wait()

    def status(self) -> ModelStatus:
        return self._inner.status()

    def close(self) -> None:
        # Wake the collector, let it finish the batch it is running, then close the model.
        self._queue.put(_STOP)
        self._collector.stop()
        self._inner.close()

    # --- the collector thread ----------------------------------------------------------

    def _collect_until_stopped(self, stop: threading.Event) -> None:
        while not stop.is_set():
            first = self._next_request()
            if first is _STOP:
                break
            assert isinstance(first, _PendingRequest)
            self._run(self._gather(first))
        self._fail_queued(errors.PredictorUnavailable("the predictor is shutting down"))

    def _next_request(self, *, block: bool = True) -> object:
        """The held-over request first, else the queue's head (queue.Empty if not blocking)."""
        if self._held_over is not None:
            request, self._held_over = self._held_over, None
            return request
        return self._queue.get(block=block)

    def _gather(self, first: _PendingRequest) -> list[_PendingRequest]:
        batch = [first]
        size = len(first.images)
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
            assert isinstance(item, _PendingRequest)
            # A request that does not fit, or whose images have another shape (a caller's
            # bug), runs in a batch of its own, so it fails alone instead of failing others.
            fits = size + len(item.images) <= self._max_size
            if not fits or item.images.shape[1:] != first.images.shape[1:]:
                self._held_over = item
                break
            batch.append(item)
            size += len(item.images)
        return batch

    def _run(self, batch: list[_PendingRequest]) -> None:
        try:
            images = np.concatenate([request.images for request in batch])
            predictions = self._inner.predict(images)
            if len(predictions) != len(images):
                raise errors.PredictorFailed(
                    f"the model returned {len(predictions)} predictions for {len(images)} images"
                )
        except BaseException as error:
            for request in batch:
                request.fail(error)
            return
        start = 0
        for request in batch:
            end = start + len(request.images)
            request.resolve(predictions[start:end])
            start = end

    def _fail_queued(self, error: errors.GatewayError) -> None:
        while True:
            try:
                item = self._next_request(block=False)
            except queue.Empty:
                return
            if isinstance(item, _PendingRequest):
                item.fail(error)
