"""Micro-batching at the predictor: one image per call, direct vs batched, by concurrency.

Runs the in-process predictor on a model base directory (``--model-dir``, e.g. what
``make run`` trains) from N threads, each predicting one real MNIST test image per call
in a closed loop, as a gunicorn worker's concurrent requests do. Prints calls/s and latency
percentiles for the bare predictor and for the micro-batcher with several windows.

    .venv/bin/python bench/batching_bench.py --model-dir .cache/models/mnist
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from bench.models import SPEED_MODEL_DIR
from gateway.predictors.base import Predictor
from gateway.predictors.batching import MicroBatcher
from gateway.predictors.saved_model import SavedModelPredictor
from training.data import TEST_IMAGES, TEST_LABELS, default_data_dir, load_split


def closed_loop(
    predictor: Predictor, images: np.ndarray, threads: int, seconds: float
) -> tuple[float, float, float]:
    """Calls/s, p50 ms, p99 ms with ``threads`` callers predicting one image at a time."""
    latencies: list[float] = []
    end = time.monotonic() + seconds

    def caller(offset: int) -> None:
        index = offset
        while time.monotonic() < end:
            started = time.perf_counter()
            predictor.predict(images[index % len(images)][np.newaxis])
            latencies.append(time.perf_counter() - started)
            index += threads

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return len(latencies) / elapsed, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=SPEED_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--windows-ms", type=float, nargs="+", default=[0.0, 2.0, 5.0])
    args = parser.parse_args()

    images = load_split(TEST_IMAGES, TEST_LABELS, default_data_dir()).images[:512]
    model = SavedModelPredictor(args.model_dir, model_name="mnist", poll_seconds=3600)
    if not model.status().ready:
        raise SystemExit(model.status().detail)
    for threads in args.threads:
        setups: dict[str, Predictor] = {"direct": model}
        for window in args.windows_ms:
            batcher = MicroBatcher(model, max_size=64, window_seconds=window / 1000)
            setups[f"batched, window {window:g} ms"] = batcher
        for name, predictor in setups.items():
            rate, p50, p99 = closed_loop(predictor, images, threads, args.seconds)
            print(
                f"{threads:3d} threads  {name:24s} {rate:7.0f} calls/s  "
                f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
