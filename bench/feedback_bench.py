"""`make bench-feedback`: does labelling what the model reads badly make the next model better?

    python -m bench.feedback_bench [--feedback-uploads 400] [--held-out 500] [--measure-only]

The loop, end to end, as a user and the one-machine mode would run it:

1. the model production would ship (``bench.models.ACCURACY_MODEL_DIR``, trained there when
   the checkout has none) is copied as version 1 of a fresh model dir, and served by
   ``python -m gateway`` (in-process model, a fresh SQLite store);
2. a held-out set of seven-segment display digits (``bench.printed.segment_uploads``, its
   own seed) goes through the API: accuracy before;
3. a separate set of the same kind goes through the API, and each prediction is labelled
   with the true digit through the feedback API;
4. ``python -m training --feedback`` reads that store (SQLITE_PATH, as ``make retrain``
   does), trains on MNIST plus the feedback with the production recipe (the default CNN,
   ``--seed 1``) and exports version 2 unless the gate refuses it;
5. once the gateway serves version 2, the held-out set goes through the API again.

Reports accuracy on the held-out printed digits and on MNIST test (each version's
metrics.json, all 10,000 images) before and after. ``--measure-only`` instead prints how
the current model reads each candidate kind, in process: why seven-segment digits were
chosen (printed digits in the DejaVu faces, the first candidate, are read well by a model
trained on full MNIST: 98.4% with one epoch; a display's 6 is read as another digit).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from bench.models import ACCURACY_MODEL_DIR, ACCURACY_TRAINING_ARGS, REPO_ROOT, ensure_model
from bench.preprocess_bench import REJECTED, classify, requests_of
from bench.printed import font_paths, printed_uploads, segment_uploads
from bench.uploads import Upload, build_uploads, load_mnist_digits, load_uci_digits
from gateway import errors
from gateway.config import Config
from gateway.pipeline.preprocess import preprocess
from gateway.predictors.saved_model import load_version
from mnist_contract import METRICS_FILE, available_versions
from tests.support.http import free_port, wait_until_ready
from tests.support.waiting import wait_until

WORK_DIR = REPO_ROOT / ".cache" / "bench" / "feedback"
RESULT_FILE = REPO_ROOT / ".cache" / "bench" / "feedback.json"
KIND = "seven-segment display digits (meters, clocks, scales), scanned or photographed"
FEEDBACK_SEED, HELD_OUT_SEED = 1, 2
MIN_MNIST_ACCURACY = 0.995
# Settings that would point the gateway or training at Cassandra or TF Serving.
_REMOTE_ENV = ("CASSANDRA_HOSTS", "SERVING_URL")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feedback-uploads", type=int, default=400)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument(
        "--epochs",
        type=int,
        help="train both versions for this many epochs instead of the architecture's own "
        "(a quicker, weaker recipe; its base model is kept beside the production one)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=MIN_MNIST_ACCURACY,
        help="retraining's MNIST gate (default: %(default)s, the target)",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="print how the current model reads each candidate kind (in process), and stop",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    base_dir, training_args = ACCURACY_MODEL_DIR, ACCURACY_TRAINING_ARGS
    if args.epochs is not None:
        base_dir = ACCURACY_MODEL_DIR.with_name(f"mnist-{args.epochs}-epochs")
        training_args = (*training_args, "--epochs", str(args.epochs))
    ensure_model(base_dir, training_args, "the default CNN on full MNIST")
    if args.measure_only:
        measure_candidates(base_dir)
        return
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    models, store = WORK_DIR / "models", WORK_DIR / "predictions.sqlite3"
    base = base_dir / str(available_versions(base_dir)[-1])
    shutil.copytree(base, models / "1")
    held_out = segment_uploads(args.held_out, HELD_OUT_SEED)
    feedback = segment_uploads(args.feedback_uploads, FEEDBACK_SEED)
    print(f"kind: {KIND}")
    print(f"base model: {base} ({mnist_accuracy(models / '1'):.2%} on MNIST test)")

    with running_gateway(models, store) as url, requests.Session() as session:
        before = predict(session, url, held_out)
        print(f"held-out, before: {accuracy(before, held_out):.2%} (version {versions(before)})")
        sent = predict(session, url, feedback)
        for upload, prediction in zip(feedback, sent, strict=True):
            if prediction is not None:
                label(session, url, prediction["id"], upload.label)
        labelled = sum(prediction is not None for prediction in sent)
        print(f"feedback: {labelled} predictions labelled through the API")

        code, train_seconds = retrain(
            models, store, (*training_args, "--min-accuracy", str(args.min_accuracy))
        )
        if code != 0:
            print(f"retraining exported nothing (exit {code}): see its log above")
            write_result(before=before, held_out=held_out, models=models, exit_code=code)
            raise SystemExit(1)
        new_version = available_versions(models)[-1]
        wait_until(
            lambda: versions(predict(session, url, held_out[:1])) == {str(new_version)},
            timeout=300,
            interval=1.0,
            what=f"the gateway serving version {new_version}",
        )
        after = predict(session, url, held_out)

    print()
    print(report(before, after, held_out, models, new_version, labelled, train_seconds))
    write_result(
        before=before,
        after=after,
        held_out=held_out,
        models=models,
        exit_code=0,
        train_seconds=train_seconds,
        labelled=labelled,
    )


# --- the gateway, through its API ----------------------------------------------------------


@contextmanager
def running_gateway(model_dir: Path, sqlite_path: Path) -> Iterator[str]:
    """``python -m gateway`` with the in-process model and ``sqlite_path`` as its store."""
    port = free_port()
    env = {
        **{name: value for name, value in os.environ.items() if name not in _REMOTE_ENV},
        "MODEL_DIR": str(model_dir),
        "SQLITE_PATH": str(sqlite_path),
        "MODEL_POLL_SECONDS": "1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    log_path = WORK_DIR / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=180, process=process)
        yield url
    except BaseException:
        sys.stderr.write(f"--- gateway log ---\n{log_path.read_text(errors='replace')}")
        raise
    finally:
        process.terminate()
        process.wait(timeout=60)


def predict(session: requests.Session, url: str, uploads: Sequence[Upload]) -> list[dict | None]:
    """The gateway's prediction for each upload, in order; None for an upload it refused."""
    predictions: list[dict | None] = []
    for request in requests_of(uploads):
        answer = post(session, url, request)
        if answer is None:  # one bad image fails its request: retry one by one
            answer = [(post(session, url, [upload]) or [None])[0] for upload in request]
        predictions += answer
    return predictions


def post(session: requests.Session, url: str, uploads: Sequence[Upload]) -> list[dict] | None:
    body = {"images": [base64.b64encode(upload.data).decode("ascii") for upload in uploads]}
    response = session.post(f"{url}/api/v1/predictions", json=body, timeout=120)
    if 400 <= response.status_code < 500:
        return None
    response.raise_for_status()
    return response.json()["predictions"]


def label(session: requests.Session, url: str, prediction_id: str, digit: int) -> None:
    response = session.post(
        f"{url}/api/v1/predictions/{prediction_id}/feedback", json={"label": digit}, timeout=60
    )
    response.raise_for_status()


def retrain(models: Path, store: Path, training_args: Sequence[str]) -> tuple[int, float]:
    """``python -m training --feedback`` against the bench's store, as ``make retrain`` runs
    it against the one-machine store; its exit code and wall time."""
    env = {
        **{name: value for name, value in os.environ.items() if name not in _REMOTE_ENV},
        "SQLITE_PATH": str(store),
    }
    command = [
        sys.executable,
        "-m",
        "training",
        "--export-dir",
        str(models),
        "--feedback",
        *training_args,
    ]
    print(f"retraining: {' '.join(command[1:])} (progress below)", flush=True)
    started = time.monotonic()
    code = subprocess.run(command, env=env, check=False).returncode
    return code, time.monotonic() - started


# --- figures -------------------------------------------------------------------------------


def digits(predictions: Sequence[dict | None]) -> np.ndarray:
    return np.array([REJECTED if p is None else p["digit"] for p in predictions])


def accuracy(predictions: Sequence[dict | None], uploads: Sequence[Upload]) -> float:
    return float(np.mean(digits(predictions) == np.array([u.label for u in uploads])))


def versions(predictions: Sequence[dict | None]) -> set[str]:
    return {p["model_version"] for p in predictions if p is not None}


def metrics_of(version_dir: Path) -> dict:
    return json.loads((version_dir / METRICS_FILE).read_text())


def mnist_accuracy(version_dir: Path) -> float:
    return metrics_of(version_dir)["test_accuracy"]


def report(
    before: Sequence[dict | None],
    after: Sequence[dict | None],
    held_out: Sequence[Upload],
    models: Path,
    new_version: int,
    labelled: int,
    train_seconds: float,
) -> str:
    old, new = metrics_of(models / "1"), metrics_of(models / str(new_version))
    section = new["feedback"]
    rows = [
        (
            "seven-segment, held out",
            len(held_out),
            accuracy(before, held_out),
            accuracy(after, held_out),
        ),
        ("MNIST test", new["test_examples"], old["test_accuracy"], new["test_accuracy"]),
    ]
    lines = [f"{'':<26} {'n':>6} {'v1 %':>8} {f'v{new_version} %':>8} {'change':>8}"]
    for name, count, first, second in rows:
        lines.append(
            f"{name:<26} {count:>6} {100 * first:>8.2f} {100 * second:>8.2f} "
            f"{100 * (second - first):>+8.2f}"
        )
    compared = section["compared_against"] or {}
    lines += [
        "",
        f"feedback: {labelled} labelled through the API; {section['train_examples']} trained on "
        f"(weighing {section['train_weight_total']:.0f} MNIST images), "
        f"{section['holdout_examples']} held out by id",
        f"feedback holdout: v{new_version} {section['holdout_accuracy']:.2%}, "
        f"v{compared.get('version', '-')} {compared.get('holdout_accuracy', float('nan')):.2%}",
        f"retraining: {train_seconds / 60:.1f} min wall; snapshot {section['snapshot']}",
        "accuracy of labelled predictions per version (metrics.json): "
        + ", ".join(
            f"v{v} {s['correct']}/{s['labelled']}"
            for v, s in section["accuracy_by_model_version"].items()
        ),
    ]
    return "\n".join(lines)


def write_result(*, before, held_out, models, exit_code, after=None, **extra) -> None:
    result = {
        "kind": KIND,
        "held_out": len(held_out),
        "held_out_accuracy_before": accuracy(before, held_out),
        "held_out_accuracy_after": None if after is None else accuracy(after, held_out),
        "versions": {v: metrics_of(models / str(v)) for v in available_versions(models)},
        "retraining_exit_code": exit_code,
        **extra,
    }
    RESULT_FILE.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresult: {RESULT_FILE}")


# --- choosing the kind ---------------------------------------------------------------------


def measure_candidates(model_dir: Path, per_kind: int = 300) -> None:
    """How the current model reads each candidate kind, in process (preprocess + model)."""
    model = load_version(model_dir, available_versions(model_dir)[-1])
    fonts = font_paths()
    (mnist, mnist_labels), (uci, uci_labels) = load_mnist_digits(), load_uci_digits()
    handwriting = build_uploads(mnist, mnist_labels, uci, uci_labels, per_kind=per_kind, seed=0)
    candidates: dict[str, list[Upload]] = {}
    for upload in handwriting:
        candidates.setdefault(upload.kind, []).append(upload)
    candidates["seven_segment"] = segment_uploads(per_kind, HELD_OUT_SEED)
    printed = printed_uploads(per_kind * 2, HELD_OUT_SEED, fonts)
    candidates["printed (all faces)"] = printed
    for family in ("Sans-", "Sans.", "SansCondensed", "SansMono", "Serif-", "Serif.", "SerifCon"):
        chosen = [u for u in printed if family in fonts[u.source].name]
        candidates[f"printed {family.strip('.-')}"] = chosen
    print(f"{'candidate kind':<28} {'n':>5} {'accuracy %':>11}")
    for kind, uploads in candidates.items():
        images = []
        for upload in uploads:
            try:
                images.append(preprocess(upload.data, max_pixels=Config.max_image_pixels))
            except errors.GatewayError:
                images.append(None)
        predicted = classify(model, images)
        correct = np.mean(predicted == np.array([u.label for u in uploads]))
        print(f"{kind:<28} {len(uploads):>5} {100 * correct:>11.2f}")


if __name__ == "__main__":
    main()
