"""Gateway configuration: the one module that reads the environment.

Everything else receives a :class:`Config`; nothing else touches ``os.environ``.
The table of variables lives in README.md ("Gateway configuration").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from mnist_contract import DEFAULT_MODEL_DIR, MODEL_NAME

CONSISTENCY_LEVELS = (
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)


class ConfigError(ValueError):
    """An environment variable has a value the gateway cannot use."""


@dataclass(frozen=True)
class Config:
    port: int = 8080
    # In-process model: base directory of numbered SavedModel versions.
    model_dir: Path = DEFAULT_MODEL_DIR
    # How often (seconds) the in-process predictor looks for a newer version, and the
    # TF Serving client re-reads which version TF Serving serves.
    model_poll_seconds: float = 5.0
    # TensorFlow threads per process for the in-process model; parallelism comes from
    # gunicorn worker processes (one per core).
    model_threads: int = 1
    # TF Serving: when set, predictions go to this REST endpoint instead.
    serving_url: str | None = None
    model_name: str = MODEL_NAME
    # Pin a TF Serving model version (None: whatever TF Serving serves as latest).
    model_version: int | None = None
    serving_timeout_seconds: float = 5.0
    serving_retries: int = 2
    # Micro-batching: concurrent requests share one model call. A batch is what queued
    # while the previous call ran; once two or more requests are queued together, it waits
    # up to the window for more (a lone request never waits). See store_writers for the
    # measurement behind this default.
    batch_max_size: int = 64
    batch_window_ms: float = 2.0
    # Cassandra: when hosts are set, results are stored there instead of SQLite.
    cassandra_hosts: tuple[str, ...] = ()
    cassandra_port: int = 9042
    cassandra_keyspace: str = "mnist"
    cassandra_username: str | None = None
    cassandra_password: str | None = field(default=None, repr=False)
    cassandra_local_dc: str | None = None
    # SimpleStrategy with cassandra_replication_factor, or NetworkTopologyStrategy
    # with cassandra_replication_dcs ("dc1:3,dc2:3").
    cassandra_replication_strategy: str = "SimpleStrategy"
    cassandra_replication_factor: int = 1
    cassandra_replication_dcs: tuple[tuple[str, int], ...] = ()
    cassandra_consistency: str = "LOCAL_QUORUM"
    cassandra_connect_timeout_seconds: float = 5.0
    cassandra_request_timeout_seconds: float = 5.0
    # Group commit: the records of concurrent requests are written together, up to this many.
    store_batch_max_records: int = 256
    # Store writes in flight at once, per worker process. One writer and a 2 ms model window
    # make bigger batches, and on saturated cores bigger batches are throughput: each model
    # call and each Cassandra write costs CPU of its own (docs/design.md, "Batching").
    store_writers: int = 1
    # Group commit's window, as batch_window_ms is the model's: once two or more callers
    # are queued together, a write waits up to this long (from the first one's arrival)
    # for more. A lone request never waits. Fewer, bigger writes leave more of the cores to
    # the requests, since Cassandra's CPU goes per write (docs/design.md, "Batching").
    store_window_ms: float = 16.0
    # Embedded store, used when cassandra_hosts is empty.
    sqlite_path: Path = Path(".cache/predictions.sqlite3")
    # Upload limits.
    max_upload_bytes: int = 10 * 1024 * 1024
    max_images_per_request: int = 64
    max_image_pixels: int = 40_000_000
    # Seconds a client may stay silent while sending its request, or between requests on
    # a kept-alive connection, before the gateway gives up on it (408 or a closed
    # connection). Slow clients then cannot hold the worker's connections for long.
    client_timeout_seconds: float = 30.0
    log_level: str = "INFO"

    @property
    def uses_cassandra(self) -> bool:
        return bool(self.cassandra_hosts)

    @property
    def uses_tf_serving(self) -> bool:
        return bool(self.serving_url)

    def with_overrides(self, **changes: object) -> Config:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        config = cls(
            port=reader.int("PORT", cls.port, minimum=1),
            model_dir=Path(reader.str("MODEL_DIR", str(cls.model_dir))),
            model_poll_seconds=reader.float("MODEL_POLL_SECONDS", cls.model_poll_seconds),
            model_threads=reader.int("MODEL_THREADS", cls.model_threads, minimum=1),
            serving_url=reader.optional("SERVING_URL"),
            model_name=reader.str("MODEL_NAME", cls.model_name),
            model_version=reader.optional_int("MODEL_VERSION"),
            serving_timeout_seconds=reader.float(
                "SERVING_TIMEOUT_SECONDS", cls.serving_timeout_seconds
            ),
            serving_retries=reader.int("SERVING_RETRIES", cls.serving_retries, minimum=0),
            batch_max_size=reader.int("BATCH_MAX_SIZE", cls.batch_max_size, minimum=1),
            batch_window_ms=reader.float("BATCH_WINDOW_MS", cls.batch_window_ms),
            cassandra_hosts=reader.csv("CASSANDRA_HOSTS"),
            cassandra_port=reader.int("CASSANDRA_PORT", cls.cassandra_port, minimum=1),
            cassandra_keyspace=reader.str("CASSANDRA_KEYSPACE", cls.cassandra_keyspace),
            cassandra_username=reader.optional("CASSANDRA_USERNAME"),
            cassandra_password=reader.optional("CASSANDRA_PASSWORD"),
            cassandra_local_dc=reader.optional("CASSANDRA_LOCAL_DC"),
            cassandra_replication_strategy=reader.choice(
                "CASSANDRA_REPLICATION_STRATEGY",
                cls.cassandra_replication_strategy,
                ("SimpleStrategy", "NetworkTopologyStrategy"),
            ),
            cassandra_replication_factor=reader.int(
                "CASSANDRA_REPLICATION_FACTOR", cls.cassandra_replication_factor, minimum=1
            ),
            cassandra_replication_dcs=reader.dc_factors("CASSANDRA_REPLICATION_DCS"),
            cassandra_consistency=reader.choice(
                "CASSANDRA_CONSISTENCY", cls.cassandra_consistency, CONSISTENCY_LEVELS
            ),
            cassandra_connect_timeout_seconds=reader.float(
                "CASSANDRA_CONNECT_TIMEOUT_SECONDS", cls.cassandra_connect_timeout_seconds
            ),
            cassandra_request_timeout_seconds=reader.float(
                "CASSANDRA_REQUEST_TIMEOUT_SECONDS", cls.cassandra_request_timeout_seconds
            ),
            store_batch_max_records=reader.int(
                "STORE_BATCH_MAX_RECORDS", cls.store_batch_max_records, minimum=1
            ),
            store_writers=reader.int("STORE_WRITERS", cls.store_writers, minimum=1),
            store_window_ms=reader.float("STORE_WINDOW_MS", cls.store_window_ms),
            sqlite_path=Path(reader.str("SQLITE_PATH", str(cls.sqlite_path))),
            max_upload_bytes=reader.int("MAX_UPLOAD_BYTES", cls.max_upload_bytes, minimum=1),
            max_images_per_request=reader.int(
                "MAX_IMAGES_PER_REQUEST", cls.max_images_per_request, minimum=1
            ),
            max_image_pixels=reader.int("MAX_IMAGE_PIXELS", cls.max_image_pixels, minimum=1),
            client_timeout_seconds=reader.float(
                "CLIENT_TIMEOUT_SECONDS", cls.client_timeout_seconds
            ),
            log_level=reader.str("LOG_LEVEL", cls.log_level).upper(),
        )
        if (
            config.cassandra_replication_strategy == "NetworkTopologyStrategy"
            and not config.cassandra_replication_dcs
        ):
            raise ConfigError(
                "CASSANDRA_REPLICATION_DCS (e.g. 'dc1:3') is required with NetworkTopologyStrategy"
            )
        return config


ENV_NAMES = tuple(f.name.upper() for f in fields(Config))


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def str(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def optional_int(self, name: str) -> int | None:
        return None if self.optional(name) is None else self.int(name, 0, minimum=1)

    def float(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")
        return value

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self.optional(name) or ""
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.str(name, default)
        by_folded = {option.upper(): option for option in allowed}
        if value.upper() not in by_folded:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return by_folded[value.upper()]

    def dc_factors(self, name: str) -> tuple[tuple[str, int], ...]:
        pairs = []
        for item in self.csv(name):
            dc, sep, factor = item.partition(":")
            if not sep or not dc.strip() or not factor.strip().isdigit():
                raise ConfigError(f"{name} must look like 'dc1:3,dc2:3', got {item!r}")
            pairs.append((dc.strip(), int(factor)))
        return tuple(pairs)
