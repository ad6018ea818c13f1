"""What the Cassandra store asks of the driver and the cluster, checked without a node."""

from __future__ import annotations

import socket

import pytest
from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from gateway.config import Config, ConfigError
from gateway.errors import StoreUnavailable
from gateway.store.cassandra_store import CassandraStore, build_cluster
from gateway.store.schema import keyspace_name, replication_cql, schema_statements

# Host names must resolve for the driver to build a Cluster; nothing connects here.
CLUSTERED = Config(cassandra_hosts=("127.0.0.1", "localhost"))


def test_simple_strategy_replicates_by_the_configured_factor() -> None:
    config = CLUSTERED.with_overrides(cassandra_replication_factor=3)

    assert replication_cql(config) == "{'class': 'SimpleStrategy', 'replication_factor': 3}"


def test_network_topology_strategy_lists_each_datacenter() -> None:
    config = CLUSTERED.with_overrides(
        cassandra_replication_strategy="NetworkTopologyStrategy",
        cassandra_replication_dcs=(("dc1", 3), ("eu-west.2", 2)),
    )

    assert replication_cql(config) == (
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west.2': 2}"
    )


def test_a_datacenter_name_that_could_break_out_of_the_literal_is_refused() -> None:
    config = CLUSTERED.with_overrides(
        cassandra_replication_strategy="NetworkTopologyStrategy",
        cassandra_replication_dcs=(("dc1': 1, 'x", 3),),
    )

    with pytest.raises(ConfigError, match="datacenter"):
        replication_cql(config)


@pytest.mark.parametrize("name", ["mnist", "test_0123abcd", "M" * 48])
def test_plain_identifiers_are_accepted_as_keyspace_names(name: str) -> None:
    assert keyspace_name(CLUSTERED.with_overrides(cassandra_keyspace=name)) == name


@pytest.mark.parametrize("name", ["1mnist", "mnist; DROP KEYSPACE x", "mn-ist", "M" * 49, ""])
def test_anything_else_as_a_keyspace_name_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="CASSANDRA_KEYSPACE"):
        keyspace_name(CLUSTERED.with_overrides(cassandra_keyspace=name))


def test_every_statement_is_idempotent_and_names_the_keyspace() -> None:
    statements = schema_statements(CLUSTERED.with_overrides(cassandra_keyspace="digits"))

    assert list(statements) == [
        "keyspace digits",
        "table digits.predictions",
        "table digits.prediction_days",
    ]
    for cql in statements.values():
        assert " IF NOT EXISTS digits" in cql


def test_the_driver_gets_timeouts_consistency_and_port_from_config() -> None:
    config = CLUSTERED.with_overrides(
        cassandra_port=19042,
        cassandra_consistency="QUORUM",
        cassandra_connect_timeout_seconds=1.5,
        cassandra_request_timeout_seconds=2.5,
    )

    cluster = build_cluster(config)

    profile = cluster.profile_manager.profiles[EXEC_PROFILE_DEFAULT]
    assert cluster.contact_points == ["127.0.0.1", "localhost"]
    assert cluster.port == 19042
    assert cluster.protocol_version == ProtocolVersion.V5
    assert cluster.connect_timeout == 1.5
    assert profile.request_timeout == 2.5
    assert profile.consistency_level == ConsistencyLevel.QUORUM
    assert cluster.auth_provider is None


def test_credentials_are_sent_when_a_username_is_set() -> None:
    config = CLUSTERED.with_overrides(cassandra_username="gateway", cassandra_password="s3cret")

    provider = build_cluster(config).auth_provider

    assert isinstance(provider, PlainTextAuthProvider)
    assert (provider.username, provider.password) == ("gateway", "s3cret")


def test_queries_go_token_aware_to_the_local_datacenter() -> None:
    config = CLUSTERED.with_overrides(cassandra_local_dc="dc2")

    policy = build_cluster(config).profile_manager.profiles[EXEC_PROFILE_DEFAULT]
    balancing = policy.load_balancing_policy

    assert isinstance(balancing, TokenAwarePolicy)
    assert isinstance(balancing._child_policy, DCAwareRoundRobinPolicy)
    assert balancing._child_policy.local_dc == "dc2"


def test_host_names_that_do_not_resolve_yet_make_the_store_unavailable() -> None:
    store = CassandraStore(CLUSTERED.with_overrides(cassandra_hosts=("cassandra.invalid",)))

    with pytest.raises(StoreUnavailable, match="host names resolves"):
        store.ping()


def test_the_driver_sends_writes_without_nagle_delay() -> None:
    # Without TCP_NODELAY a multi-record write waits ~40 ms for the server's delayed ACK.
    cluster = build_cluster(CLUSTERED)

    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in cluster.sockopts
