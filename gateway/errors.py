"""Errors the gateway turns into JSON responses: ``{"error": {"code", "message"}}``.

Pure edges (preprocess, predictors, stores) raise these; the app maps them to HTTP
in one place (``gateway.web.app``), so views never build error responses by hand.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class RequestTimeout(GatewayError):
    """The client stopped sending its request body (``CLIENT_TIMEOUT_SECONDS`` of silence)."""

    status = 408
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(GatewayError):
    status = 422
    code = "unprocessable"


# --- images (raised by gateway.pipeline.preprocess) -------------------------------------------


class NotAnImage(UnsupportedMediaType):
    """The bytes are not an image format the gateway reads (PNG, JPEG, GIF, BMP, WebP)."""

    code = "unsupported_image"


class CorruptImage(BadRequest):
    """A known image format, but truncated or damaged."""

    code = "corrupt_image"


class ImageTooLarge(PayloadTooLarge):
    """Declared dimensions exceed the pixel budget: rejected before decoding."""

    code = "image_too_large"


class NoInk(Unprocessable):
    """The image has no foreground strokes to read."""

    code = "no_digit_found"


# --- dependencies --------------------------------------------------------------------


class DependencyUnavailable(GatewayError):
    """A dependency is down or timing out; the client should retry later."""

    status = 503
    code = "unavailable"
    retry_after_seconds = 5


class PredictorUnavailable(DependencyUnavailable):
    code = "model_unavailable"


class StoreUnavailable(DependencyUnavailable):
    code = "store_unavailable"


class PredictorFailed(GatewayError):
    """The model server answered, but with an error that retrying will not fix."""

    status = 502
    code = "model_error"
