"""The MNIST gateway: uploads in, predictions out, every result stored.

``create_app(config)`` is the only way to build the app; gunicorn calls
``gateway:create_app()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: gunicorn's master imports
    # gateway.server.gunicorn_conf, and the gevent worker must monkey-patch the standard library
    # before Flask, requests or the Cassandra driver create their locks and sockets.
    if name == "create_app":
        from gateway.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
