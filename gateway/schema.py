"""Apply the Cassandra schema and exit: ``python -m gateway.schema [--wait SECONDS]``.

The Helm schema Job runs this before the gateway rolls out. In Kubernetes Cassandra
may still be starting, so connecting is retried with backoff for up to ``--wait``
seconds. The statements themselves live in ``gateway.store.cassandra_schema``; the
gateway applies the same ones at first connect. Exit status: 0 applied, 1 failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from gateway.config import Config, ConfigError
from gateway.errors import StoreUnavailable
from gateway.store.cassandra_schema import apply_schema, replication_cql
from gateway.store.cassandra_store import build_cluster, unavailable_on_driver_errors

DEFAULT_WAIT_SECONDS = 300.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 15.0


def apply(config: Config) -> None:
    """Connect once and run every schema statement; ``StoreUnavailable`` if Cassandra is not up."""
    with unavailable_on_driver_errors():
        cluster = build_cluster(config)  # resolves the host names
    try:
        with unavailable_on_driver_errors():
            created = apply_schema(cluster.connect(), config)
        for what in created:
            print(f"  {what}: exists", flush=True)
    finally:
        cluster.shutdown()


def apply_with_retries(config: Config, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            apply(config)
            return
        except StoreUnavailable as error:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            delay = min(delay, remaining)
            print(f"{error.message}; retrying in {delay:.0f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.schema", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"keep retrying to connect this long (default {DEFAULT_WAIT_SECONDS:.0f})",
    )
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
        if not config.uses_cassandra:
            raise ConfigError("CASSANDRA_HOSTS is not set: there is no Cassandra to prepare")
        hosts = ", ".join(config.cassandra_hosts)
        print(
            f"Cassandra schema: keyspace {config.cassandra_keyspace} on {hosts} "
            f"(replication {replication_cql(config)})",
            flush=True,
        )
        apply_with_retries(config, args.wait)
    except (ConfigError, StoreUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Cassandra schema is in place", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
