"""The coalescer on its own: concurrent submits share handler calls, bounded by size,
joinability and the window; each caller gets its own outcome; closing fails what waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gateway.concurrency.coalescing import Coalescer
from tests.support.concurrency import run_concurrently


class Closed(Exception):
    pass


class RecordingHandler:
    """Answers each part with its items doubled; remembers the parts of every call."""

    def __init__(self, seconds_per_call: float = 0.0) -> None:
        self.calls: list[list[tuple[int, ...]]] = []
        self.seconds_per_call = seconds_per_call
        self._lock = threading.Lock()

    def __call__(self, parts: list[tuple[int, ...]]) -> list[object]:
        with self._lock:
            self.calls.append(list(parts))
        time.sleep(self.seconds_per_call)
        return [tuple(2 * item for item in part) for part in parts]


@pytest.fixture
def make_coalescer() -> Iterator[Callable[..., Coalescer]]:
    made: list[Coalescer] = []

    def make(handle, **options) -> Coalescer:
        options.setdefault("max_size", 8)
        options.setdefault("window_seconds", 0.0)
        coalescer = Coalescer("test", handle, closed_error=Closed, **options)
        made.append(coalescer)
        return coalescer

    yield make
    for coalescer in made:
        coalescer.close()


def test_a_lone_submit_gets_its_own_outcome_in_one_call(make_coalescer):
    handler = RecordingHandler()
    coalescer = make_coalescer(handler)
    assert coalescer.submit((1, 2)) == (2, 4)
    assert handler.calls == [[(1, 2)]]


def test_concurrent_submits_share_calls_and_each_gets_its_own_outcome(make_coalescer):
    handler = RecordingHandler(seconds_per_call=0.05)
    coalescer = make_coalescer(handler, max_size=64)
    outcomes = run_concurrently(16, lambda index: coalescer.submit((index,)))
    assert outcomes == [(2 * index,) for index in range(16)]
    assert len(handler.calls) < 16
    assert sorted(part for call in handler.calls for part in call) == [(i,) for i in range(16)]


def test_no_call_exceeds_max_size_and_parts_are_never_split(make_coalescer):
    handler = RecordingHandler(seconds_per_call=0.02)
    coalescer = make_coalescer(handler, max_size=5)
    outcomes = run_concurrently(12, lambda index: coalescer.submit((index, index)))
    assert outcomes == [(2 * index, 2 * index) for index in range(12)]
    assert all(sum(len(part) for part in call) <= 5 for call in handler.calls)


def test_parts_that_may_not_join_go_into_separate_calls(make_coalescer):
    handler = RecordingHandler(seconds_per_call=0.02)
    coalescer = make_coalescer(
        handler, max_size=64, joinable=lambda first, other: first[0] % 2 == other[0] % 2
    )
    run_concurrently(10, lambda index: coalescer.submit((index,)))
    for call in handler.calls:
        assert len({part[0] % 2 for part in call}) == 1


def test_a_failed_call_fails_each_of_its_callers_with_a_copy(make_coalescer):
    def fail(parts):
        raise ValueError("backend down")

    coalescer = make_coalescer(fail)
    outcomes = run_concurrently(4, lambda index: coalescer.submit((index,)))
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 4


def test_a_handler_that_answers_the_wrong_count_fails_the_call(make_coalescer):
    coalescer = make_coalescer(lambda parts: [])
    with pytest.raises(RuntimeError, match="0 outcomes for 1"):
        coalescer.submit((1,))


def test_the_sizes_of_calls_are_observed(make_coalescer):
    sizes: list[int] = []
    coalescer = make_coalescer(RecordingHandler(), observe_size=sizes.append)
    coalescer.submit((1, 2, 3))
    assert sizes == [3]


def test_after_close_a_submit_gets_the_closed_error(make_coalescer):
    coalescer = make_coalescer(RecordingHandler())
    coalescer.submit((1,))
    coalescer.close()
    with pytest.raises(Closed):
        coalescer.submit((2,))


@pytest.mark.parametrize(("max_size", "collectors"), [(0, 1), (1, 0)])
def test_nonsense_sizes_are_refused(max_size, collectors):
    with pytest.raises(ValueError):
        Coalescer(
            "test",
            RecordingHandler(),
            max_size=max_size,
            window_seconds=0.0,
            closed_error=Closed,
            collectors=collectors,
        )
