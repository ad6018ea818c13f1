"""The gateway under real gunicorn, started as the image starts it, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.server.gunicorn_conf import GUNICORN_CONFIG
from tests.support.http import free_port, wait_until_ready
from tests.support.paths import REPO_ROOT


@contextmanager
def gunicorn(
    env: dict[str, str], *, workers: int = 2, faults_expected: bool = False
) -> Iterator[tuple[str, int]]:
    """gunicorn with the gateway's config; yields the base URL and the master's pid.
    Once it has stopped, checks what it printed: every worker booted, closed its store
    and model on the way out, and nothing printed a traceback (unless the test injects
    faults: the Cassandra driver logs each refused connection with its traceback)."""
    port = free_port()
    # Its output goes to a file, not a pipe: a pipe read only once the server stops holds
    # 64 KiB, and then every write blocks the process that makes it. A gevent worker
    # blocked on a log write stops serving altogether (its event loop is the blocked
    # thread), and gunicorn's master, blocked on its own log write, cannot replace it:
    # two Cassandra nodes down, each 503 logging a warning, filled it within seconds.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "--config", GUNICORN_CONFIG,
             "gateway:create_app()"],
            env={
                **os.environ,
                **env,
                "PORT": str(port),
                "GUNICORN_CMD_ARGS": f"--workers {workers} --bind 127.0.0.1:{port}",
            },
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        failed = True
        try:
            wait_until_ready(url, process=process)
            yield url, process.pid
            failed = False
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
            log.seek(0)
            output = log.read()
            if failed:
                # Shown with the failure: pytest prints a failed test's captured output.
                print(output[-20000:])
    assert "Booting worker" in output
    assert "Using worker: gateway.server.gunicorn_worker.BalancedGeventWorker" in output
    # Patched before anything created a lock or a socket (see gateway/__init__.py).
    assert "MonkeyPatchWarning" not in output
    # Each worker closed its store and model as it exited (gunicorn_conf.worker_exit),
    # and nothing failed on the way out.
    assert output.count("closed its store and model") == workers, output
    if not faults_expected:
        assert "Traceback" not in output, output
