"""`make bench-probes`: what a kubelet's probes see while clients upload the largest images.

A liveness probe that times out gets a healthy pod restarted. The gateway decodes and
normalises uploads on a pool of native threads, off the event loop that answers probes
(``gateway/concurrency/background.py``), so a probe never waits for a whole decode; it
still shares the cores and the GIL with those threads. The gateway runs as the chart runs
it: gunicorn with one gevent worker, here with the in-process model and a SQLite store
(the store is not what is measured). Eight clients upload a 6000x6000 PNG (36 M pixels,
under the 40 M limit) back to back while one client asks for /healthz every 20 ms, on a
new connection each time as the kubelet does. The baseline, in the same run and against
the same server: the same probes with no uploads. Loaded and idle rounds alternate; the
round with the median p99 of each is reported.
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

from bench.models import REPO_ROOT, SPEED_MODEL_DIR, SPEED_TRAINING_ARGS, ensure_model
from tests.support.gunicorn import gunicorn
from tests.support.images import large_digit_png
from tests.support.load import percentile

RESULTS = REPO_ROOT / ".cache" / "bench" / "probes.json"
LARGE_SIDE = 6000
UPLOADERS = 8
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


def loaded_round(url: str, seconds: float, upload: bytes) -> tuple[list[float], int]:
    """Probe latencies while UPLOADERS clients upload ``upload`` back to back, and how many
    of those uploads were answered 201."""
    stop = threading.Event()

    def upload_until_stopped() -> int:
        answered = 0
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(
                    url + "/api/v1/predictions", files={"file": ("big.png", upload)}, timeout=300
                )
                if response.status_code != 201:
                    raise RuntimeError(f"large upload answered {response.status_code}")
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
    upload = large_digit_png(LARGE_SIDE)
    idle, loaded = [], []
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "MODEL_DIR": str(args.model_dir),
            "SQLITE_PATH": str(Path(scratch) / "predictions.sqlite3"),
        }
        with gunicorn(env, workers=1) as (url, _):
            for number in range(1, args.rounds + 1):
                idle.append(summary(probe_round(url, args.seconds / 2)))
                latencies, answered = loaded_round(url, args.seconds, upload)
                loaded.append({**summary(latencies), "large_uploads_answered": answered})
                print(
                    f"round {number}: idle p99 {idle[-1]['p99_ms']:.1f} ms; "
                    f"loaded p50 {loaded[-1]['p50_ms']:.1f} / p99 {loaded[-1]['p99_ms']:.1f} ms "
                    f"({answered} large uploads answered)",
                    flush=True,
                )
    report = {
        "large_upload": {"side": LARGE_SIDE, "bytes": len(upload), "clients": UPLOADERS},
        "idle": median_round(idle),
        "loaded": median_round(loaded),
        "idle_rounds": idle,
        "loaded_rounds": loaded,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print_report(report)


def print_report(report: dict) -> None:
    idle, loaded = report["idle"], report["loaded"]
    print()
    print(
        f"/healthz, one gevent worker; {UPLOADERS} clients uploading a "
        f"{LARGE_SIDE}x{LARGE_SIDE} PNG ({report['large_upload']['bytes']:,} bytes) back to back"
    )
    print(f"{'':<24}{'probes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, row in (("idle (baseline)", idle), ("beside large uploads", loaded)):
        print(
            f"{name:<24}{row['probes']:>8}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['max_ms']:>9.1f}"
        )
    verdict = "met" if loaded["p99_ms"] <= TARGET_P99_MS else "NOT met"
    print(f"target: p99 <= {TARGET_P99_MS:.0f} ms beside large uploads: {verdict}")
    print(f"results: {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
