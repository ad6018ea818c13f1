"""The JSON API, version 1. Views are thin: parse, call the pipeline or the store, shape."""

from __future__ import annotations

import functools
import io
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, request
from PIL import Image

from gateway.errors import BadRequest, NotFound, Unprocessable
from gateway.pipeline.inference import predict_and_store
from gateway.services import services
from gateway.store.base import PredictionRecord
from gateway.store.stats import Stats
from gateway.web.uploads import read_uploads
from mnist_contract import IMAGE_SIDE

bp = Blueprint("api", __name__, url_prefix="/api/v1")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DEFAULT_STATS_DAYS = 7
MAX_STATS_DAYS = 90


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
    label = _integral(body["label"])
    if label is None or not 0 <= label <= 9:
        raise Unprocessable("label must be an integer from 0 to 9", code="invalid_label")
    svc = services()
    with svc.metrics.store_seconds.labels("feedback").time():
        record = svc.store.set_label(parsed_id, label)
    if record is None:
        raise NotFound(f"no prediction {prediction_id}")
    return jsonify(prediction_json(record))


@bp.get("/predictions/<prediction_id>/input.png")
def get_input_image(prediction_id: str) -> Response:
    """The 28x28 grayscale input the model received for this prediction, as a PNG."""
    svc = services()
    with svc.metrics.store_seconds.labels("get").time():
        record = svc.store.get(_parse_id(prediction_id))
    if record is None:
        raise NotFound(f"no prediction {prediction_id}")
    response = Response(input_png(record.input_image), mimetype="image/png")
    # A stored input never changes.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/stats")
def get_stats() -> Response:
    days = _bounded_int(request.args.get("days"), "days", DEFAULT_STATS_DAYS, MAX_STATS_DAYS)
    since, until, bucket_seconds = stats_window(datetime.now(UTC), days)
    svc = services()
    with svc.metrics.store_seconds.labels("stats").time():
        stats = svc.store.stats(since, until, bucket_seconds)
    return jsonify(stats_json(stats))


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


def stats_json(stats: Stats) -> dict[str, Any]:
    return {
        "since": _iso(stats.since),
        "until": _iso(stats.until),
        "bucket_seconds": stats.bucket_seconds,
        "predictions": stats.predictions,
        "per_bucket": list(stats.per_bucket),
        "digits": list(stats.digits),
        "labelled": stats.labelled,
        "correct": stats.correct,
        "accuracy": stats.correct / stats.labelled if stats.labelled else None,
        "confusion": [list(row) for row in stats.confusion],
        "latency_ms": stats.latency_ms,
        "model_versions": [
            {
                "model_name": model.model_name,
                "model_version": model.model_version,
                "predictions": model.predictions,
                "first_at": _iso(model.first_at),
                "last_at": _iso(model.last_at),
                "labelled": model.labelled,
                "correct": model.correct,
                "accuracy": model.correct / model.labelled if model.labelled else None,
            }
            for model in stats.model_versions
        ],
    }


def stats_window(now: datetime, days: int) -> tuple[datetime, datetime, int]:
    """The last ``days`` days up to the end of the current bucket: hours for one or two
    days, whole UTC days beyond."""
    if days <= 2:
        until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return until - timedelta(days=days), until, 3600
    until = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return until - timedelta(days=days), until, 86400


def input_png(input_image: bytes) -> bytes:
    """The stored 784 bytes (white ink on black, row-major) as a 28x28 grayscale PNG."""
    buffer = io.BytesIO()
    Image.frombytes("L", (IMAGE_SIDE, IMAGE_SIDE), input_image).save(buffer, format="PNG")
    return buffer.getvalue()


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def _integral(value: object) -> int | None:
    """A JSON number that is a whole number (7 or 7.0, as JSON Schema's integer), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"no prediction {text}") from None


def _page_size(raw: str | None) -> int:
    return _bounded_int(raw, "limit", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _bounded_int(raw: str | None, name: str, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"{name} must be an integer from 1 to {maximum}", code=f"invalid_{name}")
    return int(raw)
