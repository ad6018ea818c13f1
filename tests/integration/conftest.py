"""Fixtures for the real local Cassandra node (``make cassandra-up``).

Tests that need the node fail, rather than skip, when it is not answering: a skipped
store test would let a broken Cassandra path pass unnoticed. ``make test`` starts it.
"""

from __future__ import annotations

import pytest

from tests.integration.cassandra_helpers import NODE_HOST, run_node_script


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
