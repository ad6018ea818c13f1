"""`make bench-probes`: what a kubelet's probes see while clients upload the largest images.

A liveness probe that times out gets a healthy pod restarted. The gateway decodes large
uploads and calls the in-process model on native threads, off the event loop that answers
probes (``gateway/concurrency/background.py``), so a probe never waits for a whole decode
or model call; it still shares the cores and the GIL with those threads. The gateway runs
as the chart runs it: gunicorn with one gevent worker, here with the in-process model and
a SQLite store (the store is not what is measured). One client asks for /healthz every
20 ms, on a new connection each time as the kubelet does, while eight clients upload back
to back, in two loads: a 6000x6000 PNG (36 M pixels, under the 40 M limit; decode-bound)
and 64 MNIST test digits per request (model-bound: full batches). The baseline, in the
same run and against the same server: the same probes with no uploads. Idle and loaded
rounds alternate; the round with the median p99 of each is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.digits import load_test_digits
from bench.models import REPO_ROOT, SPEED_MODEL_DIR, SPEED_TRAINING_ARGS, ensure_model
from gateway.config import Config
from tests.support.gunicorn import gunicorn
from tests.support.images import encode, large_digit_png
from tests.support.load import percentile

RESULTS = REPO_ROOT / ".cache" / "bench" / "probes.json"
LARGE_SIDE = 6000
UPLOADERS = 8
BATCH_IMAGES = Config.batch_max_size  # the default: one upload fills a model call
PROBE_INTERVAL_SECONDS = 0.02
TARGET_P99_MS = 50.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=SPEED_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each round")
    return parser.parse_args()


def probe_round(url: str, seconds: float) -> list[float]:
    """/healthz latencies in seconds, one probe every PROBE_INTERVAL_SECONDS for ``seconds``."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # A new connection for every probe, as the kubelet makes them: the worker's
        # event loop accepts it, reads, answers.
        started = time.perf_counter()
        response = requests.get(url + "/healthz", timeout=30)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
        time.sleep(PROBE_INTERVAL_SECONDS)
    return latencies


def loaded_round(url: str, seconds: float, files: list[tuple]) -> tuple[list[float], int]:
    """Probe latencies while UPLOADERS clients post ``files`` back to back, and how many of
    those uploads were answered 201."""
    stop = threading.Event()

    def upload_until_stopped() -> int:
        answered = 0
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(url + "/api/v1/predictions", files=files, timeout=300)
                if response.status_code != 201:
                    raise RuntimeError(f"an upload was answered {response.status_code}")
                answered += 1
        return answered

    with ThreadPoolExecutor(UPLOADERS) as uploaders:
        running = [uploaders.submit(upload_until_stopped) for _ in range(UPLOADERS)]
        try:
            time.sleep(2.0)  # every uploader has a request in flight
            latencies = probe_round(url, seconds)
        finally:
            stop.set()
        answered = sum(future.result() for future in running)
    return latencies, answered


def loads() -> dict[str, tuple[str, list[tuple]]]:
    """Each load: what it is, and the multipart files of one of its uploads."""
    large = large_digit_png(LARGE_SIDE)
    digits, _ = load_test_digits()
    batch = [("file", (f"{index}.png", encode(digits[index]))) for index in range(BATCH_IMAGES)]
    return {
        "large": (
            f"a {LARGE_SIDE}x{LARGE_SIDE} PNG ({len(large):,} bytes) per upload",
            [("file", ("large.png", large))],
        ),
        "batch": (f"{BATCH_IMAGES} MNIST digits (28x28 PNGs) per upload", batch),
    }


def summary(latencies: list[float]) -> dict:
    return {
        "probes": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def median_round(rounds: list[dict]) -> dict:
    return sorted(rounds, key=lambda r: r["p99_ms"])[len(rounds) // 2]


def main() -> None:
    args = parse_args()
    ensure_model(args.model_dir, SPEED_TRAINING_ARGS, "a one-epoch speed model")
    scenarios = loads()
    idle: list[dict] = []
    loaded: dict[str, list[dict]] = {name: [] for name in scenarios}
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "MODEL_DIR": str(args.model_dir),
            "SQLITE_PATH": str(Path(scratch) / "predictions.sqlite3"),
        }
        with gunicorn(env, workers=1) as (url, _):
            for number in range(1, args.rounds + 1):
                idle.append(summary(probe_round(url, args.seconds / 2)))
                line = f"round {number}: idle p99 {idle[-1]['p99_ms']:.1f} ms"
                for name, (_, files) in scenarios.items():
                    latencies, answered = loaded_round(url, args.seconds, files)
                    loaded[name].append({**summary(latencies), "uploads_answered": answered})
                    row = loaded[name][-1]
                    line += (
                        f"; beside {name} uploads p50 {row['p50_ms']:.1f} / p99 "
                        f"{row['p99_ms']:.1f} ms ({answered} answered)"
                    )
                print(line, flush=True)
    report = {
        "clients": UPLOADERS,
        "loads": {name: what for name, (what, _) in scenarios.items()},
        "idle": median_round(idle),
        "loaded": {name: median_round(rounds) for name, rounds in loaded.items()},
        "idle_rounds": idle,
        "loaded_rounds": loaded,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print_report(report)


def print_report(report: dict) -> None:
    print()
    print(
        f"/healthz, one gevent worker, beside {report['clients']} clients uploading back to back:"
    )
    for name, what in report["loads"].items():
        print(f"  {name}: {what}")
    print(f"{'':<24}{'probes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'uploads':>9}")
    rows = [("idle (baseline)", report["idle"])]
    rows += [(f"beside {name} uploads", row) for name, row in report["loaded"].items()]
    for label, row in rows:
        print(
            f"{label:<24}{row['probes']:>8}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['max_ms']:>9.1f}{row.get('uploads_answered', ''):>9}"
        )
    for name, row in report["loaded"].items():
        verdict = "met" if row["p99_ms"] <= TARGET_P99_MS else "NOT met"
        print(f"target: p99 <= {TARGET_P99_MS:.0f} ms beside {name} uploads: {verdict}")
    print(f"results: {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
