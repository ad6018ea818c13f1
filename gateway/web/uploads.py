"""Reading the uploads out of a request: multipart ``file`` fields or JSON base64."""

from __future__ import annotations

import base64
import binascii

from flask import Request
from werkzeug.exceptions import ClientDisconnected

from gateway.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from gateway.pipeline.inference import Upload
from gateway.web.multipart import split_form_data

MULTIPART_FIELD = "file"
# Parts of other names are ignored, but only so many of them are parsed.
MAX_OTHER_PARTS = 16


def read_uploads(request: Request, *, max_images: int) -> list[Upload]:
    try:
        uploads = _read(request, max_images=max_images)
    except ClientDisconnected as error:
        # Werkzeug reports any failed body read as a disconnect; the server's socket
        # timeout (CLIENT_TIMEOUT_SECONDS) is the one the client may still hear about.
        # (Raised while handling the read's own error, which is its context.)
        if not isinstance(error.__context__, TimeoutError):
            raise
        # The answer closes the connection (see gateway.web.app).
        raise RequestTimeout(
            "the request body stopped arriving before it was complete", code="request_timeout"
        ) from None
    if not uploads:
        raise BadRequest("no image in the request", code="missing_image")
    if len(uploads) > max_images:
        raise PayloadTooLarge(
            f"{len(uploads)} images in one request; the limit is {max_images}",
            code="too_many_images",
        )
    for position, upload in enumerate(uploads):
        if not upload.data:
            raise BadRequest(f"image {position} is empty", code="empty_file")
    return uploads


def _read(request: Request, *, max_images: int) -> list[Upload]:
    if request.mimetype == "multipart/form-data":
        return _from_multipart(request, max_parts=max_images + MAX_OTHER_PARTS)
    if request.is_json:
        return _from_json(request)
    raise UnsupportedMediaType(
        'send multipart/form-data with field \'file\', or JSON {"images": ["<base64>"]}',
        code="unsupported_content_type",
    )


def _from_multipart(request: Request, *, max_parts: int) -> list[Upload]:
    # get_data() enforces MAX_UPLOAD_BYTES (413) while it reads.
    parts = split_form_data(
        request.get_data(cache=False),
        request.mimetype_params.get("boundary", ""),
        max_parts=max_parts,
    )
    uploads = [Upload(part.data, part.filename) for part in parts if part.name == MULTIPART_FIELD]
    if not uploads:
        raise BadRequest(f"multipart field '{MULTIPART_FIELD}' is missing", code="missing_field")
    return uploads


def _from_json(request: Request) -> list[Upload]:
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("the body is not valid JSON", code="malformed_json")
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list) or not all(isinstance(item, str) for item in images):
        raise BadRequest('JSON body must be {"images": ["<base64>", ...]}', code="missing_field")
    return [
        Upload(data=_decode_base64(item, position), filename=None)
        for position, item in enumerate(images)
    ]


def _decode_base64(text: str, position: int) -> bytes:
    # Accept data URLs as browsers produce them (canvas.toDataURL()).
    payload = text.partition(",")[2] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"image {position} is not valid base64", code="malformed_base64") from None
