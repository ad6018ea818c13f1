"""The table in which gunicorn's workers count their open connections
(``gateway.server.gunicorn_worker``): when a worker is crowded, and how slots are reused."""

from __future__ import annotations

import os
import subprocess
import sys

from gateway.server.gunicorn_worker import TOLERANCE, ConnectionTable


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def open_connections(table: ConnectionTable, slot: int, count: int) -> None:
    for _ in range(count):
        table.opened(slot)


def test_a_worker_alone_is_never_crowded():
    table = ConnectionTable(slots=4)
    mine = table.claim(os.getpid())
    open_connections(table, mine, 50)
    assert not table.crowded(mine)


def test_a_worker_is_crowded_past_the_tolerance_over_the_least_busy_one():
    table = ConnectionTable(slots=4)
    mine, other, idle = (table.claim(pid) for pid in (os.getpid(), os.getppid(), os.getppid()))
    open_connections(table, other, 3 + TOLERANCE)
    open_connections(table, idle, 3)
    open_connections(table, mine, 3 + TOLERANCE)
    assert not table.crowded(mine)
    table.opened(mine)
    assert table.crowded(mine)
    assert not table.crowded(other)
    # Its connections closing bring it back within its share.
    table.closed(mine)
    assert not table.crowded(mine)


def test_a_worker_that_exited_does_not_count_and_its_slot_is_reused():
    table = ConnectionTable(slots=2)
    mine, gone = table.claim(os.getpid()), table.claim(exited_pid())
    open_connections(table, mine, 10)
    assert not table.crowded(mine)
    # The table is full, but the exited worker's slot is free again, and empty.
    assert table.claim(os.getppid()) == gone
    assert table.crowded(mine)
    assert table.claim(os.getppid()) is None
