"""History cursors, shared by both stores: an opaque token naming the last record shown.

Ids are time-based, so "older than the last id" is the whole position: no offset, and
no page drifts when new predictions arrive meanwhile. The token is urlsafe base64 of a
format byte and the id; anything else is refused as ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
from uuid import UUID

from gateway.errors import BadRequest

_FORMAT = b"\x01"
_TOKEN_BYTES = len(_FORMAT) + 16


def encode_cursor(last_id: UUID) -> str:
    return base64.urlsafe_b64encode(_FORMAT + last_id.bytes).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> UUID:
    """The id a cursor from :func:`encode_cursor` names; ``BadRequest`` for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == _TOKEN_BYTES and raw.startswith(_FORMAT):
        last_id = UUID(bytes=raw[len(_FORMAT) :])
        if last_id.version == 1:
            return last_id
    raise BadRequest("this cursor was not issued by this server", code="invalid_cursor")
