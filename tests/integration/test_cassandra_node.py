"""The local node launcher: a real Cassandra 5.0 answers, and `up` is idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from cassandra.cluster import Cluster

from tests.support.cassandra import run_node_script

pytestmark = pytest.mark.cassandra

DAEMON = b"org.apache.cassandra.service.CassandraDaemon"


def cassandra_pids() -> set[int]:
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if DAEMON in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended while we looked
    return pids


def test_node_answers_cql_with_a_5_0_release(cassandra_node: str) -> None:
    cluster = Cluster([cassandra_node], connect_timeout=5)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
    finally:
        cluster.shutdown()
    assert row.release_version.startswith("5.0")


def test_second_up_keeps_the_one_running_node(cassandra_node: str) -> None:
    before = cassandra_pids()

    result = run_node_script("up")

    assert result.returncode == 0, result.stderr
    assert "already" in result.stdout
    assert cassandra_pids() == before
    assert len(before) == 1
