"""Fault scenarios against a real three-node Cassandra cluster on loopback addresses
(``make cassandra-up NODES=3``), with the gateway under real gunicorn and a steady load.

Each scenario records its figures; the run ends with them as one table (``make
test-faults`` prints it, and docs/reliability.md quotes it).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from gateway.config import Config
from gateway.store.cassandra_store import build_cluster
from tests.support.cassandra import run_node_script
from tests.support.images import encode
from tests.support.load import SteadyLoad
from tests.support.waiting import wait_until

NODES = 3
HOSTS = tuple(f"127.0.0.{10 + index}" for index in range(1, NODES + 1))
CQL_PORT = 9042
# The launcher's own limit for one command (tests.support.cassandra).
NODE_COMMAND_SECONDS = 300
RESULTS: list[dict[str, object]] = []


@pytest.fixture(scope="session")
def cluster_hosts() -> Iterator[tuple[str, ...]]:
    """The three nodes: started here unless they all answer already, and then stopped
    again at the end (``make cassandra-up NODES=3`` keeps them up across runs)."""
    started_here = run_node_script("status", "--nodes", str(NODES)).returncode != 0
    if started_here:
        started = run_node_script("up", "--nodes", str(NODES))
        assert started.returncode == 0, started.stdout + started.stderr
    yield HOSTS
    if started_here:
        stopped = run_node_script("down", "--nodes", str(NODES))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def node(command: str, index: int, *flags: str) -> None:
    result = run_node_script(command, "--nodes", str(NODES), "--node", str(index), *flags)
    assert result.returncode == 0, result.stdout + result.stderr


def start_and_time_cql(index: int) -> float:
    """Start node ``index`` and return when its CQL port opened (Cassandra opens it
    once the node can serve), which the launcher's own probe only sees a while later."""
    host = HOSTS[index - 1]
    with ThreadPoolExecutor(1) as launcher:
        started = launcher.submit(node, "start", index)
        opened_at = wait_until(
            lambda: (started.done() or _accepts(host, CQL_PORT)) and time.monotonic(),
            timeout=NODE_COMMAND_SECONDS,
            interval=0.1,
            what=f"the CQL port of {host}",
        )
        started.result()
    return opened_at


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def first_acknowledged_after(load: SteadyLoad, moment: float) -> float | None:
    """When the first 201 answered after ``moment`` came back; None while there is none."""
    return min((o.at for o in load.outcomes if o.status == 201 and o.at > moment), default=None)


@pytest.fixture
def keyspace(cluster_hosts) -> Iterator[str]:
    name = f"faults_{uuid.uuid4().hex[:12]}"
    yield name
    # A scenario that failed half-way may have left nodes stopped: start them again, so
    # that the next scenario starts from three nodes and the keyspace can be dropped.
    started = run_node_script("up", "--nodes", str(NODES))
    assert started.returncode == 0, started.stdout + started.stderr
    with quorum_session(cluster_hosts) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)


@contextmanager
def quorum_session(hosts: tuple[str, ...]) -> Iterator[Session]:
    """A driver session of the test's own, reading at QUORUM."""
    cluster = build_cluster(
        Config(
            cassandra_hosts=hosts,
            cassandra_consistency="QUORUM",
            cassandra_request_timeout_seconds=60,
        )
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def stored_ids(hosts: tuple[str, ...], keyspace: str) -> list[str]:
    """Every prediction id in the keyspace, read at QUORUM (duplicates kept, if any)."""
    with quorum_session(hosts) as session:
        statement = session.prepare(f"SELECT id FROM {keyspace}.predictions")
        statement.consistency_level = ConsistencyLevel.QUORUM
        statement.fetch_size = 1000
        return [str(row.id) for row in session.execute(statement, timeout=60)]


def row_figures(hosts: tuple[str, ...], keyspace: str, load: SteadyLoad) -> dict[str, int]:
    """What the keyspace holds against what the clients were told, counted by id.

    A 201 promises a durable row ("rows lost" must be 0), and an id is stored once. A 503
    promises nothing either way: a write that reached one replica before its node went
    away is answered 503 (the quorum did not confirm it) and may still be there.
    """
    stored = stored_ids(hosts, keyspace)
    acknowledged = set(load.acknowledged())
    return {
        "rows lost": len(acknowledged - set(stored)),
        "duplicates": sum(1 for count in Counter(stored).values() if count > 1),
        "stored, not acknowledged": len(set(stored) - acknowledged),
    }


def gateway_env(model_dir, hosts: tuple[str, ...], keyspace: str) -> dict[str, str]:
    return {
        "MODEL_DIR": str(model_dir),
        "CASSANDRA_HOSTS": ",".join(hosts),
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_REPLICATION_FACTOR": str(NODES),
        "CASSANDRA_CONSISTENCY": "QUORUM",
    }


def small_digit(mnist_test_set) -> bytes:
    return encode(mnist_test_set[0][0])


def record(scenario: str, load: SteadyLoad, **figures: object) -> None:
    seconds = max(o.at for o in load.outcomes) - load.started if load.outcomes else 0.0
    RESULTS.append(
        {
            "scenario": scenario,
            "requests": len(load.outcomes),
            "load (req/s)": f"{len(load.outcomes) / seconds:.0f}" if seconds else "0",
            "acknowledged": len(load.acknowledged()),
            "failed": len(load.failed()),
            **figures,
        }
    )


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    columns = list(dict.fromkeys(key for row in RESULTS for key in row))
    terminalreporter.write_sep("=", "fault scenarios (three-node Cassandra, QUORUM)")
    terminalreporter.write_line("| " + " | ".join(columns) + " |")
    terminalreporter.write_line("|" + "---|" * len(columns))
    for row in RESULTS:
        terminalreporter.write_line(
            "| " + " | ".join(str(row.get(column, "")) for column in columns) + " |"
        )
