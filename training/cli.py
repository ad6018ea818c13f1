"""Command line: load MNIST, train an architecture, refuse a weak model, export the rest."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from training.data import (
    DEFAULT_CACHE_DIR,
    DatasetError,
    Mnist,
    Split,
    default_data_dir,
    load_mnist,
)
from training.export import export_trained
from training.model import ARCHITECTURES, DEFAULT_ARCH
from training.train import make_reproducible, train

log = logging.getLogger("training")

EXIT_DATA_ERROR = 1
EXIT_BELOW_MIN_ACCURACY = 3

# --quick: a usable demo model in well under a minute on two CPU cores, for CI and `make run`
# on a fresh machine (about 97% test accuracy, measured on the first 1,000 test images).
QUICK_TRAIN_EXAMPLES = 6_000
QUICK_TEST_EXAMPLES = 1_000
QUICK_EPOCHS = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train an MNIST CNN and export it as the next TF Serving model version.",
    )
    parser.add_argument(
        "--export-dir", type=Path, required=True, help="model base dir; writes <dir>/<N>/"
    )
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHITECTURES),
        default=DEFAULT_ARCH,
        help="; ".join(f"{name}: {arch.description}" for name, arch in ARCHITECTURES.items())
        + " (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        help=f"default: the architecture's own; {QUICK_EPOCHS} with --quick",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument(
        "--seed",
        type=int,
        help="seed every RNG and use deterministic TF kernels: a reproducible run",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=0.0,
        help=f"export nothing and exit {EXIT_BELOW_MIN_ACCURACY} below this test accuracy",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="directory with the four IDX files, gzipped or not (default: $MNIST_DATA_DIR)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where downloaded files are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TRAIN_EXAMPLES} training and {QUICK_TEST_EXAMPLES} test images, "
        f"{QUICK_EPOCHS} epochs: a demo model in seconds",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[training] %(message)s", stream=sys.stderr)
    if args.seed is not None:
        make_reproducible(args.seed)

    log.info("loading MNIST (data dir: %s, cache: %s)", args.data_dir, args.cache_dir)
    try:
        mnist = load_mnist(args.data_dir, args.cache_dir)
    except DatasetError as error:
        log.error("cannot load MNIST: %s", error)
        return EXIT_DATA_ERROR
    train_split, test_split = _splits(mnist, quick=args.quick)
    epochs = args.epochs or _default_epochs(args.arch, quick=args.quick)

    log.info(
        "training %s for %d epochs on %d images (batch %d)",
        args.arch,
        epochs,
        len(train_split.images),
        args.batch_size,
    )
    trained = train(
        train_split,
        test_split,
        arch=args.arch,
        epochs=epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        # A live progress bar on a terminal; one line per epoch in logs (Jobs, CI, pipes).
        verbose=1 if sys.stdout.isatty() else 2,
    )
    log.info(
        "test accuracy %.4f on %d images after %.1f s of training",
        trained.test_accuracy,
        len(test_split.images),
        trained.train_seconds,
    )
    if trained.test_accuracy < args.min_accuracy:
        log.error(
            "test accuracy %.4f is below --min-accuracy %.4f: nothing exported",
            trained.test_accuracy,
            args.min_accuracy,
        )
        return EXIT_BELOW_MIN_ACCURACY

    log.info("exporting to %s", args.export_dir)
    path = export_trained(
        trained, args.export_dir, data_checksums=mnist.checksums, test_images=test_split.images
    )
    print(f"exported {path} (test accuracy {trained.test_accuracy:.4f})")
    return 0


def _default_epochs(arch: str, *, quick: bool) -> int:
    return QUICK_EPOCHS if quick else ARCHITECTURES[arch].default_epochs


def _splits(mnist: Mnist, *, quick: bool) -> tuple[Split, Split]:
    if quick:
        return mnist.train.head(QUICK_TRAIN_EXAMPLES), mnist.test.head(QUICK_TEST_EXAMPLES)
    return mnist.train, mnist.test
