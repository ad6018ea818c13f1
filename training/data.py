"""The MNIST database: find or download the four IDX files, verify them, parse them.

Files are looked up in ``data_dir`` (gzipped or raw), then in ``cache_dir``, and only then
downloaded from public mirrors into ``cache_dir``. Every copy is checked against the SHA-256
of its decompressed bytes, which is the same however the file was compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_contract import IMAGE_SIDE

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

# SHA-256 of the decompressed IDX bytes, as published with the shared offline copy.
SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Tried in order; each serves "<mirror><name>.gz". yann.lecun.com is no longer reliable.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

DEFAULT_CACHE_DIR = Path("~/.cache/mnist-serving/mnist").expanduser()
# An offline copy of the four files (CI and the benchmarks point it at one).
DATA_DIR_ENV = "MNIST_DATA_DIR"


# IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank.
_IDX_UBYTE = 0x08
_DOWNLOAD_TIMEOUT_SECONDS = 60


class DatasetError(Exception):
    """A dataset file is missing, corrupt or malformed. The message names the file."""


@dataclass(frozen=True)
class Split:
    """Images float32 [n, 28, 28, 1] in [0, 1] (white ink on black) and uint8 labels [n]."""

    images: np.ndarray
    labels: np.ndarray

    def head(self, count: int) -> Split:
        """The first ``count`` examples (MNIST's order is already well mixed across digits)."""
        return Split(images=self.images[:count], labels=self.labels[:count])


@dataclass(frozen=True)
class Mnist:
    train: Split
    test: Split
    # Decompressed SHA-256 of the four files (all verified), for provenance in metrics.json.
    checksums: Mapping[str, str]


def default_data_dir() -> Path | None:
    """The directory ``$MNIST_DATA_DIR`` names, or None (then the files are downloaded)."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value) if value else None


def load_mnist(
    data_dir: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    mirrors: Sequence[str] = MIRRORS,
    checksums: Mapping[str, str] = SHA256,
) -> Mnist:
    """Load both splits, downloading missing files into ``cache_dir``."""
    train, test = (
        load_split(images, labels, data_dir, cache_dir, mirrors=mirrors, checksums=checksums)
        for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS))
    )
    return Mnist(train=train, test=test, checksums=dict(checksums))


def load_split(
    images_name: str,
    labels_name: str,
    data_dir: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    mirrors: Sequence[str] = MIRRORS,
    checksums: Mapping[str, str] = SHA256,
) -> Split:
    """One split, e.g. ``load_split(TEST_IMAGES, TEST_LABELS, data_dir)``."""
    raw = {
        name: _read_verified(name, data_dir, cache_dir, mirrors, checksums[name])
        for name in (images_name, labels_name)
    }
    return _split(raw, images_name, labels_name)


def _split(raw: Mapping[str, bytes], images_name: str, labels_name: str) -> Split:
    # The checksums already pin the exact content; these checks make a test double (or a
    # future checksum mistake) fail with a message instead of a shape error deep in Keras.
    images = parse_idx(raw[images_name], images_name, rank=3)
    labels = parse_idx(raw[labels_name], labels_name, rank=1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DatasetError(f"{images_name}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels"
        )
    if labels.max(initial=0) > 9:
        raise DatasetError(f"{labels_name}: label {labels.max()} is not a digit")
    scaled = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    return Split(images=scaled, labels=labels)


def parse_idx(data: bytes, name: str, *, rank: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with the given rank; raise DatasetError naming it."""
    header_size = 4 + 4 * rank
    if len(data) < header_size:
        raise DatasetError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, dtype, actual_rank = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != _IDX_UBYTE or actual_rank != rank:
        raise DatasetError(
            f"{name}: bad IDX magic {data[:4].hex()}, expected 0000{_IDX_UBYTE:02x}{rank:02x}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetError(
            f"{name}: {len(data)} bytes but header {dims} needs {expected} (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_verified(
    name: str, data_dir: Path | None, cache_dir: Path, mirrors: Sequence[str], sha256: str
) -> bytes:
    """The decompressed bytes of ``name`` from the first place that has it, verified."""
    for directory in (data_dir, cache_dir):
        if directory is not None and (path := _find(Path(directory), name)) is not None:
            return _verified(_read_maybe_gzipped(path), path, sha256)
    return _download_verified(name, Path(cache_dir), mirrors, sha256)


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _read_maybe_gzipped(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a valid gzip file ({error})") from error


def _verified(data: bytes, path: Path, sha256: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise DatasetError(
            f"{path}: SHA-256 of the decompressed bytes is {actual}, expected {sha256}; "
            "delete the file to download it again"
        )
    return data


def _download_verified(name: str, cache_dir: Path, mirrors: Sequence[str], sha256: str) -> bytes:
    """Fetch ``name.gz`` into ``cache_dir`` from the first mirror that serves a valid copy."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        log.info("downloading %s", url)
        try:
            _fetch_to(url, target)
            return _verified(_read_maybe_gzipped(target), target, sha256)
        except (OSError, DatasetError) as error:  # URLError is an OSError
            # A bad copy must not be found in the cache next time.
            target.unlink(missing_ok=True)
            failures.append(f"{url}: {error}")
    raise DatasetError(
        f"{name}: no local copy, and no mirror served a valid one: {'; '.join(failures) or 'none'}"
    )


def _fetch_to(url: str, target: Path) -> None:
    # A partial download must never be mistaken for a cached file: write aside, then rename.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as part:
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response:
                shutil.copyfileobj(response, part)
        except BaseException:
            part.close()
            os.unlink(part.name)
            raise
    os.replace(part.name, target)
