"""Serving an app over real HTTP on 127.0.0.1 for the end-to-end tests."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from flask import Flask
from werkzeug.serving import make_server

from gateway.services import close_services
from tests.support.waiting import wait_until


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server in a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Run the gateway ``app`` on an ephemeral port in a thread; yields its base URL.

    Afterwards its services are closed, as a gunicorn worker closes them when it exits.
    """
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        close_services(app)


def wait_until_ready(
    base_url: str,
    timeout: float = 120.0,
    *,
    process: subprocess.Popen | None = None,
    answers: int = 1,
) -> None:
    """Poll /readyz as Kubernetes would, until the model is loaded and the store answers.

    A refused connection or a slow answer counts as "not ready yet", as for a probe: the
    first /readyz of a worker connects to the store and creates its schema, which takes
    seconds on a busy machine. ``answers`` consecutive 200s are wanted (several, to reach
    each worker of a server with many); ``process``, when given, must not exit meanwhile.
    """

    def ready() -> bool:
        if process is not None and process.poll() is not None:
            output = process.communicate()[0] if process.stdout else ""
            raise RuntimeError(
                f"the server exited with {process.returncode} before it was ready\n{output}"
            )
        try:
            return all(requests.get(base_url + "/readyz", timeout=5).ok for _ in range(answers))
        except (requests.ConnectionError, requests.Timeout):
            return False

    wait_until(ready, timeout=timeout, interval=0.5, what=f"{base_url}/readyz")
