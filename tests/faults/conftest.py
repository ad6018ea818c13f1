"""Fault scenarios against a real three-node Cassandra cluster on loopback addresses
(``make cassandra-up NODES=3``), with the gateway under real gunicorn and a steady load.

Each scenario records its figures; the run ends with them as one table (``make
test-faults`` prints it, and docs/reliability.md quotes it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import requests
from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from gateway.config import Config
from gateway.store.cassandra_store import build_cluster
from tests.support.cassandra import run_node_script
from tests.support.images import encode

NODES = 3
HOSTS = tuple(f"127.0.0.{10 + index}" for index in range(1, NODES + 1))
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


@pytest.fixture
def keyspace(cluster_hosts) -> Iterator[str]:
    name = f"faults_{uuid.uuid4().hex[:12]}"
    yield name
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


def gateway_env(model_dir, hosts: tuple[str, ...], keyspace: str) -> dict[str, str]:
    return {
        "MODEL_DIR": str(model_dir),
        "CASSANDRA_HOSTS": ",".join(hosts),
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_REPLICATION_FACTOR": str(NODES),
        "CASSANDRA_CONSISTENCY": "QUORUM",
    }


@dataclass
class Outcome:
    at: float
    status: int | str
    prediction_id: str | None = None
    retry_after: str | None = None


@dataclass
class SteadyLoad:
    """``clients`` threads uploading one digit each, back to back, until stopped."""

    url: str
    image: bytes
    clients: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteadyLoad:
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    response = http.post(
                        self.url + "/api/v1/predictions",
                        files={"file": ("d.png", self.image)},
                        timeout=60,
                    )
                    body = response.json()
                    outcome = Outcome(
                        time.monotonic(),
                        response.status_code,
                        body["predictions"][0]["id"] if response.status_code == 201 else None,
                        response.headers.get("Retry-After"),
                    )
                except requests.RequestException as error:
                    outcome = Outcome(time.monotonic(), f"{type(error).__name__}")
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != 201:
                    time.sleep(0.2)  # a client told to retry later does not hammer

    def acknowledged(self) -> list[str]:
        return [o.prediction_id for o in self.outcomes if o.status == 201 and o.prediction_id]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 201]


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
