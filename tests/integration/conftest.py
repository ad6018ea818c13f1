"""Fixtures for the real local Cassandra node (``make cassandra-up``).

Tests that need the node fail, rather than skip, when it is not answering: a skipped
store test would let a broken Cassandra path pass unnoticed. ``make test`` starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Session

from gateway.config import Config
from gateway.store.cassandra_store import build_cluster
from gateway.store.schema import keyspace_name
from tests.support.cassandra import NODE_HOST, run_node_script


@pytest.fixture(scope="session")
def cassandra_node() -> str:
    """The host of the running local node; fails the test when nothing answers there."""
    status = run_node_script("status")
    if status.returncode != 0:
        pytest.fail(
            f"The local Cassandra node is not answering on {NODE_HOST}:9042 "
            f"({status.stdout.strip() or status.stderr.strip()}). Start it with "
            "`make cassandra-up` (`make test` does).",
            pytrace=False,
        )
    return NODE_HOST


@pytest.fixture(scope="session")
def cassandra_admin(cassandra_node: str) -> Iterator[Session]:
    """A session of its own on the local node, for tests to set up and inspect with.

    Its timeout is long: TRUNCATE and DROP KEYSPACE are slow on a busy machine.
    """
    config = Config(cassandra_hosts=(cassandra_node,), cassandra_request_timeout_seconds=120)
    cluster = build_cluster(config)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def cassandra_config(cassandra_node: str, cassandra_admin: Session) -> Iterator[Config]:
    """Config for a fresh keyspace on the local node, dropped when the session ends."""
    config = Config(
        cassandra_hosts=(cassandra_node,),
        cassandra_keyspace=f"test_{uuid.uuid4().hex[:16]}",
    )
    yield config
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace_name(config)}")
