"""Where predictions are kept: Cassandra in the cluster, SQLite on one machine.

``make_store(config)`` picks the backend; both honour ``gateway.store.base.Store``.
``open_reader(config)`` opens the same backend for a program that only reads (retraining).
Importing this package needs the Cassandra driver but none of the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.store.base import Page, PredictionRecord, Store
from gateway.store.batching import BatchingStore
from gateway.store.cassandra_store import CassandraStore
from gateway.store.ids import new_prediction_id
from gateway.store.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics

__all__ = ["Page", "PredictionRecord", "Store", "make_store", "new_prediction_id", "open_reader"]


def make_store(config: Config, metrics: GatewayMetrics | None = None) -> Store:
    """The configured store, with group commit; it connects on first use, not here."""
    inner: Store = (
        CassandraStore(config) if config.uses_cassandra else SqliteStore(config.sqlite_path)
    )
    return BatchingStore(
        inner,
        max_records=config.store_batch_max_records,
        writers=config.store_writers,
        window_seconds=config.store_window_ms / 1000,
        observe_size=metrics.store_batch_records.observe if metrics else lambda records: None,
    )


def open_reader(config: Config) -> Store:
    """The configured store without group commit, and without creating Cassandra's schema
    (a reader's role may only read): for programs that read what the gateway stored."""
    if config.uses_cassandra:
        return CassandraStore(config, create_schema=False)
    return SqliteStore(config.sqlite_path)
