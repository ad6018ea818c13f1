"""Running callers at the same moment, for tests of what concurrency shares."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_concurrently(callers: int, call: Callable[[int], object]) -> list[object]:
    """Start ``callers`` threads together; return each one's result or exception, by index."""
    start = threading.Barrier(callers)
    outcomes: list[object] = [None] * callers

    def worker(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = call(index)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes
