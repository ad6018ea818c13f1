"""The per-process dependencies a request needs, built from config, connected lazily."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from gateway.config import Config
from gateway.metrics import GatewayMetrics
from gateway.predictors import make_predictor
from gateway.predictors.base import Predictor
from gateway.store import make_store
from gateway.store.base import Store

EXTENSION_KEY = "mnist_gateway"


@dataclass
class Services:
    config: Config
    predictor: Predictor
    store: Store
    metrics: GatewayMetrics

    @classmethod
    def from_config(cls, config: Config) -> Services:
        # Neither constructor connects: a gunicorn worker opens its own Cassandra
        # session and loads its own model on first use, after the fork.
        metrics = GatewayMetrics()
        return cls(
            config=config,
            predictor=make_predictor(config, metrics),
            store=make_store(config, metrics),
            metrics=metrics,
        )


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
