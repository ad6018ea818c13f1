"""Time-based prediction ids and the history cursor that carries one."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.errors import BadRequest
from gateway.store.cursor import decode_cursor, encode_cursor
from gateway.store.ids import (
    MAX_IDS_PER_MILLISECOND,
    id_time,
    new_prediction_id,
    truncate_to_millisecond,
)

AT = datetime(2024, 3, 5, 23, 59, 59, 999_876, tzinfo=UTC)


def test_an_id_is_a_version_1_uuid_carrying_its_millisecond() -> None:
    prediction_id = new_prediction_id(AT)

    assert prediction_id.version == 1
    assert prediction_id.variant == uuid.RFC_4122
    assert id_time(prediction_id) == datetime(2024, 3, 5, 23, 59, 59, 999_000, tzinfo=UTC)


def test_ids_of_the_same_instant_differ() -> None:
    assert len({new_prediction_id(AT) for _ in range(1000)}) == 1000


def test_the_node_field_is_marked_random_not_a_mac_address() -> None:
    assert new_prediction_id(AT).node & (1 << 40)


def test_a_request_s_ids_sort_in_upload_order_within_its_millisecond() -> None:
    ids = [new_prediction_id(AT, sequence) for sequence in range(64)]

    assert sorted(ids, key=lambda prediction_id: prediction_id.time) == ids
    assert {truncate_to_millisecond(id_time(prediction_id)) for prediction_id in ids} == {
        truncate_to_millisecond(AT)
    }


def test_ids_follow_time_across_milliseconds() -> None:
    later = new_prediction_id(AT + timedelta(milliseconds=1))

    assert new_prediction_id(AT, MAX_IDS_PER_MILLISECOND - 1).time < later.time


@pytest.mark.parametrize("sequence", [-1, MAX_IDS_PER_MILLISECOND])
def test_a_sequence_outside_one_millisecond_is_refused(sequence: int) -> None:
    with pytest.raises(ValueError, match="sequence"):
        new_prediction_id(AT, sequence)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_prediction_id(datetime(2024, 3, 5, 12, 0))


def test_times_in_other_zones_become_utc() -> None:
    at = datetime(2024, 3, 6, 1, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))

    assert truncate_to_millisecond(at) == datetime(2024, 3, 5, 23, 0, 0, 123_000, tzinfo=UTC)
    assert id_time(new_prediction_id(at)) == datetime(2024, 3, 5, 23, 0, 0, 123_000, tzinfo=UTC)


def test_id_time_reads_ids_made_by_the_standard_library() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)

    assert before <= id_time(uuid.uuid1()) <= datetime.now(UTC)


def test_id_time_refuses_random_uuids() -> None:
    with pytest.raises(ValueError, match="version 1"):
        id_time(uuid.uuid4())


def test_a_cursor_names_the_id_it_was_made_from() -> None:
    prediction_id = new_prediction_id(AT)

    cursor = encode_cursor(prediction_id)

    assert decode_cursor(cursor) == prediction_id
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%%",
        "é",
        encode_cursor(uuid.uuid4()),  # right shape, but not a time-based id
        encode_cursor(new_prediction_id(AT))[:-2],
        base64.urlsafe_b64encode(b"\x02" + new_prediction_id(AT).bytes).decode(),  # format 2
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(BadRequest) as raised:
        decode_cursor(cursor)

    assert raised.value.code == "invalid_cursor"
    assert raised.value.status == 400
