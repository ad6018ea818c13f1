"""The Cassandra store: the cluster deployment's durable home for every prediction.

The data model and why it looks the way it does: ``gateway.store.schema``.

Connecting is lazy and per process: the first call after a gunicorn fork builds the
cluster, applies the schema and prepares the statements; a connect that fails is
retried by the next call instead of being remembered. Once connected, the driver
reconnects to nodes that come back by itself (every few seconds at most), so the same
store object recovers from an outage. Every driver error that means "Cassandra cannot
answer now" becomes ``StoreUnavailable`` (HTTP 503).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from cassandra import (
    ConsistencyLevel,
    OperationTimedOut,
    ProtocolVersion,
    RequestExecutionException,
    UnresolvableContactPoints,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.connection import ConnectionException
from cassandra.policies import (
    ConstantSpeculativeExecutionPolicy,
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from gateway.config import Config
from gateway.errors import StoreUnavailable
from gateway.store.base import Page, PredictionRecord
from gateway.store.cursor import decode_cursor, encode_cursor
from gateway.store.ids import id_day, truncate_to_millisecond
from gateway.store.schema import (
    DAYS_PARTITION,
    PREDICTION_COLUMNS,
    apply_schema,
    keyspace_name,
)
from gateway.store.stats import Stats, StatsBuilder
from gateway.store.validation import check_records

# Reconnect to a node that went down after 0.5 s, 1 s, 2 s ... but never wait longer
# than this: the store should be back within seconds of Cassandra.
MAX_RECONNECT_DELAY_SECONDS = 5.0
# Native protocol v5: Cassandra 4.0 and newer. Fixing it skips the driver's
# try-and-downgrade handshake (and its warnings) on every connect.
PROTOCOL_VERSION = ProtocolVersion.V5
# Days are read a few at a time while walking back through quiet periods.
DAYS_FETCH_SIZE = 8
# A node killed mid-request leaves the requests it coordinates (and the logged batches
# whose batchlog it was to hold, until gossip marks it down) unanswered until the request
# timeout: one upload in a `kill -9` fault run waited the full 5 s and got a 503. Every
# statement is idempotent, so the driver sends a request that has had no answer for this
# long to the next node too, and the first answer wins.
SPECULATIVE_RETRY_AFTER_SECONDS = 1.0
SPECULATIVE_EXTRA_ATTEMPTS = 1


# Rows come from the driver's named-tuple factory, one type per query.
Row = Any

# Errors that mean "not now" rather than "never": no node reachable, a timeout, too
# few replicas, an overloaded or bootstrapping coordinator, a dropped connection, or
# host names that do not resolve yet (a Kubernetes service before its first pod).
_UNAVAILABLE = (
    NoHostAvailable,
    OperationTimedOut,
    RequestExecutionException,
    ConnectionException,
    UnresolvableContactPoints,
)


def build_cluster(config: Config) -> Cluster:
    """A driver ``Cluster`` for the configured hosts; nothing connects until ``connect()``.

    Raises ``UnresolvableContactPoints`` when none of the host names resolves.
    """
    # Without a local DC, the DC of the contact points is taken as local.
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=config.cassandra_local_dc)
        ),
        consistency_level=ConsistencyLevel.name_to_value[config.cassandra_consistency],
        request_timeout=config.cassandra_request_timeout_seconds,
        speculative_execution_policy=ConstantSpeculativeExecutionPolicy(
            SPECULATIVE_RETRY_AFTER_SECONDS, SPECULATIVE_EXTRA_ATTEMPTS
        ),
    )
    auth = (
        PlainTextAuthProvider(config.cassandra_username, config.cassandra_password or "")
        if config.cassandra_username
        else None
    )
    return Cluster(
        contact_points=list(config.cassandra_hosts),
        port=config.cassandra_port,
        protocol_version=PROTOCOL_VERSION,
        auth_provider=auth,
        connect_timeout=config.cassandra_connect_timeout_seconds,
        control_connection_timeout=config.cassandra_connect_timeout_seconds,
        reconnection_policy=ExponentialReconnectionPolicy(0.5, MAX_RECONNECT_DELAY_SECONDS),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        # The driver leaves Nagle's algorithm on. A write of four or more records is sent
        # in more than one segment, and the last one then waits for the server's delayed
        # ACK: measured here, 47 ms per write instead of 5 ms.
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


@contextmanager
def unavailable_on_driver_errors() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"Cassandra unavailable: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    if isinstance(error, NoHostAvailable):
        # Its message is generic; the per-host reasons are what an operator needs.
        reasons = "; ".join(f"{host}: {reason}" for host, reason in error.errors.items())
        return f"no host available ({reasons or 'no hosts tried'})"
    if isinstance(error, UnresolvableContactPoints):
        return "none of the configured host names resolves to an address"
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class _Statements:
    insert_prediction: PreparedStatement
    insert_day: PreparedStatement
    select_one: PreparedStatement
    select_day: PreparedStatement
    select_day_older_than: PreparedStatement
    select_days: PreparedStatement
    select_days_before: PreparedStatement
    update_label: PreparedStatement
    select_day_labelled: PreparedStatement
    select_days_between: PreparedStatement
    select_stats: PreparedStatement
    ping: PreparedStatement

    @classmethod
    def prepare(cls, session: Session, keyspace: str) -> _Statements:
        predictions = f"{keyspace}.predictions"
        days = f"{keyspace}.prediction_days"
        select = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM {predictions} WHERE day = ?"
        markers = ", ".join("?" * len(PREDICTION_COLUMNS))
        statements = cls(
            insert_prediction=session.prepare(
                f"INSERT INTO {predictions} ({', '.join(PREDICTION_COLUMNS)}) VALUES ({markers})"
            ),
            insert_day=session.prepare(f"INSERT INTO {days} (days_partition, day) VALUES (?, ?)"),
            select_one=session.prepare(f"{select} AND id = ?"),
            select_day=session.prepare(f"{select} LIMIT ?"),
            select_day_older_than=session.prepare(f"{select} AND id < ? LIMIT ?"),
            select_days=session.prepare(f"SELECT day FROM {days} WHERE days_partition = ?"),
            select_days_before=session.prepare(
                f"SELECT day FROM {days} WHERE days_partition = ? AND day < ?"
            ),
            update_label=session.prepare(
                f"UPDATE {predictions} SET label = ?, labelled_at = ? WHERE day = ? AND id = ?"
            ),
            # Filtering within one partition: the node reads the day, sends the labelled rows.
            select_day_labelled=session.prepare(f"{select} AND label >= 0 ALLOW FILTERING"),
            select_days_between=session.prepare(
                f"SELECT day FROM {days} WHERE days_partition = ? AND day >= ? AND day <= ?"
            ),
            # One day's slice of a stats window, by the clustering column (the id's time).
            select_stats=session.prepare(
                "SELECT created_at, digit, label, latency_ms, model_name, model_version "
                f"FROM {predictions} WHERE day = ? AND id >= minTimeuuid(?) AND id < minTimeuuid(?)"
            ),
            ping=session.prepare("SELECT release_version FROM system.local"),
        )
        statements.select_days.fetch_size = DAYS_FETCH_SIZE
        statements.select_days_before.fetch_size = DAYS_FETCH_SIZE
        # Every statement has the same effect when sent twice (reads, and upserts of
        # fixed ids and labels), so the driver may resend one to another node when the
        # node it was sent to dies with it in flight.
        for statement in vars(statements).values():
            statement.is_idempotent = True
        return statements


@dataclass
class _Connection:
    cluster: Cluster
    session: Session
    statements: _Statements
    pid: int
    # Days this process already listed in prediction_days: listing is needed once a day.
    listed_days: set[date]

    def list_days(self, days: set[date]) -> None:
        # Unlocked on purpose: two threads listing the same day write the same row twice.
        for day in sorted(days - self.listed_days):
            self.session.execute(self.statements.insert_day, (DAYS_PARTITION, day))
            self.listed_days.add(day)


class CassandraStore:
    def __init__(self, config: Config, *, create_schema: bool = True) -> None:
        """``create_schema=False`` for readers whose role may only read (retraining): the
        keyspace and tables must exist, and creating them would need more than SELECT."""
        self._config = config
        self._create_schema = create_schema
        self._keyspace = keyspace_name(config)  # a bad name fails at start-up, not per call
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def save_many(self, records: Sequence[PredictionRecord]) -> None:
        check_records(records)
        if not records:
            return
        connection = self._connect()
        # Idempotent like its statements: the records' ids are fixed before the write.
        batch = BatchStatement(batch_type=BatchType.LOGGED)
        batch.is_idempotent = True
        for record in records:
            batch.add(connection.statements.insert_prediction, _to_row(record))
        with unavailable_on_driver_errors():
            # Days first: a listed day without records costs the history one empty read,
            # a record on an unlisted day would never be shown.
            connection.list_days({id_day(record.id) for record in records})
            connection.session.execute(batch)

    def get(self, prediction_id: UUID) -> PredictionRecord | None:
        if prediction_id.version != 1:
            return None  # every stored id is time-based
        connection = self._connect()
        with unavailable_on_driver_errors():
            row = connection.session.execute(
                connection.statements.select_one, (id_day(prediction_id), prediction_id)
            ).one()
        return None if row is None else _from_row(row)

    def list(self, limit: int, cursor: str | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        older_than = None if cursor is None else decode_cursor(cursor)
        connection = self._connect()
        # One row more than asked tells whether an older page exists.
        wanted = limit + 1
        rows: list[Row] = []
        with unavailable_on_driver_errors():
            for query, values in _day_slices_newest_first(connection, older_than):
                rows.extend(connection.session.execute(query, (*values, wanted - len(rows))))
                if len(rows) >= wanted:
                    break
        records = [_from_row(row) for row in rows[:limit]]
        has_older = len(rows) > limit
        return Page(records, encode_cursor(records[-1].id) if has_older else None)

    def set_label(self, prediction_id: UUID, label: int) -> PredictionRecord | None:
        record = self.get(prediction_id)
        if record is None:
            return None  # an UPDATE would silently create a row: check first
        labelled_at = truncate_to_millisecond(datetime.now(UTC))
        connection = self._connect()
        with unavailable_on_driver_errors():
            connection.session.execute(
                connection.statements.update_label,
                (label, labelled_at, id_day(prediction_id), prediction_id),
            )
        return replace(record, label=label, labelled_at=labelled_at)

    def labelled(self, page_size: int = 500) -> Iterator[PredictionRecord]:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        connection = self._connect()
        session, statements = connection.session, connection.statements
        # Day by day, newest first; the driver fetches each day's rows a page at a time.
        with unavailable_on_driver_errors():
            for day_row in session.execute(statements.select_days, (DAYS_PARTITION,)):
                query = statements.select_day_labelled.bind((day_row.day.date(),))
                query.fetch_size = page_size
                for row in session.execute(query):
                    yield _from_row(row)

    def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        builder = StatsBuilder(since, until, bucket_seconds)
        connection = self._connect()
        session, statements = connection.session, connection.statements
        first_day, last_day = since.astimezone(UTC).date(), until.astimezone(UTC).date()
        with unavailable_on_driver_errors():
            days = session.execute(
                statements.select_days_between, (DAYS_PARTITION, first_day, last_day)
            )
            for day_row in list(days):
                rows = session.execute(statements.select_stats, (day_row.day.date(), since, until))
                for row in rows:
                    builder.add(
                        _utc(row.created_at),
                        row.digit,
                        row.label,
                        row.latency_ms,
                        row.model_name,
                        row.model_version,
                    )
        return builder.build()

    def ping(self) -> None:
        connection = self._connect()
        with unavailable_on_driver_errors():
            connection.session.execute(connection.statements.ping).one()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection.pid == os.getpid():
                self._connection.cluster.shutdown()
            self._connection = None

    # --- internals ----------------------------------------------------------------

    def _connect(self) -> _Connection:
        """This process's connection, made on first use (never across a fork)."""
        with self._lock:
            if self._connection is None or self._connection.pid != os.getpid():
                # A connection inherited through fork has no I/O threads: drop, not shut down.
                self._connection = self._open()
            return self._connection

    def _open(self) -> _Connection:
        with unavailable_on_driver_errors():
            cluster = build_cluster(self._config)  # resolves the host names
        try:
            with unavailable_on_driver_errors():
                session = cluster.connect()
                if self._create_schema:
                    apply_schema(session, self._config)
                statements = _Statements.prepare(session, self._keyspace)
        except BaseException:
            cluster.shutdown()
            raise
        return _Connection(cluster, session, statements, os.getpid(), listed_days=set())


def _day_slices_newest_first(
    connection: _Connection, older_than: UUID | None
) -> Iterator[tuple[PreparedStatement, tuple[object, ...]]]:
    """The queries (without their LIMIT value) that read history from the cursor back.

    The cursor's own day first (its rows older than the cursor), then each older day
    that has predictions, whole. Days are fetched lazily, a few at a time.
    """
    session, statements = connection.session, connection.statements
    if older_than is None:
        days = session.execute(statements.select_days, (DAYS_PARTITION,))
    else:
        cursor_day = id_day(older_than)
        yield statements.select_day_older_than, (cursor_day, older_than)
        days = session.execute(statements.select_days_before, (DAYS_PARTITION, cursor_day))
    for day_row in days:
        yield statements.select_day, (day_row.day.date(),)


def _to_row(record: PredictionRecord) -> tuple[object, ...]:
    """The insert's values; absent ones are left unset, since binding null would write a
    tombstone per empty column (a new record has no label yet) for every read to skip."""
    values = (
        id_day(record.id),
        record.id,
        truncate_to_millisecond(record.created_at),
        record.filename,
        record.digit,
        record.confidence,
        list(record.probabilities),
        record.model_name,
        record.model_version,
        record.upload_sha256,
        record.input_image,
        record.latency_ms,
        record.label,
        record.labelled_at,
    )
    return tuple(UNSET_VALUE if value is None else value for value in values)


def _from_row(row: Row) -> PredictionRecord:
    return PredictionRecord(
        id=row.id,
        created_at=_utc(row.created_at),
        filename=row.filename,
        digit=row.digit,
        confidence=row.confidence,
        probabilities=tuple(row.probabilities),
        model_name=row.model_name,
        model_version=row.model_version,
        upload_sha256=row.upload_sha256,
        input_image=row.input_image,
        latency_ms=row.latency_ms,
        label=row.label,
        labelled_at=None if row.labelled_at is None else _utc(row.labelled_at),
    )


def _utc(naive: datetime) -> datetime:
    """The driver returns timestamps as naive datetimes in UTC."""
    return naive.replace(tzinfo=UTC)
