"""The embedded store: one SQLite file, for running the gateway on one machine.

Durability: WAL journal with ``synchronous=FULL``, so a save returns only after its
transaction is on disk. Concurrency: each process opens its own connection lazily (a
connection must not cross a gunicorn fork) and its threads take turns on it under a
lock; separate worker processes share the file through SQLite's own locking, waiting
up to ``BUSY_TIMEOUT_MS`` for each other.

Rows are ordered by ``id_time``, the 100 ns timestamp inside the time-based id, with
the id bytes breaking ties, which is the order the history pages walk.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from gateway.errors import StoreUnavailable
from gateway.store.base import Page, PredictionRecord
from gateway.store.cursor import decode_cursor, encode_cursor
from gateway.store.ids import new_prediction_id
from gateway.store.schema import SQLITE_COLUMNS, SQLITE_SCHEMA
from gateway.store.stats import Stats, StatsBuilder
from gateway.store.validation import check_records

BUSY_TIMEOUT_MS = 5000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


# An upsert, like Cassandra's INSERT: saving a record again replaces it in both stores.
_INSERT = (
    f"INSERT OR REPLACE INTO predictions ({', '.join(SQLITE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(SQLITE_COLUMNS))})"
)
_SELECT = f"SELECT {', '.join(SQLITE_COLUMNS)} FROM predictions"
_SELECT_STATS = (
    "SELECT created_at_ms, digit, label, latency_ms, model_name, model_version "
    "FROM predictions WHERE id_time >= ? AND id_time < ?"
)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None

    def save_many(self, records: Sequence[PredictionRecord]) -> None:
        check_records(records)
        with self._transaction() as db:
            db.executemany(_INSERT, [_to_row(record) for record in records])

    def get(self, prediction_id: UUID) -> PredictionRecord | None:
        with self._transaction() as db:
            row = db.execute(f"{_SELECT} WHERE id = ?", (prediction_id.bytes,)).fetchone()
        return None if row is None else _from_row(row)

    def list(self, limit: int, cursor: str | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        # One row more than asked tells whether an older page exists.
        if cursor is None:
            query, params = f"{_SELECT} ORDER BY id_time DESC, id DESC LIMIT ?", (limit + 1,)
        else:
            last = decode_cursor(cursor)
            query = f"{_SELECT} WHERE (id_time, id) < (?, ?) ORDER BY id_time DESC, id DESC LIMIT ?"
            params = (last.time, last.bytes, limit + 1)
        with self._transaction() as db:
            rows = db.execute(query, params).fetchall()
        records = [_from_row(row) for row in rows[:limit]]
        has_older = len(rows) > limit
        return Page(records, encode_cursor(records[-1].id) if has_older else None)

    def set_label(self, prediction_id: UUID, label: int) -> PredictionRecord | None:
        with self._transaction() as db:
            db.execute(
                "UPDATE predictions SET label = ?, labelled_at_ms = ? WHERE id = ?",
                (label, _to_ms(datetime.now(UTC)), prediction_id.bytes),
            )
            row = db.execute(f"{_SELECT} WHERE id = ?", (prediction_id.bytes,)).fetchone()
        return None if row is None else _from_row(row)

    def labelled(self, page_size: int = 500) -> Iterator[PredictionRecord]:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        # Oldest first, a page per transaction: the lock is not held while the caller works.
        query = (
            f"{_SELECT} WHERE label IS NOT NULL AND (id_time, id) > (?, ?) "
            "ORDER BY id_time, id LIMIT ?"
        )
        after: tuple[int, bytes] = (-1, b"")
        while True:
            with self._transaction() as db:
                rows = db.execute(query, (*after, page_size)).fetchall()
            yield from (_from_row(row) for row in rows)
            if len(rows) < page_size:
                return
            after = (rows[-1][1], rows[-1][0])

    def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        builder = StatsBuilder(since, until, bucket_seconds)
        # The window through the time index: the id's time is the record's millisecond.
        bounds = (new_prediction_id(since).time, new_prediction_id(until).time)
        with self._transaction() as db:
            for created_at_ms, *rest in db.execute(_SELECT_STATS, bounds):
                builder.add(_from_ms(created_at_ms), *rest)
        return builder.build()

    def ping(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction on this process's connection: committed, or rolled back on error."""
        with self._lock:
            try:
                db = self._connect()
                with db:
                    yield db
            except sqlite3.OperationalError as error:
                # The SQL is fixed, so an operational error is the environment: the file
                # is locked for too long, the disk is full or unreadable.
                raise StoreUnavailable(f"SQLite store unavailable: {error}") from error

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(SQLITE_SCHEMA)
            self._connection, self._pid = connection, os.getpid()
        return self._connection


def _to_row(record: PredictionRecord) -> tuple[object, ...]:
    return (
        record.id.bytes,
        record.id.time,
        _to_ms(record.created_at),
        record.filename,
        record.digit,
        record.confidence,
        struct.pack(f"<{len(record.probabilities)}f", *record.probabilities),
        record.model_name,
        record.model_version,
        record.upload_sha256,
        record.input_image,
        record.latency_ms,
        record.label,
        None if record.labelled_at is None else _to_ms(record.labelled_at),
    )


def _from_row(row: tuple) -> PredictionRecord:
    (
        id_bytes,
        _id_time,
        created_at_ms,
        filename,
        digit,
        confidence,
        probabilities,
        model_name,
        model_version,
        upload_sha256,
        input_image,
        latency_ms,
        label,
        labelled_at_ms,
    ) = row
    return PredictionRecord(
        id=UUID(bytes=id_bytes),
        created_at=_from_ms(created_at_ms),
        filename=filename,
        digit=digit,
        confidence=confidence,
        probabilities=struct.unpack(f"<{len(probabilities) // 4}f", probabilities),
        model_name=model_name,
        model_version=model_version,
        upload_sha256=upload_sha256,
        input_image=input_image,
        latency_ms=latency_ms,
        label=label,
        labelled_at=None if labelled_at_ms is None else _from_ms(labelled_at_ms),
    )


def _to_ms(at: datetime) -> int:
    """Whole milliseconds since the Unix epoch: sub-millisecond digits are dropped."""
    return (at - _UNIX_EPOCH) // _MILLISECOND


def _from_ms(ms: int) -> datetime:
    return _UNIX_EPOCH + ms * _MILLISECOND
