"""The gateway over real HTTP with the real Cassandra node: storage and an outage.

No prediction is acknowledged unless Cassandra has it: while the node is down the
gateway answers 503 with Retry-After (and stores nothing), stays alive, says so in
/readyz, and recovers by itself when the node is back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from cassandra.cluster import Session

from gateway.config import Config
from gateway.store import cassandra_store
from gateway.store.cassandra_store import build_cluster
from gateway.web.app import create_app
from tests.support.cassandra import run_node_script
from tests.support.http import serve
from tests.support.images import encode
from tests.support.waiting import wait_until

API = "/api/v1/predictions"


@contextmanager
def fresh_session(node: str) -> Iterator[Session]:
    """A session of its own: a long-lived one may still be reconnecting after an outage."""
    cluster = build_cluster(Config(cassandra_hosts=(node,), cassandra_request_timeout_seconds=60))
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def keyspace(cassandra_node):
    name = f"test_gateway_{uuid.uuid4().hex[:12]}"
    yield name
    with fresh_session(cassandra_node) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture(scope="module")
def gateway(exported_model_dir, cassandra_node, keyspace):
    config = Config(
        model_dir=exported_model_dir,
        cassandra_hosts=(cassandra_node,),
        cassandra_keyspace=keyspace,
        cassandra_consistency="LOCAL_QUORUM",
        cassandra_request_timeout_seconds=2.0,
        cassandra_connect_timeout_seconds=2.0,
    )
    with serve(create_app(config)) as url:
        yield url


def rows_in(node: str, keyspace: str) -> int:
    with fresh_session(node) as session:
        return session.execute(f"SELECT count(*) FROM {keyspace}.predictions").one()[0]


def post_digit(url: str, image, name: str = "digit.png") -> requests.Response:
    return requests.post(url + API, files={"file": (name, encode(image))}, timeout=30)


def test_predictions_are_stored_in_cassandra(gateway, mnist_test_set, cassandra_node, keyspace):
    images, _ = mnist_test_set
    files = [("file", (f"d{i}.png", encode(images[i]))) for i in range(3)]
    created = requests.post(gateway + API, files=files, timeout=30)
    assert created.status_code == 201, created.text
    ids = [p["id"] for p in created.json()["predictions"]]

    for prediction in created.json()["predictions"]:
        fetched = requests.get(f"{gateway}{API}/{prediction['id']}", timeout=10).json()
        assert fetched == prediction
    history = requests.get(gateway + API, params={"limit": 3}, timeout=10).json()
    assert [p["id"] for p in history["predictions"]] == list(reversed(ids))

    labelled = requests.post(f"{gateway}{API}/{ids[0]}/feedback", json={"label": 3}, timeout=10)
    assert labelled.json()["label"] == 3
    assert rows_in(cassandra_node, keyspace) == 3


def feedback_of(stats: dict, version: str) -> tuple[int, int]:
    """(labelled, correct) of ``version``'s predictions in a stats answer; none if absent."""
    found = [m for m in stats["model_versions"] if m["model_version"] == version]
    return (found[0]["labelled"], found[0]["correct"]) if found else (0, 0)


def test_stats_and_inputs_come_from_cassandra(gateway, mnist_test_set):
    images, _ = mnist_test_set
    before = requests.get(gateway + "/api/v1/stats", params={"days": 1}, timeout=30).json()
    created = post_digit(gateway, images[5]).json()["predictions"][0]
    wrong = (created["digit"] + 1) % 10
    requests.post(f"{gateway}{API}/{created['id']}/feedback", json={"label": wrong}, timeout=10)

    stats = requests.get(gateway + "/api/v1/stats", params={"days": 1}, timeout=30).json()

    assert stats["predictions"] == before["predictions"] + 1 == sum(stats["per_bucket"])
    assert stats["digits"][created["digit"]] == before["digits"][created["digit"]] + 1
    assert stats["confusion"][wrong][created["digit"]] == (
        before["confusion"][wrong][created["digit"]] + 1
    )
    # The prediction keeps the version that made it; its wrong answer counts against that one.
    version = created["model_version"]
    labelled, correct = feedback_of(before, version)
    assert feedback_of(stats, version) == (labelled + 1, correct)
    (after,) = [m for m in stats["model_versions"] if m["model_version"] == version]
    assert after["accuracy"] == correct / (labelled + 1)
    image = requests.get(f"{gateway}{API}/{created['id']}/input.png", timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


@pytest.mark.slow
def test_cassandra_outage_is_503_then_recovers(gateway, mnist_test_set, cassandra_node, keyspace):
    images, _ = mnist_test_set
    assert post_digit(gateway, images[10]).status_code == 201
    before = rows_in(cassandra_node, keyspace)

    down = run_node_script("down")
    try:
        assert down.returncode == 0, down.stdout + down.stderr
        refused = post_digit(gateway, images[11])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert int(refused.headers["Retry-After"]) > 0

        assert requests.get(gateway + "/healthz", timeout=10).status_code == 200
        ready = requests.get(gateway + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["store"]["ready"] is False
        assert ready.json()["model"]["ready"] is True
    finally:
        up = run_node_script("up")
    assert up.returncode == 0, up.stdout + up.stderr

    def stored() -> requests.Response | None:
        response = post_digit(gateway, images[12])
        return response if response.status_code == 201 else None

    wait_until(stored, timeout=90, interval=2, what="an upload to be stored again")
    assert requests.get(gateway + "/readyz", timeout=10).status_code == 200
    # The refused upload left nothing behind; the accepted one is there.
    assert rows_in(cassandra_node, keyspace) == before + 1


def test_closing_the_services_shuts_down_every_cassandra_cluster_they_built(
    exported_model_dir, mnist_test_set, cassandra_node, keyspace, monkeypatch
):
    # A spy on the store's cluster factory: it records what it builds, and builds it.
    built = []

    def recording_build_cluster(config):
        built.append(build_cluster(config))
        return built[-1]

    monkeypatch.setattr(cassandra_store, "build_cluster", recording_build_cluster)
    config = Config(
        model_dir=exported_model_dir,
        cassandra_hosts=(cassandra_node,),
        cassandra_keyspace=keyspace,
    )
    app = create_app(config)
    images, _ = mnist_test_set
    with serve(app) as url:
        assert post_digit(url, images[20]).status_code == 201
        assert built and not any(cluster.is_shutdown for cluster in built)
    # serve() closed the app's services, as a gunicorn worker does when it exits.
    assert all(cluster.is_shutdown for cluster in built)
