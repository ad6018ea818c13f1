"""How the service is doing over a time window: the aggregates both stores compute.

A store reads only the narrow columns of the window's records (time, digit, label,
latency, model version) and folds them with ``StatsBuilder``, so the numbers are the
same whichever backend answers, and the browser receives a few hundred numbers
instead of the records. SQLite reads the window through its time index; Cassandra
reads the window's day partitions, each restricted to the window by its clustering
column (the time-based id).

Each prediction keeps the model version that made it, so the feedback is also counted
per version: how many of its predictions were labelled and how many of those it got
right (training's metrics.json records the same per version, over every label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

DIGITS = 10
# Latency percentiles reported, as (name, fraction).
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


@dataclass(frozen=True)
class ModelVersionStats:
    model_name: str
    model_version: str
    predictions: int
    first_at: datetime
    last_at: datetime
    labelled: int  # its predictions in the window that users labelled
    correct: int  # ... whose label is the answer it gave


@dataclass(frozen=True)
class Stats:
    since: datetime  # inclusive, UTC
    until: datetime  # exclusive, UTC
    bucket_seconds: int
    predictions: int
    per_bucket: tuple[int, ...]  # predictions per bucket, the first starting at ``since``
    digits: tuple[int, ...]  # how often each digit was the answer
    labelled: int  # predictions with feedback
    correct: int  # ... whose label is the answer
    confusion: tuple[tuple[int, ...], ...]  # [label][answer] counts of labelled predictions
    latency_ms: dict[str, float] | None  # p50, p90, p99, max; None without predictions
    # newest first by last use, each with the feedback on its own predictions
    model_versions: tuple[ModelVersionStats, ...]


def bucket_count(since: datetime, until: datetime, bucket_seconds: int) -> int:
    return max(1, math.ceil((until - since) / timedelta(seconds=bucket_seconds)))


class StatsBuilder:
    """Folds one record at a time; ``build()`` gives the window's ``Stats``."""

    def __init__(self, since: datetime, until: datetime, bucket_seconds: int) -> None:
        if until <= since:
            raise ValueError(f"until ({until}) must be after since ({since})")
        if bucket_seconds < 1:
            raise ValueError(f"bucket_seconds must be at least 1, got {bucket_seconds}")
        self._since, self._until, self._bucket_seconds = since, until, bucket_seconds
        self._per_bucket = [0] * bucket_count(since, until, bucket_seconds)
        self._digits = [0] * DIGITS
        self._confusion = [[0] * DIGITS for _ in range(DIGITS)]
        self._latencies: list[float] = []
        # (model name, version) -> [predictions, first at, last at, labelled, correct]
        self._models: dict[tuple[str, str], list] = {}

    def add(
        self,
        created_at: datetime,
        digit: int,
        label: int | None,
        latency_ms: float,
        model_name: str,
        model_version: str,
    ) -> None:
        if not self._since <= created_at < self._until:
            return
        bucket = int((created_at - self._since).total_seconds() // self._bucket_seconds)
        self._per_bucket[bucket] += 1
        self._digits[digit] += 1
        if label is not None:
            self._confusion[label][digit] += 1
        self._latencies.append(latency_ms)
        seen = self._models.get((model_name, model_version))
        if seen is None:
            seen = self._models[(model_name, model_version)] = [0, created_at, created_at, 0, 0]
        seen[0] += 1
        seen[1] = min(seen[1], created_at)
        seen[2] = max(seen[2], created_at)
        if label is not None:
            seen[3] += 1
            seen[4] += int(label == digit)

    def build(self) -> Stats:
        latencies = sorted(self._latencies)
        models = sorted(
            (
                ModelVersionStats(name, version, *counts)
                for (name, version), counts in self._models.items()
            ),
            key=lambda model: model.last_at,
            reverse=True,
        )
        return Stats(
            since=self._since,
            until=self._until,
            bucket_seconds=self._bucket_seconds,
            predictions=len(latencies),
            per_bucket=tuple(self._per_bucket),
            digits=tuple(self._digits),
            labelled=sum(map(sum, self._confusion)),
            correct=sum(self._confusion[digit][digit] for digit in range(DIGITS)),
            confusion=tuple(tuple(row) for row in self._confusion),
            latency_ms=_percentiles(latencies) if latencies else None,
            model_versions=tuple(models),
        )


def _percentiles(ordered: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles of an ascending list: each is a latency that occurred."""
    values = {
        name: ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
        for name, fraction in PERCENTILES
    }
    values["max"] = ordered[-1]
    return values
