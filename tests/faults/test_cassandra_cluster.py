"""Node loss under load: with replication factor 3 at QUORUM, one node killed costs no
request and no row; two nodes down give only 503 with Retry-After and lose nothing
acknowledged; after all nodes restart every acknowledged prediction is there, once."""

from __future__ import annotations

import time
from collections import Counter

from tests.faults.conftest import (
    SteadyLoad,
    gateway_env,
    node,
    record,
    small_digit,
    stored_ids,
)
from tests.support.gunicorn import gunicorn
from tests.support.waiting import wait_until

LOAD_SECONDS = 8.0


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
    acknowledged = load.acknowledged()
    assert load.failed() == []
    stored = stored_ids(cluster_hosts, keyspace)
    assert sorted(stored) == sorted(acknowledged)
    record("kill -9 one node of three", load, **{"rows lost": 0, "duplicates": 0})


def test_two_nodes_down_is_503_with_retry_after_and_service_returns_with_one(
    cluster_hosts, keyspace, exported_model_dir, mnist_test_set
):
    env = gateway_env(exported_model_dir, cluster_hosts, keyspace)
    with gunicorn(env, workers=1, faults_expected=True) as (url, _):
        with SteadyLoad(url, small_digit(mnist_test_set)) as load:
            time.sleep(LOAD_SECONDS / 2)
            node("stop", 2)
            node("stop", 3)
            stopped_at = time.monotonic()
            time.sleep(LOAD_SECONDS)
            node("start", 3)
            restarted_at = time.monotonic()
            try:
                wait_until(
                    lambda: any(o.status == 201 and o.at > restarted_at for o in load.outcomes),
                    timeout=180,
                    interval=0.2,
                    what="an upload acknowledged after one node returned",
                )
            except TimeoutError:
                since = Counter(str(o.status) for o in load.outcomes if o.at > restarted_at)
                raise AssertionError(f"answers since the node returned: {dict(since)}") from None
            back_after = (
                min(o.at for o in load.outcomes if o.status == 201 and o.at > restarted_at)
                - restarted_at
            )
        node("start", 2)
    failed = load.failed()
    # Refusals are clear 503s the client may retry, and only while a quorum was missing.
    assert failed, "two of three nodes down must refuse writes at QUORUM"
    assert {o.status for o in failed} == {503}
    assert all(o.retry_after for o in failed)
    assert all(o.at > stopped_at - 1 for o in failed)
    assert sorted(stored_ids(cluster_hosts, keyspace)) == sorted(load.acknowledged())
    record(
        "two nodes of three stopped, then one back",
        load,
        **{"rows lost": 0, "503 while down": len(failed), "back after (s)": f"{back_after:.1f}"},
    )


def test_restarting_every_node_leaves_each_acknowledged_row_exactly_once(
    cluster_hosts, keyspace, exported_model_dir, mnist_test_set
):
    env = gateway_env(exported_model_dir, cluster_hosts, keyspace)
    with (
        gunicorn(env, workers=1, faults_expected=True) as (url, _),
        SteadyLoad(url, small_digit(mnist_test_set)) as load,
    ):
        time.sleep(LOAD_SECONDS)
    for index in (1, 2, 3):
        node("stop", index)
    for index in (1, 2, 3):
        node("start", index)
    stored = stored_ids(cluster_hosts, keyspace)
    counts = Counter(stored)
    duplicates = [prediction for prediction, count in counts.items() if count > 1]
    acknowledged = set(load.acknowledged())
    assert load.failed() == []
    assert duplicates == []
    assert set(stored) == acknowledged
    record(
        "every node restarted",
        load,
        **{"rows lost": len(acknowledged - set(stored)), "duplicates": len(duplicates)},
    )
