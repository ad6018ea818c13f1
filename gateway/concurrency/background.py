"""Daemon threads that start on first use and survive gunicorn's fork.

gunicorn imports the app in the master and forks workers; threads do not cross a fork,
and locks held by a parent thread at fork time stay locked forever in the child. So
predictors never start threads at import or construction: they call
:meth:`LazyDaemon.ensure_running` on first use, and state that a fork invalidates is
rebuilt in the child by a hook registered with :func:`reset_in_forked_child`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


class NativeThreads:
    """A per-process pool of ``size`` native threads for CPU-bound calls, off the event loop.

    Under gunicorn's gevent worker every request of a process shares one OS thread, so a
    call that computes for a while without yielding would hold up all of them, probes
    included. :meth:`run` hands such a call to one of these threads while the calling
    greenlet waits: Pillow's decoders, numpy and TensorFlow's kernels release the GIL, and
    the interpreter hands it back every few milliseconds otherwise, so the event loop keeps
    answering meanwhile. More calls than threads queue for one. With OS threads (no
    gevent) the call simply runs on the caller's thread.
    """

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._pool: tuple[int, object] | None = None

    def run(self, function: Callable[..., ResultT], *args: object) -> ResultT:
        if not _gevent_patched():
            return function(*args)
        return self._threads().apply(function, args)

    def _threads(self):
        # Made on first use: a pool made before a fork has no threads in the child.
        from gevent.threadpool import ThreadPool

        if self._pool is None or self._pool[0] != os.getpid():
            self._pool = (os.getpid(), ThreadPool(maxsize=self._size()))
        return self._pool[1]


# Decoding and normalising large uploads: one thread per core.
IMAGE_DECODE_THREADS = NativeThreads(size=lambda: os.cpu_count() or 1)
# In-process model calls: a thread of their own, so a batch never queues behind large
# decodes. One, as one collector makes one model call at a time
# (gateway.predictors.batching); TensorFlow's own threads (MODEL_THREADS) run its kernels.
MODEL_CALL_THREAD = NativeThreads(size=lambda: 1)
# Loading a new model version: about a second of CPU, now and then, on a thread apart from
# the calls, which the current version keeps serving meanwhile.
MODEL_LOAD_THREAD = NativeThreads(size=lambda: 1)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def reset_in_forked_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in every forked child, while the child has one thread.

    Held weakly, so registering does not keep the object alive (``os.register_at_fork``
    hooks cannot be unregistered).
    """
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=hook)


class LazyDaemon:
    """One daemon thread running ``run(stop_event)``, started by the first ensure_running()."""

    def __init__(self, name: str, run: Callable[[threading.Event], None]) -> None:
        self._name = name
        self._run = run
        self._reset()
        reset_in_forked_child(self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        """Start the thread unless it runs (a thread that crashed is started again)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if not alive and not self._stop.is_set():
                thread = threading.Thread(target=self._guarded_run, name=self._name, daemon=True)
                thread.start()
                self._thread = thread

    def _guarded_run(self) -> None:
        try:
            self._run(self._stop)
        except Exception:
            # Into the application's log, where the restart on next use will be seen too.
            log.exception("background thread %s crashed; it restarts on next use", self._name)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it; ensure_running() is a no-op afterwards."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
