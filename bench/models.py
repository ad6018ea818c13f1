"""The models the benchmarks measure, and how a checkout without one gets one.

Two kinds of benchmark need two kinds of model:

- speed (``bench.gateway_bench``, ``bench.model_call_bench``, ``bench.batching_bench``):
  CPU per request and per model call depend on the architecture only, so any model of
  the default one in ``SPEED_MODEL_DIR`` will do; the first two train one epoch there
  when it holds none;
- accuracy (``bench.preprocess_bench``): the figure is only worth reporting for the model
  production would ship, the default CNN trained as ``python -m training`` trains it (full
  MNIST, the architecture's own epochs), seeded so that a rerun gives the same model.
  ``bench.train_bench`` exports its default-architecture model into
  ``ACCURACY_MODEL_DIR``; ``bench-preprocess`` trains one there when it holds none.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mnist_contract import DEFAULT_MODEL_DIR, available_versions

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEED_MODEL_DIR = REPO_ROOT / DEFAULT_MODEL_DIR
ACCURACY_MODEL_DIR = REPO_ROOT / ".cache" / "bench" / "models" / "mnist"
ACCURACY_MODEL_SEED = 1

SPEED_TRAINING_ARGS = ("--epochs", "1")
ACCURACY_TRAINING_ARGS = ("--seed", str(ACCURACY_MODEL_SEED))


def ensure_model(model_dir: Path, training_args: tuple[str, ...], what: str) -> None:
    """Train and export a model into ``model_dir`` unless it already holds a version."""
    if available_versions(model_dir):
        return
    print(f"No model in {model_dir}: training {what} (progress below).", flush=True)
    subprocess.run(
        [sys.executable, "-m", "training", "--export-dir", str(model_dir), *training_args],
        check=True,
    )
