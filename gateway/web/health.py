"""Operational endpoints: liveness, readiness (model and store), Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gateway.errors import DependencyUnavailable
from gateway.metrics import CONTENT_TYPE
from gateway.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    # Liveness only: the process answers. Dependencies belong to /readyz, so that an
    # outage of Cassandra or TF Serving never makes Kubernetes restart the gateway.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    model = svc.predictor.status()
    store_ok, store_detail = _store_status()
    ready = model.ready and store_ok
    body = {
        "status": "ready" if ready else "not_ready",
        "model": {
            "ready": model.ready,
            "name": model.model_name,
            "version": model.model_version,
            "detail": model.detail,
        },
        "store": {"ready": store_ok, "detail": store_detail},
    }
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    return Response(services().metrics.exposition(), mimetype=CONTENT_TYPE)


def _store_status() -> tuple[bool, str]:
    svc = services()
    try:
        with svc.metrics.store_seconds.labels("ping").time():
            svc.store.ping()
    except DependencyUnavailable as error:
        return False, error.message
    return True, "reachable"
