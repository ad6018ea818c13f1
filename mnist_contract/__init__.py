"""The contract between training, TF Serving and the gateway, in one place.

Training writes models that honour it, TF Serving and the gateway's in-process predictor
load them by it, and the gateway's preprocessing produces its input. No TensorFlow here:
both images (the gateway's has no TensorFlow) import this package.

Model layout: versions live in ``<base>/<N>/``, ``N`` an integer that only grows. A
version is assembled under a dot-prefixed temporary name inside ``<base>`` and renamed
to ``N`` in one step, so a reader never sees it half-written.

Signature ``serving_default``: input ``image``, float32 ``[-1, 28, 28, 1]`` in [0, 1],
white ink on black; outputs ``probabilities`` (float32 ``[-1, 10]``) and ``digit``
(int64 ``[-1]``).
"""

from __future__ import annotations

from pathlib import Path

# The model's input: one greyscale MNIST-style image.
IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)
NUM_CLASSES = 10

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "image"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_DIGIT = "digit"

SAVED_MODEL_FILE = "saved_model.pb"
METRICS_FILE = "metrics.json"
STAGING_PREFIX = ".tmp-"

MODEL_NAME = "mnist"
# Where a checkout keeps its local models (make run, the benchmarks), relative to its root.
DEFAULT_MODEL_DIR = Path(".cache/models") / MODEL_NAME


def is_version_name(name: str) -> bool:
    """TF Serving's rule: a version directory's name is all ASCII digits."""
    return name.isascii() and name.isdigit()


def version_numbers(base_dir: Path) -> list[int]:
    """Every version-named directory under ``base_dir``, complete or not, ascending."""
    try:
        entries = list(Path(base_dir).iterdir())
    except FileNotFoundError:
        return []
    return sorted(int(entry.name) for entry in entries if is_version_name(entry.name))


def available_versions(base_dir: Path) -> list[int]:
    """The versions under ``base_dir`` that hold a SavedModel, ascending."""
    return [
        version
        for version in version_numbers(base_dir)
        if (Path(base_dir) / str(version) / SAVED_MODEL_FILE).is_file()
    ]


# A training run's result: one JSON object that `python -m training --result-file` writes and
# mnistctl reads. In a Kubernetes container the file is the container's termination message
# (the kubelet keeps it in the pod's status, readable through the API without exec'ing into
# anything), so it must stay under the kubelet's 4096-byte limit.
TERMINATION_LOG = Path("/dev/termination-log")
RESULT_MAX_BYTES = 4096
RESULT_EXPORTED = "exported"  # {"result", "version", "test_accuracy", "min_accuracy", ...}
RESULT_REFUSED = "refused"  # below --min-accuracy, or a feedback regression ("reason")
RESULT_DATA_ERROR = "data_error"  # MNIST could not be loaded: {"result", "error"}
