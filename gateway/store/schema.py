"""The storage schema's one home: Cassandra's CQL and SQLite's DDL side by side.

Both stores hold the same record (``gateway.store.base.PredictionRecord``). The gateway
applies its store's schema at first connect; the Helm schema Job runs this module,
``python -m gateway.store.schema [--wait SECONDS]``, before the gateway rolls out. Every
statement is idempotent (``IF NOT EXISTS``). Exit status of the command: 0 applied,
1 failed.

The Cassandra data model follows the three queries the gateway makes:

* **History, newest first, a page at a time.** ``predictions`` is partitioned by day
  (the UTC date of the id's timestamp) and clustered by id descending, so a page is
  one sequential slice of one partition (``WHERE day = ? AND id < ? LIMIT ?``) and no
  partition grows without bound: a day holds about 1 KiB per prediction, which keeps
  it well under the ~100 MB guideline up to about 100,000 predictions a day. A day's
  writes all go to one replica set; past that scale, a shard number joins the
  partition key and a page merges the shards.
* **Walking back across days.** ``prediction_days`` lists the days that have
  predictions, newest first, in a single small partition (one row a day, 365 a year),
  so going from one day to the previous non-empty one is one indexed read however long
  the quiet spell in between, instead of probing every calendar day.
* **Lookup by id.** An id is a time-based UUID, so its day is part of it: a lookup
  reads ``WHERE day = day_of(id) AND id = ?``, one row of one partition. This makes
  a separate ``predictions_by_id`` table unnecessary: half the writes, no copy of the
  label to keep in sync on feedback, and all records of one request (ids within one
  millisecond) land in one partition, so their logged batch is applied atomically and
  in isolation by a single replica set, without the batch log and without the 50 KiB
  multi-partition batch limit.

``probabilities`` is a frozen list of float32 (one cell, written once; float32 is what
the model outputs). Times are ``timestamp`` (millisecond precision, UTC).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import TYPE_CHECKING

from gateway.config import Config, ConfigError
from gateway.errors import StoreUnavailable

if TYPE_CHECKING:
    from cassandra.cluster import Session

# Unquoted Cassandra identifiers: a letter, then letters, digits or underscores, 48 at most.
_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_DATACENTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Schema changes touch every node and are rare: give them longer than a request.
SCHEMA_CHANGE_TIMEOUT_SECONDS = 60.0

# prediction_days keeps every day in this one partition.
DAYS_PARTITION = 0

TABLES = {
    "predictions": """
        CREATE TABLE IF NOT EXISTS {keyspace}.predictions (
            day date,
            id timeuuid,
            created_at timestamp,
            filename text,
            digit int,
            confidence double,
            probabilities frozen<list<float>>,
            model_name text,
            model_version text,
            upload_sha256 text,
            input_image blob,
            latency_ms double,
            label int,
            labelled_at timestamp,
            PRIMARY KEY ((day), id)
        ) WITH CLUSTERING ORDER BY (id DESC)
    """,
    "prediction_days": """
        CREATE TABLE IF NOT EXISTS {keyspace}.prediction_days (
            days_partition int,
            day date,
            PRIMARY KEY ((days_partition), day)
        ) WITH CLUSTERING ORDER BY (day DESC)
    """,
}


# SQLite (the one-machine store): one table ordered by the id's time, newest first.
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id BLOB PRIMARY KEY,            -- the 16 UUID bytes
    id_time INTEGER NOT NULL,       -- the id's timestamp: the history order
    created_at_ms INTEGER NOT NULL, -- Unix epoch milliseconds, UTC
    filename TEXT,
    digit INTEGER NOT NULL,
    confidence REAL NOT NULL,
    probabilities BLOB NOT NULL,    -- little-endian float32s, as the model outputs them
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    upload_sha256 TEXT NOT NULL,
    input_image BLOB NOT NULL,
    latency_ms REAL NOT NULL,
    label INTEGER,
    labelled_at_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_newest_first ON predictions (id_time DESC, id DESC);
-- Retraining reads the labelled records only.
CREATE INDEX IF NOT EXISTS predictions_labelled ON predictions (id_time, id)
    WHERE label IS NOT NULL;
"""


# Column order of a predictions row, as each store's statements read and write it.
PREDICTION_COLUMNS = (
    "day",
    "id",
    "created_at",
    "filename",
    "digit",
    "confidence",
    "probabilities",
    "model_name",
    "model_version",
    "upload_sha256",
    "input_image",
    "latency_ms",
    "label",
    "labelled_at",
)
SQLITE_COLUMNS = (
    "id",
    "id_time",
    "created_at_ms",
    "filename",
    "digit",
    "confidence",
    "probabilities",
    "model_name",
    "model_version",
    "upload_sha256",
    "input_image",
    "latency_ms",
    "label",
    "labelled_at_ms",
)


def keyspace_name(config: Config) -> str:
    """The configured keyspace, checked to be a plain identifier (it is spliced into CQL)."""
    name = config.cassandra_keyspace
    if not _KEYSPACE.fullmatch(name):
        raise ConfigError(
            "CASSANDRA_KEYSPACE must be a letter followed by up to 47 letters, digits "
            f"or underscores, got {name!r}"
        )
    return name


def replication_cql(config: Config) -> str:
    """The keyspace's replication map as a CQL literal, from the configured strategy."""
    if config.cassandra_replication_strategy == "SimpleStrategy":
        return (
            "{'class': 'SimpleStrategy', "
            f"'replication_factor': {int(config.cassandra_replication_factor)}}}"
        )
    for datacenter, _factor in config.cassandra_replication_dcs:
        if not _DATACENTER.fullmatch(datacenter):
            raise ConfigError(
                f"invalid datacenter name in CASSANDRA_REPLICATION_DCS: {datacenter!r}"
            )
    factors = "".join(
        f", '{datacenter}': {int(factor)}"
        for datacenter, factor in config.cassandra_replication_dcs
    )
    return "{'class': 'NetworkTopologyStrategy'" + factors + "}"


def schema_statements(config: Config) -> dict[str, str]:
    """What each statement creates (e.g. ``table mnist.predictions``) -> its CQL."""
    keyspace = keyspace_name(config)
    statements = {
        f"keyspace {keyspace}": (
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication_cql(config)}"
        )
    }
    for table, cql in TABLES.items():
        statements[f"table {keyspace}.{table}"] = " ".join(cql.format(keyspace=keyspace).split())
    return statements


def apply_schema(session: Session, config: Config) -> list[str]:
    """Create the keyspace and tables unless they exist; returns what it made sure of.

    The driver waits for the nodes to agree on each change before the next one.
    """
    statements = schema_statements(config)
    for cql in statements.values():
        session.execute(cql, timeout=SCHEMA_CHANGE_TIMEOUT_SECONDS)
    return list(statements)


# The command: ``python -m gateway.store.schema``.

DEFAULT_WAIT_SECONDS = 300.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 15.0


def apply(config: Config) -> None:
    """Connect once and run every schema statement; ``StoreUnavailable`` if Cassandra is not up."""
    # The store imports this module for its statements; the command needs the store's cluster.
    from gateway.store.cassandra_store import build_cluster, unavailable_on_driver_errors

    with unavailable_on_driver_errors():
        cluster = build_cluster(config)  # resolves the host names
    try:
        with unavailable_on_driver_errors():
            created = apply_schema(cluster.connect(), config)
        for what in created:
            print(f"  {what}: exists", flush=True)
    finally:
        cluster.shutdown()


def apply_with_retries(config: Config, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            apply(config)
            return
        except StoreUnavailable as error:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            delay = min(delay, remaining)
            print(f"{error.message}; retrying in {delay:.0f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.store.schema",
        description="Apply the Cassandra schema (keyspace and tables) and exit.",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"keep retrying to connect this long (default {DEFAULT_WAIT_SECONDS:.0f})",
    )
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
        if not config.uses_cassandra:
            raise ConfigError("CASSANDRA_HOSTS is not set: there is no Cassandra to prepare")
        hosts = ", ".join(config.cassandra_hosts)
        print(
            f"Cassandra schema: keyspace {config.cassandra_keyspace} on {hosts} "
            f"(replication {replication_cql(config)})",
            flush=True,
        )
        apply_with_retries(config, args.wait)
    except (ConfigError, StoreUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Cassandra schema is in place", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
