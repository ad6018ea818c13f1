"""The JSON API, version 1. Views are thin: parse, call the pipeline or the store, shape."""

from __future__ import annotations

import functools
import uuid
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, request

from gateway.errors import BadRequest, NotFound, Unprocessable
from gateway.pipeline.inference import predict_and_store
from gateway.services import services
from gateway.store.base import PredictionRecord
from gateway.web.uploads import read_uploads

bp = Blueprint("api", __name__, url_prefix="/api/v1")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@bp.post("/predictions")
def create_predictions() -> tuple[Response, int]:
    svc = services()
    uploads = read_uploads(request, max_images=svc.config.max_images_per_request)
    records = predict_and_store(
        uploads,
        predictor=svc.predictor,
        store=svc.store,
        metrics=svc.metrics,
        max_pixels=svc.config.max_image_pixels,
    )
    return jsonify(predictions=[prediction_json(r) for r in records]), 201


@bp.get("/predictions")
def list_predictions() -> Response:
    limit = _page_size(request.args.get("limit"))
    svc = services()
    with svc.metrics.store_seconds.labels("list").time():
        page = svc.store.list(limit, request.args.get("cursor") or None)
    return jsonify(
        predictions=[prediction_json(r) for r in page.records], next_cursor=page.next_cursor
    )


@bp.get("/predictions/<prediction_id>")
def get_prediction(prediction_id: str) -> Response:
    svc = services()
    with svc.metrics.store_seconds.labels("get").time():
        record = svc.store.get(_parse_id(prediction_id))
    if record is None:
        raise NotFound(f"no prediction {prediction_id}")
    return jsonify(prediction_json(record))


@bp.post("/predictions/<prediction_id>/feedback")
def give_feedback(prediction_id: str) -> Response:
    parsed_id = _parse_id(prediction_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "label" not in body:
        raise BadRequest('JSON body must be {"label": 0-9}', code="missing_field")
    label = body["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
        raise Unprocessable("label must be an integer from 0 to 9", code="invalid_label")
    svc = services()
    with svc.metrics.store_seconds.labels("feedback").time():
        record = svc.store.set_label(parsed_id, label)
    if record is None:
        raise NotFound(f"no prediction {prediction_id}")
    return jsonify(prediction_json(record))


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("gateway.web").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def prediction_json(record: PredictionRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "digit": record.digit,
        "confidence": record.confidence,
        "probabilities": list(record.probabilities),
        "model_name": record.model_name,
        "model_version": record.model_version,
        "filename": record.filename,
        "created_at": record.created_at.isoformat(timespec="milliseconds"),
        "latency_ms": record.latency_ms,
        "upload_sha256": record.upload_sha256,
        "label": record.label,
    }


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"no prediction {text}") from None


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(
            f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", code="invalid_limit"
        )
    return int(raw)
