"""Asking the running pods, through the API server's service proxy (no port-forward).

Only ``--live`` (status, models, pin --wait) and ``predict`` come here; every other answer
comes from API objects alone, so it needs no proxy right and sends nothing to a pod.
"""

from __future__ import annotations

import json
from typing import Any

from mnistctl.errors import EXIT_FORBIDDEN, CliError
from mnistctl.kube import ProxiedError, forbidden
from mnistctl.release import Release

PROXY_TIMEOUT = 10.0


def get_json(release: Release, service: tuple[str, str], path: str) -> dict[str, Any]:
    """GET a JSON document from a Service through the proxy; raise ProxiedError or
    CliError (401/403: the caller may not use the proxy)."""
    what = f"GET {path} from Service {service[0]}"
    try:
        status, body = release.kube.request(
            what, "GET", release.proxy_path(service, path), timeout=PROXY_TIMEOUT
        )
    except ProxiedError as error:
        if error.status in (401, 403):
            raise CliError(
                f"{forbidden(error.message)} (the service proxy needs "
                "services/proxy in mnistctl's Role)",
                EXIT_FORBIDDEN,
            ) from None
        raise
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        raise ProxiedError(what, status, body, f"not JSON: {text[:200]}") from None


def tf_serving(release: Release, model: str) -> dict[str, Any]:
    """TF Serving's version states: {"reachable", "versions": [{"version", "state",
    "error"}], "error"}."""
    try:
        document = get_json(release, release.serving_service(), f"/v1/models/{model}")
    except ProxiedError as error:
        return {"reachable": False, "versions": [], "error": _proxy_error(error)}
    versions = [
        {
            "version": int(entry.get("version", 0)),
            "state": entry.get("state", "UNKNOWN"),
            "error": (entry.get("status") or {}).get("error_message") or None,
        }
        for entry in document.get("model_version_status", [])
    ]
    return {
        "reachable": True,
        "versions": sorted(versions, key=lambda v: v["version"]),
        "error": None,
    }


def gateway_readiness(release: Release) -> dict[str, Any]:
    """The gateway's /readyz: {"reachable", "ready", "model_version", "detail"}."""
    try:
        document = get_json(release, release.gateway_service(), "/readyz")
    except ProxiedError as error:
        # /readyz answers 503 with the same JSON when not ready.
        try:
            document = json.loads(error.body)
        except (TypeError, ValueError):
            return {
                "reachable": False,
                "ready": False,
                "model_version": None,
                "detail": _proxy_error(error),
            }
    model = document.get("model") or {}
    store = document.get("store") or {}
    details = [d for d in (model.get("detail"), store.get("detail")) if d]
    return {
        "reachable": True,
        "ready": document.get("status") == "ready",
        "model_version": model.get("version"),
        "detail": "; ".join(str(d) for d in details) or None,
    }


def _proxy_error(error: ProxiedError) -> str:
    return f"{error.status}: {error.message}"
