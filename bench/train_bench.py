"""Train the default architecture and the 2019 one on full MNIST; print accuracy and time.

Run with ``make bench-train`` (MNIST_DATA_DIR is exported by the Makefile when the offline
copy exists). Wall time depends on what else the CPU is doing, so the table also reports the
process's CPU time (training and test, all threads), which contention does not inflate.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.models import ACCURACY_MODEL_DIR, ACCURACY_MODEL_SEED
from training.data import default_data_dir, load_mnist
from training.export import export_trained
from training.model import ARCHITECTURES, DEFAULT_ARCH
from training.train import TrainedModel, make_reproducible, train

# The 2019 project trained 20,000 steps of 50 images (about 17 epochs) to reach 99.21%.
# Five epochs with the same optimizer show where it stands on a budget like ours.
SEED_EPOCHS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=[DEFAULT_ARCH, "seed"])
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"for every arch (default: the arch's own; {SEED_EPOCHS} for seed)",
    )
    parser.add_argument("--seed", type=int, default=ACCURACY_MODEL_SEED)
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=ACCURACY_MODEL_DIR,
        help=f"where the {DEFAULT_ARCH} model is exported: the model bench-preprocess measures",
    )
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    return parser.parse_args()


def epochs_for(arch: str, override: int | None) -> int:
    if override is not None:
        return override
    return SEED_EPOCHS if arch == "seed" else ARCHITECTURES[arch].default_epochs


def print_row(result: TrainedModel, cpu_seconds: float) -> None:
    print(
        f"| {result.arch} | {result.epochs} | {result.test_accuracy:.2%} "
        f"| {result.train_seconds / 60:.1f} min | {cpu_seconds / 60:.1f} min "
        f"| {result.parameter_count:,} |",
        flush=True,
    )


def main() -> None:
    args = parse_args()
    make_reproducible(args.seed)
    mnist = load_mnist(args.data_dir)
    print(f"CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for arch in args.archs:
        epochs = epochs_for(arch, args.epochs)
        print(f"training {arch} for {epochs} epochs ...", flush=True)
        cpu_started = time.process_time()
        result = train(mnist.train, mnist.test, arch=arch, epochs=epochs, seed=args.seed, verbose=2)
        rows.append((result, time.process_time() - cpu_started))
        print(f"{arch}: test accuracy {result.test_accuracy:.2%}", flush=True)
        if arch == DEFAULT_ARCH:
            path = export_trained(
                result,
                args.export_dir,
                data_checksums=mnist.checksums,
                test_images=mnist.test.images,
            )
            print(f"exported {path}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print("| arch | epochs | test accuracy | train wall time | CPU time | params |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result, cpu_seconds in rows:
        print_row(result, cpu_seconds)


if __name__ == "__main__":
    main()
