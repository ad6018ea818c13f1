"""``python -m gateway.store.schema``, the Helm schema Job's command, against the real node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Session

from tests.support.paths import REPO_ROOT


def run_schema_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # The Job's container sees only the CASSANDRA_* variables the chart sets.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.store.schema", *args],
        cwd=REPO_ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def keyspace(cassandra_admin: Session) -> Iterator[str]:
    name = f"test_schema_{uuid.uuid4().hex[:12]}"
    yield name
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.mark.cassandra
def test_creates_the_keyspace_and_tables_and_can_run_again(
    cassandra_node: str, keyspace: str, cassandra_admin: Session
) -> None:
    env = {"CASSANDRA_HOSTS": cassandra_node, "CASSANDRA_KEYSPACE": keyspace}

    first = run_schema_command("--wait", "30", **env)
    second = run_schema_command("--wait", "30", **env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"table {keyspace}.predictions" in first.stdout
    tables = cassandra_admin.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    assert {row.table_name for row in tables} == {"predictions", "prediction_days"}
    replication = cassandra_admin.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    assert replication.replication["replication_factor"] == "1"


def test_gives_up_with_status_1_when_cassandra_stays_unreachable() -> None:
    # Nothing listens on port 1 of the loopback: every connect is refused at once.
    started = time.monotonic()

    result = run_schema_command("--wait", "3", CASSANDRA_HOSTS="127.0.0.1", CASSANDRA_PORT="1")

    assert result.returncode == 1
    assert "retrying" in result.stderr
    assert "Cassandra unavailable" in result.stderr.splitlines()[-1]
    assert time.monotonic() - started < 30


def test_refuses_to_run_without_cassandra_hosts() -> None:
    result = run_schema_command("--wait", "1")

    assert result.returncode == 1
    assert "CASSANDRA_HOSTS" in result.stderr
