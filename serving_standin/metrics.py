"""The few Prometheus metrics the stand-in can report honestly, in the text format.

Where TF Serving has a metric for the same thing, the stand-in uses its name and labels
(``:tensorflow:serving:request_count``, ``:tensorflow:serving:request_latency``, counted
for predict calls); what only the stand-in knows is prefixed ``serving_standin_``.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Microseconds, as TF Serving's request_latency.
LATENCY_BUCKETS_US = (
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
)  # fmt: skip
# TF Serving reports a request's status by its canonical error code.
_STATUS_NAMES = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_name(http_status: int) -> str:
    return _STATUS_NAMES.get(http_status, "UNKNOWN")


class Metrics:
    """Counters of one server process; ``render`` writes them in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._latency_buckets: dict[str, list[int]] = {}
        self._latency_sum_us: collections.Counter[str] = collections.Counter()
        self._loads: collections.Counter[tuple[str, str]] = collections.Counter()

    def predict_request(self, model: str, http_status: int, seconds: float) -> None:
        micros = seconds * 1e6
        with self._lock:
            self._requests[model, status_name(http_status)] += 1
            buckets = self._latency_buckets.setdefault(model, [0] * (len(LATENCY_BUCKETS_US) + 1))
            buckets[bisect.bisect_left(LATENCY_BUCKETS_US, micros)] += 1
            self._latency_sum_us[model] += micros

    def version_load(self, model: str, *, ok: bool) -> None:
        with self._lock:
            self._loads[model, "ok" if ok else "error"] += 1

    def render(self, available_versions: Mapping[str, int]) -> str:
        with self._lock:
            requests = dict(self._requests)
            latency = {model: list(b) for model, b in self._latency_buckets.items()}
            latency_sum = dict(self._latency_sum_us)
            loads = dict(self._loads)
        lines = [
            "# HELP :tensorflow:serving:request_count The total number of requests.",
            "# TYPE :tensorflow:serving:request_count counter",
        ]
        for (model, status), count in sorted(requests.items()):
            lines.append(
                f":tensorflow:serving:request_count{_labels(model_name=model, status=status)} "
                f"{count}"
            )
        lines += [
            "# HELP :tensorflow:serving:request_latency Distribution of wall time (in "
            "microseconds) for Tensorflow Serving request.",
            "# TYPE :tensorflow:serving:request_latency histogram",
        ]
        for model, buckets in sorted(latency.items()):
            cumulative = 0
            names = {"model_name": model, "API": "predict", "entrypoint": "REST"}
            for bound, count in zip((*LATENCY_BUCKETS_US, "+Inf"), buckets, strict=True):
                cumulative += count
                lines.append(
                    f":tensorflow:serving:request_latency_bucket{_labels(**names, le=str(bound))} "
                    f"{cumulative}"
                )
            series = ":tensorflow:serving:request_latency"
            lines.append(f"{series}_sum{_labels(**names)} {latency_sum[model]:.0f}")
            lines.append(f"{series}_count{_labels(**names)} {cumulative}")
        lines += [
            "# HELP serving_standin_version_loads_total Model versions the stand-in loaded, "
            "by outcome.",
            "# TYPE serving_standin_version_loads_total counter",
        ]
        for (model, status), count in sorted(loads.items()):
            lines.append(
                f"serving_standin_version_loads_total{_labels(model_name=model, status=status)} "
                f"{count}"
            )
        lines += [
            "# HELP serving_standin_versions_available Versions of the model that are AVAILABLE.",
            "# TYPE serving_standin_versions_available gauge",
        ]
        for model, count in sorted(available_versions.items()):
            lines.append(f"serving_standin_versions_available{_labels(model_name=model)} {count}")
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in labels.items()) + "}"
