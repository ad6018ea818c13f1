"""LazyDaemon: started on first use, restarted after a crash, stopped for good by stop()."""

from __future__ import annotations

import threading

from gateway.background import LazyDaemon


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
