"""The Cassandra schema's one home: the gateway applies it at first connect and the Helm
schema Job applies it through ``python -m gateway.schema``. Every statement is
idempotent (``IF NOT EXISTS``).

The data model follows the three queries the gateway makes:

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

import re

from cassandra.cluster import Session

from gateway.config import Config, ConfigError

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
