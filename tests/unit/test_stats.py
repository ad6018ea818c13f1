"""The stats window the API asks the store for, and the builder's percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.stats import StatsBuilder
from gateway.web.api import stats_window

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
