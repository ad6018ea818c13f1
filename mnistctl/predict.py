"""``mnistctl predict FILE...``: images to the gateway through the API server's service proxy.

The request is the gateway's JSON API (``POST /api/v1/predictions`` with base64 images),
sent to ``/api/v1/namespaces/<ns>/services/<gateway>:http/proxy/...``: no port-forward, no
Ingress, only the ``services/proxy`` right. Every prediction is stored by the gateway like
any upload.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from mnistctl.errors import EXIT_FAILED, EXIT_FORBIDDEN, EXIT_USAGE, CliError
from mnistctl.kube import ProxiedError, forbidden
from mnistctl.output import columns
from mnistctl.release import Release

PREDICT_PATH = "/api/v1/predictions"
PREDICT_TIMEOUT = 60.0
# The gateway's own limit is MAX_IMAGES_PER_REQUEST (gateway.config); larger sets are split.
BATCH = 16


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    images = []
    for path in paths:
        try:
            images.append((path, Path(path).read_bytes()))
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror or error}", EXIT_USAGE) from None
    return images


def request_body(images: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {"images": [base64.b64encode(data).decode() for _, data in images]}


def predict(release: Release, paths: list[str]) -> dict[str, Any]:
    images = read_images(paths)
    release.require()
    deployment = release.read_deployment("gateway")
    if not (deployment.status and deployment.status.ready_replicas):
        raise CliError(
            f"the gateway ({deployment.metadata.name}) has no Ready pod: see `mnistctl status`",
            EXIT_FAILED,
        )
    service = release.gateway_service()
    path = release.proxy_path(service, PREDICT_PATH)
    predictions = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        try:
            _, body = release.kube.request(
                "predict", "POST", path, body=request_body(batch), timeout=PREDICT_TIMEOUT
            )
        except ProxiedError as error:
            raise proxied_failure(error) from None
        answer = json.loads(body)
        for (name, _), prediction in zip(batch, answer["predictions"], strict=True):
            predictions.append(prediction_row(name, prediction))
    return {"release": release.name, "namespace": release.namespace, "predictions": predictions}


def prediction_row(name: str, prediction: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": name,
        "digit": prediction["digit"],
        "confidence": prediction["confidence"],
        "model_name": prediction.get("model_name"),
        "model_version": prediction.get("model_version"),
        "id": prediction.get("id"),
    }


def proxied_failure(error: ProxiedError) -> CliError:
    """A one-line error for an answer through the proxy: the gateway's own JSON error
    ({"error": {"code", "message"}}), or the API server's Status."""
    if error.status in (401, 403):
        return CliError(
            f"{forbidden(error.message)} (predict needs services/proxy on the gateway)",
            EXIT_FORBIDDEN,
        )
    try:
        document = json.loads(error.body)
    except (TypeError, ValueError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        gateway_error = document["error"]
        return CliError(
            f"the gateway answered {error.status}: {gateway_error.get('message')}", EXIT_FAILED
        )
    return CliError(f"predict: {error.status}: {error.message}", EXIT_FAILED)


def predict_table(data: dict[str, Any]) -> str:
    return columns(
        ["file", "digit", "confidence", "model", "version"],
        [
            [p["file"], p["digit"], p["confidence"], p["model_name"], p["model_version"]]
            for p in data["predictions"]
        ],
    )
