"""`make bench-preprocess`: digit accuracy on realistic uploads, our pipeline vs a naive resize.

    python -m bench.preprocess_bench [--in-process] [--per-kind 200] [--model-dir DIR]

Builds the upload set of bench/uploads.py (MNIST test digits and UCI digits as scans, phone
photos, canvas exports, chalkboards and a spread of formats and modes), then, in one run
and with the same model version:

- ours: every upload POSTed as JSON base64 to a gateway started as a subprocess
  (``python -m gateway``, in-process model, SQLite in a temporary directory), end to end;
  with --in-process, gateway.pipeline.preprocess and the model are called directly instead;
- naive: bench/naive.py client-side, then the same model version in this process.

An upload the gateway rejects (say, no_digit_found) counts as wrong. Prints accuracy per
kind and overall, and the median time of gateway.pipeline.preprocess per upload ("ours ms", always
measured in this process).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from bench.models import (
    ACCURACY_MODEL_DIR,
    ACCURACY_MODEL_SEED,
    ACCURACY_TRAINING_ARGS,
    ensure_model,
)
from bench.naive import naive_preprocess
from bench.uploads import (
    KINDS,
    UCI_KINDS,
    Upload,
    build_uploads,
    load_mnist_digits,
    load_uci_digits,
    upsample_uci,
)
from gateway import errors
from gateway.config import Config
from gateway.pipeline.preprocess import normalise_like_mnist, preprocess
from gateway.predictors.saved_model import load_version
from mnist_contract import METRICS_FILE, available_versions
from tests.support.http import free_port, wait_until_ready

# What the bench counts for an upload the gateway refused.
REJECTED = -1
# Stay under the gateway's request limits (MAX_IMAGES_PER_REQUEST, MAX_UPLOAD_BYTES).
REQUEST_MAX_IMAGES = Config.max_images_per_request
REQUEST_MAX_BYTES = Config.max_upload_bytes // 2
MODEL_BATCH = 256


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=ACCURACY_MODEL_DIR,
        help="model base dir with numbered SavedModel versions; the highest is used. "
        "When it holds none, the default CNN is trained into it as production trains it "
        f"(full MNIST, --seed {ACCURACY_MODEL_SEED}; about 10 minutes on two cores)",
    )
    parser.add_argument("--per-kind", type=int, default=200, help="uploads of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="call the preprocessing and the model directly instead of the gateway over HTTP",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ensure_model(args.model_dir, ACCURACY_TRAINING_ARGS, "the default CNN on full MNIST")
    version = available_versions(args.model_dir)[-1]
    model = load_version(args.model_dir, version)
    print(f"model {args.model_dir}/{version}: {describe_training(args.model_dir / str(version))}")
    print(f"building {args.per_kind} uploads per kind")
    (mnist, mnist_labels), (uci, uci_labels) = load_mnist_digits(), load_uci_digits()
    uploads = build_uploads(
        mnist, mnist_labels, uci, uci_labels, per_kind=args.per_kind, seed=args.seed
    )

    ours_images, seconds = preprocess_timed(uploads)
    naive = classify(model, [naive_preprocess(upload.data) for upload in uploads])
    clean = classify(model, [clean_source(upload, mnist, uci) for upload in uploads])
    if args.in_process:
        ours, how = classify(model, ours_images), "in process"
    else:
        with running_gateway(args.model_dir) as url:
            ours, how = predict_over_http(url, uploads), "over HTTP"
    print(f"ours: {how}; naive: client-side resize; clean: the source digits, MNIST-format\n")
    print(accuracy_table(uploads, {"ours": ours, "naive": naive, "clean": clean}, seconds))


def describe_training(version_dir: Path) -> str:
    """How the model was trained and how it scored, from its metrics.json."""
    metrics = json.loads((version_dir / METRICS_FILE).read_text())
    epochs = metrics["epochs"]
    return (
        f"{metrics['arch']}, {epochs} epoch{'' if epochs == 1 else 's'} "
        f"on {metrics['train_examples']:,} images, "
        f"seed {metrics['seed']}, {metrics['test_accuracy']:.2%} on "
        f"{metrics['test_examples']:,} MNIST test images"
    )


def preprocess_timed(uploads: Sequence[Upload]) -> tuple[list[np.ndarray | None], list[float]]:
    """Our preprocessing of every upload (None when rejected) and its wall time."""
    images, seconds = [], []
    for upload in uploads:
        started = time.perf_counter()
        try:
            images.append(preprocess(upload.data, max_pixels=Config.max_image_pixels))
        except errors.GatewayError:
            images.append(None)
        seconds.append(time.perf_counter() - started)
    return images, seconds


def clean_source(upload: Upload, mnist: np.ndarray, uci: np.ndarray) -> np.ndarray:
    """The upload's handwritten digit before rendering, as a clean MNIST-format image: the
    model's ceiling for that upload (for UCI digits, upsampled and normalised like MNIST)."""
    if upload.kind in UCI_KINDS:
        return normalise_like_mnist(upsample_uci(uci[upload.source]) / np.float32(255))
    return mnist[upload.source] / np.float32(255)


def classify(model, images: Sequence[np.ndarray | None]) -> np.ndarray:
    """The model's digit for each image; REJECTED where there is no image."""
    digits = np.full(len(images), REJECTED)
    present = [index for index, image in enumerate(images) if image is not None]
    for start in range(0, len(present), MODEL_BATCH):
        chunk = present[start : start + MODEL_BATCH]
        batch = np.stack([images[index] for index in chunk])[..., np.newaxis]
        _, predicted = model(batch.astype(np.float32))
        digits[chunk] = predicted
    return digits


@contextmanager
def running_gateway(model_dir: Path) -> Iterator[str]:
    """``python -m gateway`` with the in-process model and a throwaway SQLite store."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="preprocess-bench-") as state:
        env = {
            **{name: value for name, value in os.environ.items() if name not in _REMOTE_ENV},
            "MODEL_DIR": str(model_dir.resolve()),
            "SQLITE_PATH": str(Path(state) / "predictions.sqlite3"),
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        log_path = Path(state) / "gateway.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, timeout=180, process=process, answers=8)
            yield url
        except BaseException:
            sys.stderr.write(f"--- gateway log ---\n{log_path.read_text(errors='replace')}")
            raise
        finally:
            process.terminate()
            process.wait(timeout=60)


# Settings that would point the gateway at Cassandra or TF Serving instead of local ones.
_REMOTE_ENV = ("CASSANDRA_HOSTS", "SERVING_URL")


def predict_over_http(url: str, uploads: Sequence[Upload]) -> np.ndarray:
    """The gateway's digit for each upload, in order; REJECTED for refused uploads.

    One bad image fails its whole request, so a refused request is retried image by image.
    """
    digits: list[int] = []
    with requests.Session() as session:
        for request in requests_of(uploads):
            answer = post_images(session, url, request)
            if answer is None:
                answer = [
                    (post_images(session, url, [upload]) or [REJECTED])[0] for upload in request
                ]
            digits += answer
    return np.array(digits)


def requests_of(uploads: Sequence[Upload]) -> Iterator[list[Upload]]:
    """Consecutive groups within the gateway's per-request image and size limits."""
    group: list[Upload] = []
    size = 0
    for upload in uploads:
        encoded_size = 4 * -(-len(upload.data) // 3)
        if group and (len(group) == REQUEST_MAX_IMAGES or size + encoded_size > REQUEST_MAX_BYTES):
            yield group
            group, size = [], 0
        group.append(upload)
        size += encoded_size
    if group:
        yield group


def post_images(session: requests.Session, url: str, uploads: Sequence[Upload]) -> list[int] | None:
    """The digits the gateway predicts for ``uploads``, or None if it refused the request."""
    body = {"images": [base64.b64encode(upload.data).decode("ascii") for upload in uploads]}
    response = session.post(f"{url}/api/v1/predictions", json=body, timeout=120)
    if 400 <= response.status_code < 500:
        return None
    response.raise_for_status()
    return [prediction["digit"] for prediction in response.json()["predictions"]]


def accuracy_table(
    uploads: Sequence[Upload], predictions: dict[str, np.ndarray], seconds: Sequence[float]
) -> str:
    """Accuracy (%) of each set of predictions per kind and overall, and our median ms."""
    labels = np.array([upload.label for upload in uploads])
    kinds = np.array([upload.kind for upload in uploads])
    header = "".join(f" {name + ' %':>8}" for name in predictions)
    lines = [f"{'kind':<15} {'n':>5}{header} {'ours ms':>8}"]
    for kind in [*KINDS, "overall"]:
        chosen = kinds == kind if kind != "overall" else np.ones(len(uploads), dtype=bool)
        accuracies = "".join(
            f" {100 * np.mean(digits[chosen] == labels[chosen]):>8.2f}"
            for digits in predictions.values()
        )
        milliseconds = 1000 * statistics.median(np.asarray(seconds)[chosen])
        lines.append(f"{kind:<15} {chosen.sum():>5}{accuracies} {milliseconds:>8.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
