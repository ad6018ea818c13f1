"""The Cassandra store through a real outage: the node is stopped, then started again.

While it is down, calls fail fast with ``StoreUnavailable`` and nothing is acknowledged;
once it is back, the very same store objects work again without being rebuilt: one that
was connected before the outage, and one whose first connect fell in the outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from gateway.config import Config
from gateway.errors import StoreUnavailable
from gateway.store import make_store
from tests.support.cassandra import run_node_script
from tests.support.records import make_record
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

# Failing "fast" means well inside a client's patience, not after a long driver timeout.
FAIL_FAST_SECONDS = 3.0
RECOVERY_TIMEOUT_SECONDS = 60.0


def timed_failure(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    return time.monotonic() - started


def answers(call: Callable[[], object]) -> bool:
    """Whether ``call`` goes through now (False while the store is unavailable)."""
    try:
        call()
    except StoreUnavailable:
        return False
    return True


def test_store_refuses_writes_while_down_and_recovers_by_itself(
    cassandra_config: Config,
) -> None:
    store = make_store(cassandra_config)
    first_used_during_outage = make_store(cassandra_config)
    before = make_record(datetime.now(UTC), 0)
    store.save_many([before])
    during = make_record(datetime.now(UTC), 1)

    down = run_node_script("down")
    try:
        assert down.returncode == 0, down.stdout + down.stderr

        assert timed_failure(store.ping) < FAIL_FAST_SECONDS
        assert timed_failure(lambda: store.save_many([during])) < FAIL_FAST_SECONDS
        assert timed_failure(lambda: store.get(before.id)) < FAIL_FAST_SECONDS
        assert timed_failure(first_used_during_outage.ping) < FAIL_FAST_SECONDS
    finally:
        up = run_node_script("up")
    assert up.returncode == 0, up.stdout + up.stderr

    wait_until(
        lambda: answers(store.ping),
        timeout=RECOVERY_TIMEOUT_SECONDS,
        interval=0.5,
        what="the store to answer again",
    )
    after = make_record(datetime.now(UTC), 2)
    store.save_many([after])
    assert store.get(after.id) == after
    assert store.get(before.id) == before
    assert store.get(during.id) is None  # refused, so not stored either
    assert first_used_during_outage.get(after.id) == after
    store.close()
    first_used_during_outage.close()
