"""Fixtures for the chart on a real Kubernetes API server (make cluster-up).

The cluster is scripts/cluster/cluster.py's: etcd, kube-apiserver, the
controller-manager and the scheduler are real; the nodes are kwok fakes, which
make pods Ready at once and complete Job and ``helm test`` pods without running
a container. Every check here reads API objects back with kubectl. A cluster
that does not answer fails the run, never skips it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import Cluster, connect


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return connect()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh `restricted` namespace per test, deleted (with its volumes) afterwards."""
    raw = request.node.name.lower()
    name = "t-" + "".join(ch if ch.isalnum() else "-" for ch in raw).strip("-")[:50].strip("-")
    cluster.delete_namespace(name)
    cluster.create_namespace(name)
    yield name
    cluster.delete_namespace(name)
