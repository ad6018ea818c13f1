"""Prometheus metrics, one registry per app so that several apps (tests) never collide.

With several gunicorn workers each process keeps its own counters; the chart runs one
worker per pod (its requests are greenlets) and scales pods instead, so a scrape sees
the whole pod.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; the gateway's targets sit between 1 ms and 100 ms.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Items per coalesced call: how well concurrent requests are being batched.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "gateway_predictions",
            "Stored predictions by predicted digit.",
            ["digit"],
            registry=self.registry,
        )
        self.preprocess_seconds = Histogram(
            "gateway_preprocess_duration_seconds",
            "Time to turn one upload into an MNIST-style input.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "gateway_model_duration_seconds",
            "Time the predictor (TF Serving or in-process) took for one request's batch.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "gateway_store_duration_seconds",
            "Store latency by operation.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.model_batch_images = Histogram(
            "gateway_model_batch_images",
            "Images per model call, after concurrent requests were batched together.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.store_batch_records = Histogram(
            "gateway_store_batch_records",
            "Records per store write, after concurrent requests were committed together.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
