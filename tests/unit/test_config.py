"""gateway.config: defaults, every way a variable is parsed, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import CONSISTENCY_LEVELS, ENV_NAMES, Config, ConfigError


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Config.from_env({}) == Config()


def test_defaults_run_on_one_machine() -> None:
    config = Config.from_env({})

    assert not config.uses_cassandra
    assert not config.uses_tf_serving
    assert config.sqlite_path == Path(".cache/predictions.sqlite3")
    assert config.cassandra_consistency == "LOCAL_QUORUM"
    assert config.model_version is None


def test_every_field_has_an_environment_variable_of_its_upper_case_name() -> None:
    assert "CASSANDRA_HOSTS" in ENV_NAMES
    assert "SQLITE_PATH" in ENV_NAMES
    assert len(ENV_NAMES) == len(set(ENV_NAMES))


def test_every_variable_is_read() -> None:
    env = {
        "PORT": "9000",
        "MODEL_DIR": "/models/mnist",
        "MODEL_POLL_SECONDS": "0.5",
        "SERVING_URL": "http://serving:8501",
        "MODEL_NAME": "digits",
        "MODEL_VERSION": "7",
        "SERVING_TIMEOUT_SECONDS": "2.5",
        "SERVING_RETRIES": "0",
        "BATCH_MAX_SIZE": "16",
        "BATCH_WINDOW_MS": "1.5",
        "CASSANDRA_HOSTS": "cassandra-0.cassandra, cassandra-1.cassandra",
        "CASSANDRA_PORT": "19042",
        "CASSANDRA_KEYSPACE": "digits",
        "CASSANDRA_USERNAME": "gateway",
        "CASSANDRA_PASSWORD": "s3cret",
        "CASSANDRA_LOCAL_DC": "dc1",
        "CASSANDRA_REPLICATION_STRATEGY": "NetworkTopologyStrategy",
        "CASSANDRA_REPLICATION_FACTOR": "3",
        "CASSANDRA_REPLICATION_DCS": "dc1:3, dc2:2",
        "CASSANDRA_CONSISTENCY": "EACH_QUORUM",
        "CASSANDRA_CONNECT_TIMEOUT_SECONDS": "1.5",
        "CASSANDRA_REQUEST_TIMEOUT_SECONDS": "4",
        "STORE_BATCH_MAX_RECORDS": "32",
        "MODEL_THREADS": "2",
        "STORE_WRITERS": "3",
        "STORE_WINDOW_MS": "4.5",
        "SQLITE_PATH": "/data/p.sqlite3",
        "MAX_UPLOAD_BYTES": "1024",
        "MAX_IMAGES_PER_REQUEST": "8",
        "MAX_IMAGE_PIXELS": "1000000",
        "CLIENT_TIMEOUT_SECONDS": "12.5",
        "LOG_LEVEL": "debug",
    }

    config = Config.from_env(env)

    assert config == Config(
        port=9000,
        model_dir=Path("/models/mnist"),
        model_poll_seconds=0.5,
        serving_url="http://serving:8501",
        model_name="digits",
        model_version=7,
        serving_timeout_seconds=2.5,
        serving_retries=0,
        batch_max_size=16,
        batch_window_ms=1.5,
        cassandra_hosts=("cassandra-0.cassandra", "cassandra-1.cassandra"),
        cassandra_port=19042,
        cassandra_keyspace="digits",
        cassandra_username="gateway",
        cassandra_password="s3cret",
        cassandra_local_dc="dc1",
        cassandra_replication_strategy="NetworkTopologyStrategy",
        cassandra_replication_factor=3,
        cassandra_replication_dcs=(("dc1", 3), ("dc2", 2)),
        cassandra_consistency="EACH_QUORUM",
        cassandra_connect_timeout_seconds=1.5,
        cassandra_request_timeout_seconds=4.0,
        store_batch_max_records=32,
        model_threads=2,
        store_writers=3,
        store_window_ms=4.5,
        sqlite_path=Path("/data/p.sqlite3"),
        max_upload_bytes=1024,
        max_images_per_request=8,
        max_image_pixels=1_000_000,
        client_timeout_seconds=12.5,
        log_level="DEBUG",
    )
    assert config.uses_cassandra
    assert config.uses_tf_serving
    assert set(env) == set(ENV_NAMES)


def test_blank_values_count_as_unset() -> None:
    env = {"PORT": "  ", "SERVING_URL": "", "CASSANDRA_HOSTS": " , ,", "MODEL_VERSION": " "}

    assert Config.from_env(env) == Config()


def test_values_are_stripped() -> None:
    config = Config.from_env({"PORT": " 81 ", "CASSANDRA_KEYSPACE": " digits "})

    assert (config.port, config.cassandra_keyspace) == (81, "digits")


@pytest.mark.parametrize("raw", ["local_quorum", "Local_Quorum", "LOCAL_QUORUM"])
def test_choices_ignore_case_and_come_back_canonical(raw: str) -> None:
    config = Config.from_env({"CASSANDRA_CONSISTENCY": raw})

    assert config.cassandra_consistency == "LOCAL_QUORUM"


def test_every_consistency_level_is_accepted() -> None:
    for level in CONSISTENCY_LEVELS:
        assert Config.from_env({"CASSANDRA_CONSISTENCY": level}).cassandra_consistency == level


def test_replication_strategy_is_a_choice_too() -> None:
    config = Config.from_env({"CASSANDRA_REPLICATION_STRATEGY": "simplestrategy"})

    assert config.cassandra_replication_strategy == "SimpleStrategy"


def test_the_password_is_kept_out_of_repr() -> None:
    config = Config.from_env({"CASSANDRA_USERNAME": "gateway", "CASSANDRA_PASSWORD": "s3cret"})

    assert config.cassandra_password == "s3cret"
    assert "s3cret" not in repr(config)


def test_with_overrides_changes_only_what_it_names() -> None:
    config = Config().with_overrides(port=9, cassandra_hosts=("db",))

    assert (config.port, config.cassandra_hosts) == (9, ("db",))
    assert config.with_overrides(port=8080, cassandra_hosts=()) == Config()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be an integer, got 'eighty'"),
        ({"PORT": "0"}, "PORT must be at least 1, got 0"),
        ({"SERVING_RETRIES": "-1"}, "SERVING_RETRIES must be at least 0, got -1"),
        ({"MODEL_VERSION": "0"}, "MODEL_VERSION must be at least 1, got 0"),
        ({"MODEL_VERSION": "latest"}, "MODEL_VERSION must be an integer, got 'latest'"),
        ({"BATCH_WINDOW_MS": "soon"}, "BATCH_WINDOW_MS must be a number, got 'soon'"),
        ({"MODEL_POLL_SECONDS": "-0.5"}, "MODEL_POLL_SECONDS must not be negative, got -0.5"),
        ({"CASSANDRA_CONSISTENCY": "MOST"}, "CASSANDRA_CONSISTENCY must be one of ONE, TWO"),
        (
            {"CASSANDRA_REPLICATION_STRATEGY": "EverywhereStrategy"},
            "CASSANDRA_REPLICATION_STRATEGY must be one of SimpleStrategy, NetworkTopologyStrategy",
        ),
        ({"CASSANDRA_REPLICATION_DCS": "dc1"}, "must look like 'dc1:3,dc2:3', got 'dc1'"),
        ({"CASSANDRA_REPLICATION_DCS": ":3"}, "got ':3'"),
        ({"CASSANDRA_REPLICATION_DCS": "dc1:three"}, "got 'dc1:three'"),
        ({"CASSANDRA_REPLICATION_DCS": "dc1:3,dc2:"}, "got 'dc2:'"),
        (
            {"CASSANDRA_REPLICATION_STRATEGY": "NetworkTopologyStrategy"},
            "CASSANDRA_REPLICATION_DCS (e.g. 'dc1:3') is required with NetworkTopologyStrategy",
        ),
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env(env)

    assert message in str(raised.value)
