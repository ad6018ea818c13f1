"""Command line: load MNIST, train an architecture, refuse a weak model, export the rest."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_contract import (
    RESULT_DATA_ERROR,
    RESULT_EXPORTED,
    RESULT_MAX_BYTES,
    RESULT_REFUSED,
    TERMINATION_LOG,
)
from training.data import (
    DEFAULT_CACHE_DIR,
    DatasetError,
    Mnist,
    Split,
    default_data_dir,
    load_mnist,
)
from training.export import export_trained
from training.feedback import (
    DEFAULT_HOLDOUT_PERCENT,
    DEFAULT_MAX_SHARE,
    DEFAULT_WEIGHT,
    Feedback,
    feedback_metrics,
    feedback_weights,
    open_configured_store,
    read_feedback,
    saved_model_digits,
    serving_version,
)
from training.model import ARCHITECTURES, DEFAULT_ARCH
from training.train import TrainedModel, accuracy, make_reproducible, train

log = logging.getLogger("training")

EXIT_DATA_ERROR = 1
EXIT_BELOW_MIN_ACCURACY = 3
# The new version reads the feedback holdout worse than the version it would replace.
EXIT_FEEDBACK_REGRESSION = 4

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
        "--result-file",
        type=Path,
        default=TERMINATION_LOG if TERMINATION_LOG.exists() else None,
        help="write the run's result (exported version and accuracy, or why not) there as JSON "
        "(default: %(default)s, the container's termination message in a Kubernetes pod)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TRAIN_EXAMPLES} training and {QUICK_TEST_EXAMPLES} test images, "
        f"{QUICK_EPOCHS} epochs: a demo model in seconds",
    )
    feedback = parser.add_argument_group(
        "feedback",
        "train on the predictions users labelled too, read from the store the gateway writes "
        "(its environment: CASSANDRA_* or SQLITE_PATH, see docs/configuration.md); a share of "
        "them, chosen by id, is held out, and the run exports nothing unless it reads that "
        "holdout at least as well as the version it would replace",
    )
    feedback.add_argument(
        "--feedback", action="store_true", help="read labelled predictions from the store"
    )
    feedback.add_argument(
        "--holdout-percent",
        type=_percent,
        default=DEFAULT_HOLDOUT_PERCENT,
        help="share of the feedback held out, by id (default: %(default)s)",
    )
    feedback.add_argument(
        "--feedback-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        help="what one feedback example weighs against one MNIST image (default: %(default)s)",
    )
    feedback.add_argument(
        "--feedback-max-share",
        type=float,
        default=DEFAULT_MAX_SHARE,
        help="per digit, the feedback claiming it weighs at most this share of MNIST's "
        "training images of it, whatever its count: a burst of wrong labels stays noise "
        "(default: %(default)s)",
    )
    feedback.add_argument(
        "--compare-version",
        type=_positive_int,
        help="the version to beat on the holdout (default: the newest in --export-dir, "
        "the one serving loads)",
    )
    return parser.parse_args(argv)


def _percent(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0-100, got {value}")
    return value


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
        _write_result(args.result_file, result=RESULT_DATA_ERROR, error=str(error)[:1000])
        return EXIT_DATA_ERROR
    train_split, test_split = _splits(mnist, quick=args.quick)
    feedback, weights, by_source = None, None, {"mnist": len(train_split.labels)}
    if args.feedback:
        feedback = _read_feedback(args.holdout_percent)
        if feedback is None:
            return EXIT_DATA_ERROR
        train_split, weights = _with_feedback(train_split, feedback, args)
        by_source["feedback"] = len(feedback.train.labels)
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
        sample_weight=weights,
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
        _write_result(args.result_file, result=RESULT_REFUSED, **_summary(trained, args, epochs))
        return EXIT_BELOW_MIN_ACCURACY

    extra_metrics: dict[str, object] = {"train_examples_by_source": by_source}
    if feedback is not None:
        section, refusal = _holdout_gate(trained, feedback, weights, args)
        extra_metrics["feedback"] = section
        if refusal:
            log.error("%s: nothing exported", refusal)
            _write_result(
                args.result_file,
                result=RESULT_REFUSED,
                reason=refusal,
                **_summary(trained, args, epochs),
            )
            return EXIT_FEEDBACK_REGRESSION

    log.info("exporting to %s", args.export_dir)
    path = export_trained(
        trained,
        args.export_dir,
        data_checksums=mnist.checksums,
        test_images=test_split.images,
        extra_metrics=extra_metrics,
    )
    print(f"exported {path} (test accuracy {trained.test_accuracy:.4f})")
    _write_result(
        args.result_file,
        result=RESULT_EXPORTED,
        version=int(path.name),
        **_summary(trained, args, epochs),
    )
    return 0


def _summary(trained, args: argparse.Namespace, epochs: int) -> dict:
    return {
        "test_accuracy": round(float(trained.test_accuracy), 6),
        "min_accuracy": args.min_accuracy,
        "arch": args.arch,
        "epochs": epochs,
        "train_seconds": round(float(trained.train_seconds), 2),
    }


def _write_result(path: Path | None, **result) -> None:
    """The run's result as one JSON line (see mnist_contract: RESULT_*); a failure to write it
    is logged, never fatal: the model and the exit code matter more."""
    if path is None:
        return
    text = json.dumps(result, sort_keys=True)
    if len(text.encode()) > RESULT_MAX_BYTES:
        raise ValueError(f"training result over {RESULT_MAX_BYTES} bytes: {text[:200]}")
    try:
        path.write_text(text + "\n")
    except OSError as error:
        log.warning("cannot write the result to %s: %s", path, error)


def _default_epochs(arch: str, *, quick: bool) -> int:
    return QUICK_EPOCHS if quick else ARCHITECTURES[arch].default_epochs


def _splits(mnist: Mnist, *, quick: bool) -> tuple[Split, Split]:
    if quick:
        return mnist.train.head(QUICK_TRAIN_EXAMPLES), mnist.test.head(QUICK_TEST_EXAMPLES)
    return mnist.train, mnist.test


def _read_feedback(holdout_percent: int) -> Feedback | None:
    """The store's labelled predictions, split; None (logged) when they cannot be read."""
    # The gateway's modules: only a run with feedback needs them (and the Cassandra driver).
    from gateway.config import ConfigError
    from gateway.errors import StoreUnavailable

    try:
        store, source = open_configured_store()
    except ConfigError as error:
        log.error("cannot read feedback: %s", error)
        return None
    log.info("reading labelled predictions from %s", source)
    try:
        feedback = read_feedback(store, source, holdout_percent=holdout_percent)
    except StoreUnavailable as error:
        log.error("cannot read feedback: %s", error.message)
        return None
    finally:
        store.close()
    log.info(
        "feedback: %d labelled (%d to train on, %d held out), newest label %s",
        feedback.labelled,
        len(feedback.train.labels),
        len(feedback.holdout.labels),
        feedback.snapshot.isoformat() if feedback.snapshot else "none",
    )
    return feedback


def _with_feedback(train_split: Split, feedback: Feedback, args: argparse.Namespace):
    """MNIST's training split with the feedback's train side appended, and every weight."""
    weights = feedback_weights(
        feedback.train.labels,
        train_split.labels,
        weight=args.feedback_weight,
        max_share=args.feedback_max_share,
    )
    log.info(
        "feedback weighs %.1f MNIST images in all (%.2f-%.2f each)",
        weights.sum(),
        weights.min(initial=math.inf) if len(weights) else 0.0,
        weights.max(initial=0.0),
    )
    combined = Split(
        images=np.concatenate([train_split.images, feedback.train.images]),
        labels=np.concatenate([train_split.labels, feedback.train.labels]),
    )
    all_weights = np.concatenate([np.ones(len(train_split.labels), np.float32), weights])
    return combined, all_weights


def _holdout_gate(
    trained: TrainedModel, feedback: Feedback, weights: np.ndarray, args: argparse.Namespace
) -> tuple[dict, str | None]:
    """The metrics.json feedback section, and why not to export (None: export).

    The new version must read the holdout at least as well as the version it would replace
    read the same examples. Without a holdout or an earlier version there is nothing to
    compare, and MNIST's minimum is the only gate.
    """
    holdout_accuracy = accuracy(trained.model, feedback.holdout)
    version = args.compare_version or serving_version(args.export_dir)
    compared, refusal = None, None
    if version is not None and holdout_accuracy is not None:
        digits = saved_model_digits(args.export_dir / str(version), feedback.holdout.images)
        theirs = float(np.mean(digits == feedback.holdout.labels))
        compared = {"version": version, "holdout_accuracy": theirs}
        log.info(
            "feedback holdout (%d examples): %.4f, version %d: %.4f",
            len(feedback.holdout.labels),
            holdout_accuracy,
            version,
            theirs,
        )
        if holdout_accuracy < theirs:
            refusal = (
                f"feedback holdout accuracy {holdout_accuracy:.4f} is below version "
                f"{version}'s {theirs:.4f} on the same {len(feedback.holdout.labels)} examples"
            )
    section = feedback_metrics(
        feedback,
        holdout_percent=args.holdout_percent,
        weights=weights[len(weights) - len(feedback.train.labels) :],
        holdout_accuracy=holdout_accuracy,
        compared_against=compared,
    )
    return section, refusal
