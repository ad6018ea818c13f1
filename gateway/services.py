"""The per-process dependencies a request needs, built from config, connected lazily."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

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

    def close(self) -> None:
        """Stop this process's background threads and close its connections."""
        self.store.close()
        self.predictor.close()


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def close_services(app: Flask) -> None:
    """Close what ``app`` opened in this process, when the process is done serving.

    Called as a gunicorn worker exits (``gateway.server.gunicorn_conf.worker_exit``). Left to
    the interpreter's exit instead, the Cassandra driver's scheduler thread can outlive
    its thread pool, which the interpreter shuts down first, and print a traceback.
    """
    app.extensions[EXTENSION_KEY].close()
