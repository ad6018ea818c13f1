"""One contract, two stores: every test runs against SQLite and the real Cassandra node."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cassandra.cluster import Session

from gateway.config import Config
from gateway.errors import BadRequest, StoreUnavailable
from gateway.store import PredictionRecord, Store, make_store, new_prediction_id
from gateway.store.cursor import encode_cursor
from gateway.store.schema import keyspace_name
from tests.support.records import make_record

DAY = datetime(2024, 3, 5, 13, 45, 12, 345000, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    if request.param == "sqlite":
        # A directory that does not exist yet: the store creates it.
        return Config(sqlite_path=tmp_path / "state" / "predictions.sqlite3")
    config: Config = request.getfixturevalue("cassandra_config")
    _truncate(request.getfixturevalue("cassandra_admin"), keyspace_name(config))
    return config


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = make_store(config)
    yield store
    store.close()


def _truncate(session: Session, keyspace: str) -> None:
    """Empty the keyspace's tables, if an earlier test has created them."""
    tables = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    for row in tables:
        session.execute(f"TRUNCATE {keyspace}.{row.table_name}")


def walk_history(store: Store, limit: int) -> list[list[PredictionRecord]]:
    pages, cursor = [], None
    while True:
        page = store.list(limit, cursor)
        pages.append(page.records)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def newest_first(records: list[PredictionRecord]) -> list[PredictionRecord]:
    return sorted(records, key=lambda record: record.id.time, reverse=True)


# --- save and get --------------------------------------------------------------------


def test_get_returns_every_field_as_saved(store: Store) -> None:
    record = make_record(
        DAY,
        filename="Zahl sieben ✓.png",
        input_image=bytes(range(256)) * 3 + bytes(range(16)),
    )

    store.save_many([record])

    assert store.get(record.id) == record


def test_created_at_comes_back_in_utc_to_the_millisecond(store: Store) -> None:
    local = timezone(timedelta(hours=2))
    at = datetime(2024, 3, 5, 15, 45, 12, 345678, tzinfo=local)
    record = replace(make_record(at), created_at=at)

    store.save_many([record])

    stored = store.get(record.id)
    assert stored is not None
    assert stored.created_at == datetime(2024, 3, 5, 13, 45, 12, 345000, tzinfo=UTC)
    assert stored.created_at.utcoffset() == timedelta(0)


def test_optional_fields_round_trip_when_set_and_when_empty(store: Store) -> None:
    labelled = make_record(DAY, 0, label=7, labelled_at=DAY + timedelta(minutes=5))
    anonymous = make_record(DAY, 1, filename=None)

    store.save_many([labelled, anonymous])

    assert store.get(labelled.id) == labelled
    assert store.get(anonymous.id) == anonymous


def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    store.save_many([make_record(DAY)])

    assert store.get(new_prediction_id(DAY)) is None
    assert store.get(uuid.uuid4()) is None


def test_save_many_keeps_every_record_of_a_request_in_upload_order(store: Store) -> None:
    request = [make_record(DAY, sequence) for sequence in range(5)]

    store.save_many(request)

    assert [store.get(record.id) for record in request] == request
    assert store.list(10).records == list(reversed(request))


def test_save_many_stores_nothing_when_one_record_is_malformed(store: Store) -> None:
    good = [make_record(DAY, sequence) for sequence in range(3)]
    truncated_image = make_record(DAY, 3, input_image=bytes(783))

    with pytest.raises(ValueError, match="input_image"):
        store.save_many([*good, truncated_image])

    assert [store.get(record.id) for record in good] == [None, None, None]
    assert store.list(10).records == []


def test_saving_a_record_again_replaces_it(store: Store) -> None:
    record = make_record(DAY)
    store.save_many([record])

    store.save_many([replace(record, filename="renamed.png")])

    assert store.get(record.id) == replace(record, filename="renamed.png")
    assert len(store.list(10).records) == 1


# --- history -------------------------------------------------------------------------


def test_list_of_an_empty_store_is_one_empty_page(store: Store) -> None:
    page = store.list(10)

    assert page.records == []
    assert page.next_cursor is None


def test_list_pages_newest_first_across_day_buckets(store: Store) -> None:
    # Quiet days in between, several records on some days, a request of three on one.
    times = [
        DAY - timedelta(days=30),
        DAY - timedelta(days=3, hours=2),
        DAY - timedelta(days=3),
        DAY - timedelta(days=1),
        DAY,
        DAY + timedelta(hours=9),
    ]
    saved = [make_record(at) for at in times]
    saved += [make_record(DAY + timedelta(hours=1), sequence) for sequence in range(3)]
    for record in saved:
        store.save_many([record])

    for limit in (1, 2, 3, 4, 100):
        pages = walk_history(store, limit)

        assert [record for page in pages for record in page] == newest_first(saved)
        assert all(0 < len(page) <= limit for page in pages)


def test_cursor_of_the_last_full_page_leads_to_nothing(store: Store) -> None:
    store.save_many([make_record(DAY, sequence) for sequence in range(4)])

    first = store.list(2)
    second = store.list(2, first.next_cursor)

    assert len(first.records) == 2
    assert first.next_cursor is not None
    assert len(second.records) == 2
    assert second.next_cursor is None


def test_new_predictions_do_not_shift_the_pages_already_handed_out(store: Store) -> None:
    older = [make_record(DAY - timedelta(days=1), sequence) for sequence in range(4)]
    store.save_many(older)
    first = store.list(2)

    store.save_many([make_record(DAY)])

    assert store.list(2, first.next_cursor).records == newest_first(older)[2:]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "",
        "AAAA",
        "!!" + encode_cursor(new_prediction_id(DAY)),
        encode_cursor(uuid.uuid4()),
        encode_cursor(new_prediction_id(DAY)) + "AA",
    ],
)
def test_a_cursor_the_store_did_not_issue_is_a_bad_request(store: Store, cursor: str) -> None:
    with pytest.raises(BadRequest) as raised:
        store.list(10, cursor)

    assert raised.value.code == "invalid_cursor"


# --- feedback ------------------------------------------------------------------------


def test_set_label_persists_where_get_and_list_read(store: Store) -> None:
    record = make_record(DAY)
    store.save_many([record])
    before = datetime.now(UTC)

    updated = store.set_label(record.id, 4)

    assert updated is not None
    assert updated.label == 4
    assert updated.labelled_at is not None
    assert before - timedelta(seconds=1) <= updated.labelled_at <= datetime.now(UTC)
    assert updated == replace(record, label=4, labelled_at=updated.labelled_at)
    assert store.get(record.id) == updated
    assert store.list(10).records == [updated]


def test_set_label_of_an_unknown_id_is_none_and_creates_nothing(store: Store) -> None:
    assert store.set_label(new_prediction_id(DAY), 3) is None
    assert store.list(10).records == []


def test_labelled_yields_every_labelled_record_and_nothing_else(store: Store) -> None:
    times = [DAY - timedelta(days=9), DAY - timedelta(days=1), DAY, DAY + timedelta(hours=3)]
    saved = [make_record(at, sequence) for at in times for sequence in range(3)]
    for index in range(0, len(saved), 3):  # one request per time
        store.save_many(saved[index : index + 3])
    expected = {}
    for index, record in enumerate(saved):
        if index % 3 != 1:  # every day keeps an unlabelled record among labelled ones
            labelled = store.set_label(record.id, index % 10)
            assert labelled is not None
            expected[record.id] = labelled

    for page_size in (1, 2, 500):
        found = list(store.labelled(page_size=page_size))

        assert len(found) == len(expected)
        assert {record.id: record for record in found} == expected


def test_labelled_reads_labels_saved_with_the_record(store: Store) -> None:
    labelled = make_record(DAY, 0, label=3, labelled_at=DAY + timedelta(minutes=1))
    store.save_many([labelled, make_record(DAY, 1)])

    assert list(store.labelled()) == [labelled]


def test_labelled_of_a_store_without_labels_is_empty(store: Store) -> None:
    assert list(store.labelled()) == []
    store.save_many([make_record(DAY, sequence) for sequence in range(3)])
    assert list(store.labelled()) == []


# --- operations ----------------------------------------------------------------------


def test_ping_answers_and_an_unreachable_backend_is_unavailable(
    config: Config, tmp_path: Path
) -> None:
    store = make_store(config)
    try:
        assert store.ping() is None  # answers, raising nothing
    finally:
        store.close()
    if config.uses_cassandra:  # nothing listens on port 1
        broken = config.with_overrides(cassandra_port=1, cassandra_connect_timeout_seconds=1.0)
    else:  # a directory is not a database file
        broken = config.with_overrides(sqlite_path=tmp_path)
    unreachable = make_store(broken)
    try:
        with pytest.raises(StoreUnavailable):
            unreachable.ping()
    finally:
        unreachable.close()


def test_concurrent_requests_from_many_threads_are_all_kept(store: Store) -> None:
    requests = [
        [make_record(DAY + timedelta(seconds=index), sequence) for sequence in range(3)]
        for index in range(40)
    ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(store.save_many, requests))

    saved = [record for request in requests for record in request]
    assert [record for page in walk_history(store, 50) for record in page] == newest_first(saved)


def _save_in_child(store: Store, record: PredictionRecord) -> None:
    store.save_many([record])
    assert store.get(record.id) == record


def test_a_store_used_before_a_fork_works_in_the_child(store: Store) -> None:
    parent_record, child_record = make_record(DAY, 0), make_record(DAY, 1)
    store.save_many([parent_record])  # connects in the parent, as a preloading server might

    child = multiprocessing.get_context("fork").Process(
        target=_save_in_child, args=(store, child_record)
    )
    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert store.get(child_record.id) == child_record


# --- stats ---------------------------------------------------------------------------


def test_stats_aggregate_the_window_and_nothing_outside_it(store: Store) -> None:
    since = datetime(2024, 3, 4, 22, 0, tzinfo=UTC)  # the window spans midnight (two days)
    until = since + timedelta(hours=4)
    inside = [
        # (offset, digit, label, latency_ms, model_version)
        (timedelta(minutes=5), 7, 7, 10.0, "3"),
        (timedelta(minutes=30), 7, 1, 20.0, "3"),
        (timedelta(minutes=59, seconds=59, milliseconds=999), 1, None, 30.0, "3"),
        (timedelta(hours=2, minutes=1), 0, 0, 40.0, "4"),  # after midnight
        (timedelta(hours=3, minutes=59), 9, None, 50.0, "4"),
    ]
    records = [
        make_record(since + offset, 0, digit=digit, label=label, latency_ms=ms, model_version=v)
        for offset, digit, label, ms, v in inside
    ]
    outside = [
        make_record(since - timedelta(milliseconds=1), 0, digit=5, label=5),
        make_record(until, 0, digit=5),
        make_record(until + timedelta(days=1), 0, digit=5),
    ]
    for record in records + outside:
        store.save_many([record])

    stats = store.stats(since, until, bucket_seconds=3600)

    assert (stats.since, stats.until, stats.bucket_seconds) == (since, until, 3600)
    assert stats.predictions == 5
    assert stats.per_bucket == (3, 0, 1, 1)
    assert stats.digits == (1, 1, 0, 0, 0, 0, 0, 2, 0, 1)
    assert (stats.labelled, stats.correct) == (3, 2)
    expected_confusion = [[0] * 10 for _ in range(10)]
    expected_confusion[7][7] = expected_confusion[1][7] = expected_confusion[0][0] = 1
    assert stats.confusion == tuple(tuple(row) for row in expected_confusion)
    assert stats.latency_ms == {"p50": 30.0, "p90": 50.0, "p99": 50.0, "max": 50.0}
    assert [
        (m.model_name, m.model_version, m.predictions, m.first_at, m.last_at)
        for m in stats.model_versions
    ] == [
        ("mnist", "4", 2, records[3].created_at, records[4].created_at),
        ("mnist", "3", 3, records[0].created_at, records[2].created_at),
    ]
    # The feedback on each version's own predictions: "3" read a 7 right and a 1 as 7.
    assert [(m.model_version, m.labelled, m.correct) for m in stats.model_versions] == [
        ("4", 1, 1),
        ("3", 2, 1),
    ]


def test_stats_count_feedback_per_model_version_that_made_the_prediction(store: Store) -> None:
    since = DAY - timedelta(hours=1)
    # (version, digit, label): version 2 is right 3 times in 4, version 10 once in 2; the
    # labels arrive after the predictions, as feedback does.
    made = [
        ("2", 4, 4), ("2", 4, 9), ("2", 1, 1), ("2", 6, 6), ("2", 3, None),
        ("10", 8, 8), ("10", 8, 3), ("10", 5, None),
    ]  # fmt: skip
    records = [
        make_record(DAY + timedelta(seconds=index), 0, digit=digit, model_version=version)
        for index, (version, digit, _) in enumerate(made)
    ]
    store.save_many(records)
    for record, (_, _, label) in zip(records, made, strict=True):
        if label is not None:
            store.set_label(record.id, label)

    stats = store.stats(since, since + timedelta(hours=2), bucket_seconds=3600)

    by_version = {
        m.model_version: (m.predictions, m.labelled, m.correct) for m in stats.model_versions
    }
    assert by_version == {"2": (5, 4, 3), "10": (3, 2, 1)}
    assert (stats.labelled, stats.correct) == (6, 4)


def test_stats_count_feedback_given_after_the_prediction(store: Store) -> None:
    record = make_record(DAY, 0, digit=3)
    store.save_many([record])
    window = (DAY - timedelta(hours=1), DAY + timedelta(hours=1), 600)
    assert store.stats(*window).labelled == 0

    store.set_label(record.id, 8)

    stats = store.stats(*window)
    assert (stats.labelled, stats.correct, stats.confusion[8][3]) == (1, 0, 1)


def test_stats_of_an_empty_window_are_zero(store: Store) -> None:
    store.save_many([make_record(DAY)])

    stats = store.stats(DAY + timedelta(days=1), DAY + timedelta(days=2), bucket_seconds=86400)

    assert stats.predictions == 0
    assert stats.per_bucket == (0,)
    assert stats.digits == (0,) * 10
    assert (stats.labelled, stats.correct) == (0, 0)
    assert stats.latency_ms is None
    assert stats.model_versions == ()
