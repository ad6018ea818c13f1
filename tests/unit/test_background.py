"""LazyDaemon: started on first use, restarted after a crash, stopped for good by stop().
The native thread pools (image decodes, model calls, model loads): a blocking call under
gevent leaves the other greenlets running."""

from __future__ import annotations

import textwrap
import threading

import pytest

from gateway.concurrency.background import (
    IMAGE_DECODE_THREADS,
    MODEL_CALL_THREAD,
    MODEL_LOAD_THREAD,
    LazyDaemon,
)
from tests.support.python import run_python


def test_the_thread_starts_on_first_use_and_restarts_after_a_crash(caplog):
    runs: list[int] = []
    finished = threading.Event()

    def run(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("a bug in the loop")
        finished.set()
        stop.wait()

    daemon = LazyDaemon("test-daemon", run)
    assert runs == []  # constructing starts nothing

    # The first run crashes; a later ensure_running() (once the dead thread has exited)
    # starts the second.
    for _ in range(500):
        daemon.ensure_running()
        if finished.wait(0.01):
            break
    assert finished.is_set()
    assert "test-daemon crashed" in caplog.text
    daemon.ensure_running()  # already running: no third run
    daemon.stop()

    assert len(runs) == 2
    daemon.ensure_running()
    assert len(runs) == 2  # stopped for good


OFF_LOOP_RUNNERS = {
    "background.IMAGE_DECODE_THREADS.run": IMAGE_DECODE_THREADS.run,
    "background.MODEL_CALL_THREAD.run": MODEL_CALL_THREAD.run,
    "background.MODEL_LOAD_THREAD.run": MODEL_LOAD_THREAD.run,
}


@pytest.mark.parametrize("runner", OFF_LOOP_RUNNERS)
def test_with_os_threads_a_blocking_call_runs_in_the_calling_thread(runner):
    run = OFF_LOOP_RUNNERS[runner]
    assert run(lambda a, b: (threading.current_thread(), a + b), 2, 3) == (
        threading.current_thread(),
        5,
    )


# Run in a fresh interpreter: monkey-patching is process-wide and cannot be undone.
GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import gevent
    from gevent.monkey import get_original

    from gateway.concurrency import background

    ticks = []

    def tick():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    gevent.spawn(tick)
    gevent.sleep(0)
    blocking_sleep = get_original("time", "sleep")  # holds its OS thread, never yields

    def block(seconds):
        blocking_sleep(seconds)
        return "done"

    before = len(ticks)
    assert block(0.3) == "done"
    inline = len(ticks) - before
    before = len(ticks)
    assert RUNNER(block, 0.3) == "done"
    print(inline, len(ticks) - before)

    def fail():
        raise ValueError("raised on the other thread")

    try:
        RUNNER(fail)
    except ValueError as error:
        print(error)
    """
)


@pytest.mark.parametrize("runner", OFF_LOOP_RUNNERS)
def test_under_gevent_a_blocking_call_leaves_other_greenlets_running(runner):
    output = run_python(GEVENT_SCRIPT.replace("RUNNER", runner)).splitlines()
    ticks_inline, ticks_off_loop = map(int, output[0].split())
    # What the call raised reaches the caller.
    assert output[1] == "raised on the other thread"
    # Called inline, the blocking call stops the ticker for its whole 0.3 s; run off the
    # loop, the ticker goes on every 10 ms.
    assert ticks_inline == 0
    assert ticks_off_loop >= 10
