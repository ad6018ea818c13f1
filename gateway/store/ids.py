"""Prediction ids: time-based UUIDs (version 1), Cassandra's ``timeuuid``.

An id carries its creation time, so both stores order by it and the Cassandra store
finds a record's day bucket from its id alone. The node and clock-sequence fields are
random (RFC 9562 allows this), so ids made at the same instant by different workers or
pods do not collide without any coordination.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

# UUIDv1 timestamps count 100-nanosecond ticks since the Gregorian reform.
_GREGORIAN_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)
_TICKS_PER_MICROSECOND = 10
_MICROSECOND = timedelta(microseconds=1)
# A millisecond holds this many ticks: the most ids one request can number within it.
MAX_IDS_PER_MILLISECOND = 10_000
# The multicast bit marks a node field that is random rather than a MAC address.
_RANDOM_NODE = 1 << 40


def new_prediction_id(at: datetime, sequence: int = 0) -> UUID:
    """A fresh time-based UUID for time ``at`` (timezone-aware), truncated to the millisecond.

    ``sequence`` numbers the records of one request (0, 1, ...): it adds that many ticks
    (100 ns), so a request's ids sort in upload order while all of them stay within
    ``at``'s millisecond, hence in its day bucket (the Cassandra batch of one request
    stays single-partition) and consistent with the records' ``created_at``.
    """
    if not 0 <= sequence < MAX_IDS_PER_MILLISECOND:
        raise ValueError(f"sequence must be in [0, {MAX_IDS_PER_MILLISECOND}), got {sequence}")
    ticks = _ticks_since_gregorian_epoch(truncate_to_millisecond(at)) + sequence
    return _uuid1(ticks, clock_seq=secrets.randbits(14), node=secrets.randbits(48) | _RANDOM_NODE)


def id_time(prediction_id: UUID) -> datetime:
    """The UTC time a time-based id was made for (microsecond resolution)."""
    if prediction_id.version != 1:
        raise ValueError(f"{prediction_id} is not a time-based (version 1) UUID")
    return _GREGORIAN_EPOCH + prediction_id.time // _TICKS_PER_MICROSECOND * _MICROSECOND


def id_day(prediction_id: UUID) -> date:
    """The UTC day of a time-based id: its Cassandra partition (``predictions.day``)."""
    return id_time(prediction_id).date()


def truncate_to_millisecond(at: datetime) -> datetime:
    """Stores keep times to the millisecond, as Cassandra's ``timestamp`` does."""
    if at.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {at!r}")
    return at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)


def _ticks_since_gregorian_epoch(at: datetime) -> int:
    return (at - _GREGORIAN_EPOCH) // _MICROSECOND * _TICKS_PER_MICROSECOND


def _uuid1(ticks: int, clock_seq: int, node: int) -> UUID:
    return UUID(
        fields=(
            ticks & 0xFFFF_FFFF,
            (ticks >> 32) & 0xFFFF,
            (ticks >> 48) & 0x0FFF,
            (clock_seq >> 8) & 0x3F,
            clock_seq & 0xFF,
            node,
        ),
        version=1,
    )
