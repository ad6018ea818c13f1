"""The stats window the API asks the store for, the builder's percentiles and its feedback
per model version, and the API's JSON of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.stats import StatsBuilder
from gateway.web.api import stats_json, stats_window

NOW = datetime(2026, 3, 5, 13, 45, 12, tzinfo=UTC)


def test_one_or_two_days_are_hourly_up_to_the_end_of_this_hour():
    since, until, bucket = stats_window(NOW, 1)
    assert (since, until, bucket) == (
        datetime(2026, 3, 4, 14, tzinfo=UTC),
        datetime(2026, 3, 5, 14, tzinfo=UTC),
        3600,
    )
    assert stats_window(NOW, 2)[0] == datetime(2026, 3, 3, 14, tzinfo=UTC)


def test_longer_windows_are_whole_utc_days_up_to_the_end_of_the_current_day():
    since, until, bucket = stats_window(NOW, 7)
    assert (since, until, bucket) == (
        datetime(2026, 2, 27, tzinfo=UTC),
        datetime(2026, 3, 6, tzinfo=UTC),
        86400,
    )


def test_percentiles_are_nearest_rank_latencies_that_occurred():
    builder = StatsBuilder(NOW, NOW + timedelta(hours=1), 3600)
    for index, latency in enumerate(range(100, 0, -1)):  # 100 ms down to 1 ms
        builder.add(NOW + timedelta(seconds=index), 1, None, float(latency), "mnist", "1")

    stats = builder.build()

    assert stats.latency_ms == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert stats.per_bucket == (100,)


def test_a_window_must_have_a_length_and_buckets_a_size():
    with pytest.raises(ValueError, match="until"):
        StatsBuilder(NOW, NOW, 3600)
    with pytest.raises(ValueError, match="bucket_seconds"):
        StatsBuilder(NOW, NOW + timedelta(hours=1), 0)


def test_feedback_is_counted_for_the_version_that_made_each_prediction():
    builder = StatsBuilder(NOW, NOW + timedelta(hours=1), 3600)
    # (version, digit, label)
    for index, (version, digit, label) in enumerate(
        [("1", 3, 3), ("1", 3, 8), ("1", 5, None), ("2", 7, 7), ("2", 0, None)]
    ):
        builder.add(NOW + timedelta(seconds=index), digit, label, 10.0, "mnist", version)
    builder.add(NOW - timedelta(seconds=1), 3, 3, 10.0, "mnist", "1")  # outside the window

    stats = builder.build()

    assert [
        (m.model_version, m.predictions, m.labelled, m.correct) for m in stats.model_versions
    ] == [
        ("2", 2, 1, 1),
        ("1", 3, 2, 1),
    ]
    versions = stats_json(stats)["model_versions"]
    assert [(v["labelled"], v["correct"], v["accuracy"]) for v in versions] == [
        (1, 1, 1.0),
        (2, 1, 0.5),
    ]


def test_a_version_without_feedback_has_no_accuracy():
    builder = StatsBuilder(NOW, NOW + timedelta(hours=1), 3600)
    builder.add(NOW, 4, None, 10.0, "mnist", "7")

    (version,) = stats_json(builder.build())["model_versions"]

    assert (version["labelled"], version["correct"], version["accuracy"]) == (0, 0, None)
