"""`make bench-gateway`: gateway throughput and latency, every prediction written to Cassandra.

In one run it measures, on the machine it runs on:
1. single-image uploads at a fixed concurrency (req/s, p50/p99 latency);
2. batch uploads (images/s);
3. the 2019 per-request path: rebuild the graph and restore the checkpoint for every
   image, as the ancestor project did, and the ratio between the two.
Each path is measured in several rounds and the median round is reported, with every
round printed beside it. It then checks that Cassandra holds exactly one row per
acknowledged image.

The gateway runs under gunicorn with the in-process model and the local Cassandra node
(`make cassandra-up`); the load comes from bench/loadgen (Go), so that the generator
takes as little of the two cores as it can.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.models import REPO_ROOT, SPEED_MODEL_DIR, SPEED_TRAINING_ARGS, ensure_model
from gateway.server import gunicorn_conf
from tests.support.http import free_port, wait_until_ready
from tests.support.procfs import children, cpu_seconds, processes

LOADGEN_SOURCE = REPO_ROOT / "bench" / "loadgen"
RESULTS = REPO_ROOT / ".cache" / "bench" / "gateway.json"
NODE = "127.0.0.1"
CASSANDRA_MAIN_CLASS = b"org.apache.cassandra.service.CassandraDaemon"
WARMUP_SECONDS = 5
# Before the first measurement: a freshly started Cassandra JVM spends up to a third of a
# core on JIT compilation (its C2 threads, seen with perf) through its first minute or so
# of load; with a 45 s warm-up the first round on a fresh node was still the slowest.
FIRST_WARMUP_SECONDS = 90


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=SPEED_MODEL_DIR)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements per path; the median one is reported"
    )
    parser.add_argument("--batch", type=int, default=64, help="images per batch upload")
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--legacy-samples", type=int, default=20, help="2019-path images timed")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ensure_model(args.model_dir, SPEED_TRAINING_ARGS, "one for the benchmark")
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        images_dir = write_test_digits(work / "digits", count=512)
        loadgen = build_loadgen(work / "loadgen")
        keyspace = f"bench_{int(time.time())}"
        with gateway_server(args, keyspace) as (url, gunicorn_pid):
            meter = CpuMeter(gateway_pid=gunicorn_pid, cassandra_pid=cassandra_pid())
            single_rounds = [
                run_load(
                    loadgen, url, images_dir, args.concurrency, 1, args.duration, meter,
                    warmup_seconds=FIRST_WARMUP_SECONDS if round_ == 0 else WARMUP_SECONDS,
                )
                for round_ in range(args.rounds)
            ]  # fmt: skip
            batch_rounds = [
                run_load(
                    loadgen, url, images_dir, args.batch_concurrency, args.batch, args.duration,
                    meter, warmup_seconds=WARMUP_SECONDS,
                )
                for _ in range(args.rounds)
            ]  # fmt: skip
        stored = count_rows_and_drop(keyspace)
        legacy_seconds = time_legacy_path(args.model_dir, images_dir, args.legacy_samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    acknowledged = sum(
        (run["warmup_created"] + run["requests"] - run["errors"]) * run["images_per_request"]
        for run in (*single_rounds, *batch_rounds)
    )
    single, batch = median_round(single_rounds), median_round(batch_rounds)
    report = {
        "single": single,
        "batch": batch,
        "rounds": {"single": single_rounds, "batch": batch_rounds},
        "legacy_2019": {
            "median_ms_per_image": legacy_seconds * 1000,
            "requests_per_second": 1 / legacy_seconds,
        },
        "speedup_vs_2019": single["requests_per_second"] * legacy_seconds,
        "acknowledged_images": acknowledged,
        "rows_in_cassandra": stored,
        "gunicorn": {"workers": args.workers, "worker_class": gunicorn_conf.worker_class},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print_report(report, args)
    if stored != acknowledged:
        sys.exit(f"FAIL: {acknowledged} predictions acknowledged but {stored} rows stored")


def write_test_digits(directory: Path, count: int) -> Path:
    from bench.digits import load_test_digits
    from tests.support.images import encode

    directory.mkdir(parents=True)
    images, _ = load_test_digits()
    for index, image in enumerate(images[:count]):
        (directory / f"{index:05d}.png").write_bytes(encode(image))
    return directory


def build_loadgen(target: Path) -> Path:
    subprocess.run(["go", "build", "-o", str(target), "."], cwd=LOADGEN_SOURCE, check=True)
    return target


@contextmanager
def gateway_server(args: argparse.Namespace, keyspace: str):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_DIR": str(args.model_dir),
        "CASSANDRA_HOSTS": NODE,
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_CONSISTENCY": "LOCAL_QUORUM",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config", gunicorn_conf.GUNICORN_CONFIG,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        "--log-level", "warning",
        "gateway:create_app()",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Every worker must have loaded the model: ask a few times to reach each.
        wait_until_ready(url, timeout=180, process=process, answers=8)
        yield url + "/api/v1/predictions", process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def run_load(
    loadgen: Path,
    url: str,
    images: Path,
    concurrency: int,
    batch: int,
    seconds: float,
    meter: CpuMeter,
    *,
    warmup_seconds: float,
) -> dict:
    command = [
        str(loadgen),
        f"-url={url}",
        f"-images={images}",
        f"-concurrency={concurrency}",
        f"-batch={batch}",
        f"-duration={seconds}s",
        f"-warmup={warmup_seconds}s",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    time.sleep(warmup_seconds)
    before = meter.read()
    output, _ = process.communicate()
    spent = meter.read() - before
    if process.returncode:
        sys.exit(f"loadgen failed with {process.returncode}")
    result = json.loads(output)
    images_done = (result["requests"] - result["errors"]) * result["images_per_request"]
    result["cpu_ms_per_image"] = spent.per(images_done)
    # As it is measured: a failure later in the run must not take the figures with it.
    print(
        f"round: {concurrency} clients x {batch} image(s): "
        f"{result['requests_per_second']:.1f} req/s, {result['images_per_second']:.0f} images/s, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['errors']} errors",
        flush=True,
    )
    return result


def median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (the upper one of an even count)."""
    return sorted(rounds, key=lambda run: run["images_per_second"])[len(rounds) // 2]


@dataclass(frozen=True)
class CpuSeconds:
    gateway: float
    cassandra: float

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.gateway - other.gateway, self.cassandra - other.cassandra)

    def per(self, images: int) -> dict[str, float]:
        return {
            "gateway": 1000 * self.gateway / max(images, 1),
            "cassandra": 1000 * self.cassandra / max(images, 1),
        }


@dataclass(frozen=True)
class CpuMeter:
    """CPU time (user + system) of the gunicorn workers and of the Cassandra JVM, from /proc:
    where the two cores go, per image."""

    gateway_pid: int
    cassandra_pid: int | None

    def read(self) -> CpuSeconds:
        workers = children(self.gateway_pid)
        gateway = sum(cpu_seconds(pid) for pid in [self.gateway_pid, *workers])
        cassandra = cpu_seconds(self.cassandra_pid) if self.cassandra_pid else 0.0
        return CpuSeconds(gateway, cassandra)


def cassandra_pid() -> int | None:
    for pid, _ in processes():
        try:
            if CASSANDRA_MAIN_CLASS in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def count_rows_and_drop(keyspace: str) -> int:
    from cassandra.query import SimpleStatement

    from gateway.config import Config
    from gateway.store.cassandra_store import build_cluster

    cluster = build_cluster(Config(cassandra_hosts=(NODE,), cassandra_request_timeout_seconds=120))
    try:
        session = cluster.connect()
        # Counted here, page by page: a server-side count(*) of a few hundred thousand rows
        # is one read that can exceed the node's range-read timeout while it compacts.
        ids = SimpleStatement(f"SELECT id FROM {keyspace}.predictions", fetch_size=5000)
        count = sum(1 for _ in session.execute(ids))
        session.execute(f"DROP KEYSPACE {keyspace}")
        return count
    finally:
        cluster.shutdown()


def time_legacy_path(model_dir: Path, images_dir: Path, samples: int) -> float:
    """Median seconds per image of the 2019 path: build graph, restore checkpoint, predict."""
    from bench.legacy_2019 import LegacyPredictor

    legacy = LegacyPredictor.prepare(Path(tempfile.mkdtemp(prefix="legacy-2019-")))
    durations = []
    for path in sorted(images_dir.iterdir())[:samples]:
        started = time.perf_counter()
        legacy.predict_png(path.read_bytes())
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def print_report(report: dict, args: argparse.Namespace) -> None:
    single, batch, legacy = report["single"], report["batch"], report["legacy_2019"]
    print()
    print(f"gateway: gunicorn {args.workers} {gunicorn_conf.worker_class} workers, "
          f"in-process model, Cassandra at {NODE} (every prediction stored)")  # fmt: skip
    print(f"{'path':<44}{'req/s':>9}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    rows = [
        (f"single image, {single['concurrency']} clients", single),
        (f"batch of {args.batch}, {batch['concurrency']} clients", batch),
    ]
    for name, result in rows:
        print(
            f"{name:<44}{result['requests_per_second']:>9.1f}{result['images_per_second']:>10.1f}"
            f"{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}{result['errors']:>8}"
        )
    print(
        f"{'2019 path (graph + restore per image)':<44}{legacy['requests_per_second']:>9.1f}"
        f"{legacy['requests_per_second']:>10.1f}{legacy['median_ms_per_image']:>9.1f}"
        f"{'':>9}{0:>8}"
    )
    print(f"the median of {args.rounds} rounds of {args.duration:.0f} s; every round:")
    for path, rounds in report["rounds"].items():
        print(f"  {path}: " + ", ".join(
            f"{run['images_per_second']:.0f} images/s p99 {run['p99_ms']:.0f} ms" for run in rounds
        ))  # fmt: skip
    print(f"single-image throughput vs the 2019 path: {report['speedup_vs_2019']:.0f}x")
    for name, result in rows:
        cpu = result["cpu_ms_per_image"]
        print(f"CPU per image, {name}: gateway {cpu['gateway']:.2f} ms, "
              f"Cassandra {cpu['cassandra']:.2f} ms")  # fmt: skip
    print(f"rows in Cassandra: {report['rows_in_cassandra']} for "
          f"{report['acknowledged_images']} acknowledged images")  # fmt: skip
    print(f"results: {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
