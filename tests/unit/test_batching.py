"""The micro-batcher, around a recording fake of the inner predictor (no TensorFlow)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from gateway import errors
from gateway.predictors.base import ModelStatus, Prediction
from gateway.predictors.batching import MicroBatcher
from mnist_contract import IMAGE_SHAPE, NUM_CLASSES
from tests.support.concurrency import run_concurrently


class RecordingFakePredictor:
    """A fake model: answers digit = the image's first pixel, records every batch size."""

    model_name = "fake"

    def __init__(self, *, seconds_per_call: float = 0.0, error: Exception | None = None) -> None:
        self.batch_sizes: list[int] = []
        self.seconds_per_call = seconds_per_call
        self.error = error
        self.closed = False

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        self.batch_sizes.append(len(batch))
        time.sleep(self.seconds_per_call)
        if self.error is not None:
            raise self.error
        if batch.shape[1:] != (28, 28, 1):
            raise errors.PredictorFailed(f"wrong shape {batch.shape}")
        return [
            Prediction(
                digit=int(image[0, 0, 0]),
                probabilities=(0.1,) * NUM_CLASSES,
                model_name=self.model_name,
                model_version="1",
            )
            for image in batch
        ]

    def status(self) -> ModelStatus:
        return ModelStatus(True, self.model_name, "1", "fake")

    def close(self) -> None:
        self.closed = True


def images_marked(*marks: int) -> np.ndarray:
    batch = np.zeros((len(marks), *IMAGE_SHAPE), np.float32)
    batch[:, 0, 0, 0] = marks
    return batch


@pytest.fixture
def make_batcher() -> Callable[..., MicroBatcher]:
    batchers: list[MicroBatcher] = []

    def make(inner: RecordingFakePredictor, **options: float) -> MicroBatcher:
        batcher = MicroBatcher(
            inner,
            max_size=int(options.get("max_size", 64)),
            window_seconds=options.get("window_seconds", 0.002),
        )
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:
        batcher.close()


def test_every_concurrent_caller_gets_its_own_results_in_order(make_batcher):
    inner = RecordingFakePredictor(seconds_per_call=0.002)
    batcher = make_batcher(inner)

    def call(index: int) -> list[int]:
        marks = [index * 3 % 251, (index * 3 + 1) % 251, (index * 3 + 2) % 251][: 1 + index % 3]
        return [p.digit for p in batcher.predict(images_marked(*marks))], marks

    for got, sent in run_concurrently(48, call):
        assert got == sent


def test_concurrent_callers_share_model_calls(make_batcher):
    inner = RecordingFakePredictor(seconds_per_call=0.01)
    batcher = make_batcher(inner)

    outcomes = run_concurrently(32, lambda i: batcher.predict(images_marked(i)))

    assert all(isinstance(outcome, list) for outcome in outcomes)
    assert sum(inner.batch_sizes) == 32
    assert len(inner.batch_sizes) < 32 / 4, inner.batch_sizes


def test_batches_never_exceed_max_size_and_a_larger_request_runs_alone(make_batcher):
    inner = RecordingFakePredictor(seconds_per_call=0.005)
    batcher = make_batcher(inner, max_size=8)

    outcomes = run_concurrently(
        20, lambda i: batcher.predict(images_marked(*[i] * (12 if i == 0 else 3)))
    )

    assert [p.digit for p in outcomes[0]] == [0] * 12
    assert 12 in inner.batch_sizes
    assert all(size <= 8 for size in inner.batch_sizes if size != 12), inner.batch_sizes
    assert sum(inner.batch_sizes) == 12 + 19 * 3


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_batch_succeeds(make_batcher):
    inner = RecordingFakePredictor(
        seconds_per_call=0.01, error=errors.PredictorUnavailable("model server down")
    )
    batcher = make_batcher(inner)

    outcomes = run_concurrently(16, lambda i: batcher.predict(images_marked(i)))

    assert all(isinstance(outcome, errors.PredictorUnavailable) for outcome in outcomes)
    assert {outcome.message for outcome in outcomes} == {"model server down"}
    inner.error = None
    assert [p.digit for p in batcher.predict(images_marked(7))] == [7]


def test_a_request_of_the_wrong_shape_fails_alone(make_batcher):
    batcher = make_batcher(RecordingFakePredictor(seconds_per_call=0.005))

    def call(index: int) -> list[int]:
        if index == 5:
            return batcher.predict(np.zeros((1, 28, 28), np.float32))
        return [p.digit for p in batcher.predict(images_marked(index))]

    outcomes = run_concurrently(16, call)

    assert isinstance(outcomes[5], errors.PredictorFailed)
    assert [outcomes[i] for i in range(16) if i != 5] == [[i] for i in range(16) if i != 5]


def test_a_lone_caller_does_not_wait_for_the_window(make_batcher):
    window = 0.5
    batcher = make_batcher(RecordingFakePredictor(), window_seconds=window)
    # A burst first, so the batcher has seen concurrency; the lone calls that follow must
    # still go straight through rather than wait for company that is not coming.
    run_concurrently(8, lambda i: batcher.predict(images_marked(i)))

    for mark in range(5):
        started = time.perf_counter()
        assert batcher.predict(images_marked(mark))[0].digit == mark
        assert time.perf_counter() - started < window / 5


def test_status_comes_from_the_inner_predictor_and_close_closes_it(make_batcher):
    inner = RecordingFakePredictor()
    batcher = make_batcher(inner)

    assert batcher.status() == inner.status()
    batcher.close()
    assert inner.closed
    with pytest.raises(errors.PredictorUnavailable):
        batcher.predict(images_marked(1))


def test_a_forked_child_starts_its_own_collector(make_batcher):
    batcher = make_batcher(RecordingFakePredictor())
    assert batcher.predict(images_marked(3))[0].digit == 3  # the parent's thread now runs

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process can deadlock; surviving
        # exactly that (gunicorn's fork) is what this test checks.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        code = 1
        try:
            os.write(write_end, str(batcher.predict(images_marked(5))[0].digit).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, wait_status = os.waitpid(pid, 0)
    answer = os.read(read_end, 16)
    os.close(read_end)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert answer == b"5"


def test_an_empty_batch_needs_no_model_call(make_batcher):
    inner = RecordingFakePredictor()

    assert make_batcher(inner).predict(np.zeros((0, 28, 28, 1), np.float32)) == []
    assert inner.batch_sizes == []
