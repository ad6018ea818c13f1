"""The application factory: the only way to build the gateway."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway.config import Config
from gateway.errors import DependencyUnavailable, GatewayError, RequestTimeout
from gateway.services import EXTENSION_KEY, Services, services
from gateway.web import api, health, ui

log = logging.getLogger(__name__)

# Werkzeug's names for these read oddly as machine codes.
_HTTP_ERROR_CODES = {413: "payload_too_large"}


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    app = Flask(__name__)
    # Werkzeug rejects a larger body with 413 before any of it is read into memory.
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False
    app.extensions[EXTENSION_KEY] = Services.from_config(config)

    app.register_blueprint(ui.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    _register_error_handlers(app)
    _register_request_metrics(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def gateway_error(error: GatewayError) -> tuple[Response, int]:
        response = jsonify(error.to_dict())
        if isinstance(error, DependencyUnavailable):
            log.warning("dependency unavailable: %s", error.message)
            response.headers["Retry-After"] = str(error.retry_after_seconds)
        if isinstance(error, RequestTimeout):
            # The rest of the body may still arrive: the connection cannot be reused.
            response.headers["Connection"] = "close"
        return response, error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = _HTTP_ERROR_CODES.get(status) or (error.name or "error").lower().replace(" ", "_")
        message = error.description
        if status == 413:
            limit = services().config.max_upload_bytes
            message = f"the upload is larger than the {_size(limit)} limit"
        response = jsonify(error={"code": code, "message": message})
        # Werkzeug's own headers for the error: Allow on a 405 (RFC 9110), for one.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        body = {"error": {"code": "internal_error", "message": "internal server error"}}
        return jsonify(body), 500


def _size(limit: int) -> str:
    """A byte count as people say it: 10 MB, 512 KB, 300 bytes."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if limit >= factor:
            return f"{limit / factor:.3g} {unit}"
    return f"{limit} bytes"


def _register_request_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics = services().metrics
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
        return response
