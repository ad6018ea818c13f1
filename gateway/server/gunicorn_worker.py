"""gunicorn's gevent worker: keep-alive connections kept even across the workers, and silent
clients given up on after CLIENT_TIMEOUT_SECONDS.

The workers of one gunicorn share its listening socket, and whichever worker wakes first
accepts a connection. Clients that keep their connections alive (a reverse proxy's
upstream pool, a load generator, a service calling the gateway) then stay where they
landed: the benchmark's 32 connections over 2 workers split anywhere from 16/16 to 6/26,
the split held for the whole run, and the crowded worker's clients set the p99
(docs/design.md has the measurement).

So each worker counts its open connections in a table shared by the workers (anonymous
shared memory set up in the master, before the fork). A worker holding at least two
connections more than the least busy one closes the connection of the request it is
serving once it has answered (``Connection: close``), at most one per
``CLOSE_INTERVAL_SECONDS``; the client reconnects, and the new connection lands on
whichever worker accepts it. Only a crowded worker closes, so the split walks back to
even and then stays there: under the benchmark's load it was 16/16 in every sample,
from 2 s into a round on. With one worker nothing is counted.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import time
from multiprocessing.sharedctypes import RawArray

from gunicorn.workers.ggevent import GeventWorker

from gateway.config import Config

# More workers than gunicorn is ever run with here; a worker that finds no free slot
# serves without balancing.
MAX_WORKERS = 64
# How many connections more than the least busy worker a worker may hold: 1 tolerates
# the odd count (17/16) without closing connections back and forth.
TOLERANCE = 1
# At most one connection closed per worker in this time. Under load a worker accepts
# about one connection per turn of its event loop (10-25 ms on saturated cores), so
# closing at every crowded answer left reconnecting clients queued in the listen backlog,
# uncounted: both workers then looked empty and crowded in turn, and closed more.
CLOSE_INTERVAL_SECONDS = 0.1


class ConnectionTable:
    """Open connections per worker process, in memory every worker of one master shares.

    Each worker writes only its own slot and reads the others' without a lock: a value a
    moment old only delays a close by a request.
    """

    def __init__(self, slots: int = MAX_WORKERS) -> None:
        self._pids = RawArray(ctypes.c_long, slots)
        self._open = RawArray(ctypes.c_long, slots)
        self._claiming = multiprocessing.Lock()

    def claim(self, pid: int) -> int | None:
        """A slot for worker ``pid``: a free one, or one whose worker has exited."""
        with self._claiming:
            for slot, holder in enumerate(self._pids):
                if holder == 0 or not _alive(holder):
                    self._pids[slot] = pid
                    self._open[slot] = 0
                    return slot
        return None

    def opened(self, slot: int) -> None:
        self._open[slot] += 1

    def closed(self, slot: int) -> None:
        self._open[slot] -= 1

    def crowded(self, slot: int) -> bool:
        """Whether the worker in ``slot`` holds too many connections, compared with the
        least busy live worker."""
        mine = self._open[slot]
        others = [
            (self._open[other], pid)
            for other, pid in enumerate(self._pids)
            if pid and other != slot
        ]
        if not others:
            return False
        fewest, pid = min(others)
        # Checked last, on this rare path only: a worker that died keeps its old count.
        return mine - fewest > TOLERANCE and _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


class BalancedGeventWorker(GeventWorker):
    """gunicorn's gevent worker, closing a connection when it holds more than its share."""

    # Created in the master by the first worker object (gunicorn builds each worker
    # object in the master and forks), so that every worker maps the same memory.
    _table: ConnectionTable | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.workers > 1 and BalancedGeventWorker._table is None:
            BalancedGeventWorker._table = ConnectionTable()
        self._slot: int | None = None
        self._last_close = 0.0
        self._client_timeout = Config.from_env().client_timeout_seconds

    def run(self) -> None:
        # Registered only now, with the app loaded and the listener about to accept: a
        # worker still starting must not draw connections away from those serving.
        if self._table is not None:
            self._slot = self._table.claim(os.getpid())
        super().run()

    def handle(self, listener, client, addr) -> None:
        if self._slot is None:
            super().handle(listener, client, addr)
            return
        self._table.opened(self._slot)
        try:
            super().handle(listener, client, addr)
        finally:
            self._table.closed(self._slot)

    def handle_request(self, listener_name, req, sock, addr):
        # The headers are in (gunicorn allows ``keepalive`` seconds for them); a body
        # silent for CLIENT_TIMEOUT_SECONDS raises TimeoutError where the app reads it,
        # and the client gets a 408. (gunicorn's handle() makes the socket blocking, so
        # the timeout is set here, per request.)
        sock.settimeout(self._client_timeout)
        if self._should_hand_over_this_connection():
            req.force_close()  # answered with "Connection: close", then closed
        return super().handle_request(listener_name, req, sock, addr)

    def _should_hand_over_this_connection(self) -> bool:
        if self._slot is None:
            return False
        now = time.monotonic()
        if now - self._last_close < CLOSE_INTERVAL_SECONDS or not self._table.crowded(self._slot):
            return False
        self._last_close = now
        return True
