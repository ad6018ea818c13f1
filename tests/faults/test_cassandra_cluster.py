"""Node loss under load: with replication factor 3 at QUORUM, one node killed costs no
request and no row; two nodes down give only 503 with Retry-After, lose nothing
acknowledged, and the service is back within seconds of one node's return; every node
restarted under load, the same, and each acknowledged prediction is there exactly once."""

from __future__ import annotations

import time
from collections import Counter

from gateway.store.cassandra_store import MAX_RECONNECT_DELAY_SECONDS
from tests.faults.conftest import (
    first_acknowledged_after,
    gateway_env,
    node,
    record,
    row_figures,
    small_digit,
    start_and_time_cql,
)
from tests.support.gunicorn import gunicorn
from tests.support.load import SteadyLoad
from tests.support.waiting import wait_until

LOAD_SECONDS = 8.0
# A node that comes back is announced to the driver by the nodes still up, and the
# driver also retries it at least every MAX_RECONNECT_DELAY_SECONDS; what remains is
# opening its connections and preparing the statements there.
RECOVERY_SECONDS = MAX_RECONNECT_DELAY_SECONDS + 5.0
# How long the clients may wait for any answer after a quorum returns before the
# scenario gives up (the worker's event loop once stalled for good there).
GIVE_UP_SECONDS = 180.0


def test_killing_one_node_under_load_fails_no_request_and_loses_no_row(
    cluster_hosts, keyspace, exported_model_dir, mnist_test_set
):
    env = gateway_env(exported_model_dir, cluster_hosts, keyspace)
    with gunicorn(env, workers=1, faults_expected=True) as (url, _):
        with SteadyLoad(url, small_digit(mnist_test_set)) as load:
            time.sleep(LOAD_SECONDS)
            node("stop", 3, "--kill")
            time.sleep(LOAD_SECONDS)
        node("start", 3)
    rows = row_figures(cluster_hosts, keyspace, load)
    assert load.failed() == []
    assert rows == {"rows lost": 0, "duplicates": 0, "stored, not acknowledged": 0}
    record("kill -9 one node of three", load, **rows)


def test_two_nodes_down_is_503_with_retry_after_and_service_returns_with_one(
    cluster_hosts, keyspace, exported_model_dir, mnist_test_set
):
    env = gateway_env(exported_model_dir, cluster_hosts, keyspace)
    with gunicorn(env, workers=1, faults_expected=True) as (url, _):
        with SteadyLoad(url, small_digit(mnist_test_set)) as load:
            time.sleep(LOAD_SECONDS / 2)
            node("stop", 2)
            # From the moment the second node begins to stop, a quorum may be missing.
            quorum_lost_from = time.monotonic()
            node("stop", 3)
            time.sleep(LOAD_SECONDS)
            quorum_back_at = start_and_time_cql(3)
            back_at = service_back(load, quorum_back_at)
            time.sleep(LOAD_SECONDS / 2)  # and it stays back
        node("start", 2)
    back_after = back_at - quorum_back_at
    assert_refused_only_while_quorum_missing(load, quorum_lost_from, back_at)
    assert back_after < RECOVERY_SECONDS, f"back {back_after:.1f} s after the node answered"
    rows = row_figures(cluster_hosts, keyspace, load)
    assert rows["rows lost"] == rows["duplicates"] == 0, rows
    record(
        "two nodes of three stopped, then one back",
        load,
        **rows,
        **{"503 while down": len(load.failed()), "back after (s)": f"{back_after:.1f}"},
    )


def test_restarting_every_node_under_load_leaves_each_acknowledged_row_exactly_once(
    cluster_hosts, keyspace, exported_model_dir, mnist_test_set
):
    """The whole cluster stopped and started again (SIGTERM, then start, node by node)
    while the same gateway process keeps serving: it loses every connection, its
    control connection included, and must find the nodes again by itself."""
    env = gateway_env(exported_model_dir, cluster_hosts, keyspace)
    with (
        gunicorn(env, workers=1, faults_expected=True) as (url, _),
        SteadyLoad(url, small_digit(mnist_test_set)) as load,
    ):
        time.sleep(LOAD_SECONDS)
        node("stop", 1)
        quorum_lost_from = time.monotonic()
        node("stop", 2)
        node("stop", 3)
        node("start", 1)
        quorum_back_at = start_and_time_cql(2)
        back_at = service_back(load, quorum_back_at)
        node("start", 3)
        time.sleep(LOAD_SECONDS / 2)
    back_after = back_at - quorum_back_at
    assert_refused_only_while_quorum_missing(load, quorum_lost_from, back_at)
    assert back_after < RECOVERY_SECONDS, f"back {back_after:.1f} s after a quorum answered"
    rows = row_figures(cluster_hosts, keyspace, load)
    assert rows["rows lost"] == rows["duplicates"] == 0, rows
    record(
        "every node restarted",
        load,
        **rows,
        **{"503 while down": len(load.failed()), "back after (s)": f"{back_after:.1f}"},
    )


def service_back(load: SteadyLoad, quorum_back_at: float) -> float:
    """When the first upload after ``quorum_back_at`` was acknowledged."""
    try:
        return wait_until(
            lambda: first_acknowledged_after(load, quorum_back_at),
            timeout=GIVE_UP_SECONDS,
            interval=0.2,
            what="an upload acknowledged after a quorum returned",
        )
    except TimeoutError:
        since = Counter(str(o.status) for o in load.outcomes if o.at > quorum_back_at)
        raise AssertionError(f"answers since a quorum returned: {dict(since)}") from None


def assert_refused_only_while_quorum_missing(
    load: SteadyLoad, quorum_lost_from: float, back_at: float
) -> None:
    """Refusals are clear 503s the client may retry, and only while a quorum was missing:
    none answered before a quorum could be lost, none of a request sent once uploads
    were acknowledged again."""
    failed = load.failed()
    assert failed, "without a quorum, writes at QUORUM must be refused"
    assert {o.status for o in failed} == {503}, Counter(str(o.status) for o in failed)
    assert all(o.retry_after for o in failed)
    assert all(o.at > quorum_lost_from for o in failed)
    assert all(o.sent is not None and o.sent < back_at for o in failed)
