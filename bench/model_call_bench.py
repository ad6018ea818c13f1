"""`make bench-model`: the CPU cost of one model call, by batch size, on one thread.

Compares, in one run on one model version:
- the baseline: the SavedModel's serving signature called eagerly, as
  ``tf.saved_model.load(...).signatures["serving_default"](image=...)`` does;
- the in-process predictor's call (``gateway.predictors.saved_model.load_version``): the
  same signature with its variables folded into constants, run as a session callable.

Both run with TensorFlow on one thread, as each gateway worker does (``MODEL_THREADS``),
in alternating rounds. It prints the median CPU time per call of each and the median of
the per-round savings; the outputs of the two are checked to agree first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.models import SPEED_MODEL_DIR, SPEED_TRAINING_ARGS, ensure_model
from gateway.predictors.saved_model import (
    available_versions,
    limit_tensorflow_threads,
    load_version,
)
from mnist_contract import INPUT_NAME, OUTPUT_DIGIT, OUTPUT_PROBABILITIES, SIGNATURE_NAME

BATCH_SIZES = (1, 2, 4, 8, 16, 64)
# Enough calls per round that the process clock's resolution does not matter.
IMAGES_PER_ROUND = 1024

Call = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=SPEED_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=7)
    return parser.parse_args()


def eager_signature(model_dir: Path, version: int) -> tuple[object, Call]:
    import tensorflow as tf

    saved_model = tf.saved_model.load(str(model_dir / str(version)))
    signature = saved_model.signatures[SIGNATURE_NAME]

    def call(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = signature(**{INPUT_NAME: tf.constant(images)})
        return outputs[OUTPUT_PROBABILITIES].numpy(), outputs[OUTPUT_DIGIT].numpy()

    # The caller keeps the loaded object: the signature only references its variables.
    return saved_model, call


def cpu_ms_per_call(call: Call, images: np.ndarray) -> float:
    """One round: the mean CPU time of a call, over enough calls for the clock."""
    calls = max(1, IMAGES_PER_ROUND // len(images))
    started = time.process_time()
    for _ in range(calls):
        call(images)
    return (time.process_time() - started) / calls * 1000


def compare(baseline: Call, candidate: Call, images: np.ndarray, rounds: int) -> tuple:
    """Median CPU ms per call of each, and the median of the per-round savings.

    The two alternate round by round: a shared machine's speed drifts over minutes, and a
    saving is only measured fairly against a baseline run at the same moment.
    """
    for call in (baseline, candidate):
        for _ in range(20):
            call(images)  # warm-up: per-shape set-up happens on the first calls
    pairs = [(cpu_ms_per_call(baseline, images), cpu_ms_per_call(candidate, images))
             for _ in range(rounds)]  # fmt: skip
    before, after = zip(*pairs, strict=True)
    saved = statistics.median(1 - a / b for b, a in pairs)
    return statistics.median(before), statistics.median(after), saved


def main() -> None:
    args = parse_args()
    ensure_model(args.model_dir, SPEED_TRAINING_ARGS, "one for the benchmark")
    version = available_versions(args.model_dir)[-1]
    limit_tensorflow_threads(1)
    _keep, baseline = eager_signature(args.model_dir, version)
    predictor_call = load_version(args.model_dir, version, threads=1)
    rng = np.random.default_rng(0)

    print(f"model {args.model_dir}/{version}, one thread, CPU ms per call")
    print(f"(medians of {args.rounds} alternating rounds)")
    print(f"{'images':>6} {'eager signature':>16} {'predictor':>10} {'saved':>6}")
    for size in BATCH_SIZES:
        images = rng.random((size, 28, 28, 1), dtype=np.float32)
        expected, got = baseline(images), predictor_call(images)
        np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
        np.testing.assert_array_equal(got[1], expected[1])
        before, after, saved = compare(baseline, predictor_call, images, args.rounds)
        print(f"{size:>6} {before:>16.3f} {after:>10.3f} {saved:>6.0%}")


if __name__ == "__main__":
    main()
