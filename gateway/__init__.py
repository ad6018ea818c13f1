"""The MNIST gateway: uploads in, predictions out, every result stored.

``create_app(config)`` is the only way to build the app; gunicorn calls
``gateway:create_app()``.
"""

from gateway.app import create_app

__all__ = ["create_app"]
