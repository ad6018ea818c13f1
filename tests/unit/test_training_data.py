"""The MNIST loader: real files, a small fake dataset on disk and over local HTTP."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from training.data import (
    SHA256,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetError,
    load_mnist,
    load_split,
    parse_idx,
)

FAKE_COUNTS = {TRAIN_IMAGES: 6, TRAIN_LABELS: 6, TEST_IMAGES: 4, TEST_LABELS: 4}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        dim.to_bytes(4, "big") for dim in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def fake_idx_files() -> dict[str, bytes]:
    """Four small, valid IDX files with distinct contents."""
    rng = np.random.default_rng(7)
    files = {}
    for name, count in FAKE_COUNTS.items():
        if "images" in name:
            files[name] = idx_bytes(rng.integers(0, 256, (count, 28, 28)))
        else:
            files[name] = idx_bytes(np.arange(count) % 10)
    return files


def checksums_of(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def write_dataset(directory: Path, files: dict[str, bytes], *, gzipped: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if gzipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def load_offline(data_dir: Path, files: dict[str, bytes], cache_dir: Path):
    return load_mnist(data_dir, cache_dir, mirrors=(), checksums=checksums_of(files))


@pytest.fixture(scope="module")
def real_mnist(mnist_data_dir):
    return load_mnist(mnist_data_dir, mirrors=())


def test_real_mnist_matches_the_published_facts(real_mnist):
    train, test = real_mnist.train, real_mnist.test
    assert train.images.shape == (60_000, 28, 28, 1)
    assert test.images.shape == (10_000, 28, 28, 1)
    assert train.images.dtype == np.float32
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert train.images.mean() == pytest.approx(0.1307, abs=1e-4)
    assert train.images.std() == pytest.approx(0.3081, abs=1e-4)
    expected_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(test.labels).tolist() == expected_counts
    assert real_mnist.checksums == SHA256


def test_gzipped_and_raw_files_load_identically(tmp_path):
    files = fake_idx_files()
    write_dataset(tmp_path / "gz", files, gzipped=True)
    write_dataset(tmp_path / "raw", files, gzipped=False)
    from_gz = load_offline(tmp_path / "gz", files, tmp_path / "cache")
    from_raw = load_offline(tmp_path / "raw", files, tmp_path / "cache")
    assert from_gz.train.images.shape == (6, 28, 28, 1)
    assert from_gz.test.labels.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(from_gz.train.images, from_raw.train.images)
    np.testing.assert_array_equal(from_gz.test.labels, from_raw.test.labels)


def test_pixels_are_scaled_to_unit_range(tmp_path):
    files = fake_idx_files()
    write_dataset(tmp_path, files, gzipped=True)
    loaded = load_offline(tmp_path, files, tmp_path / "cache")
    raw_pixels = np.frombuffer(files[TRAIN_IMAGES], np.uint8, offset=16).reshape(6, 28, 28)
    np.testing.assert_allclose(loaded.train.images[..., 0], raw_pixels / 255.0, rtol=1e-6)


def test_corrupt_file_is_an_error_naming_it(tmp_path):
    files = fake_idx_files()
    write_dataset(tmp_path, files, gzipped=False)
    path = tmp_path / TEST_IMAGES
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{TEST_IMAGES}.*SHA-256"):
        load_offline(tmp_path, files, tmp_path / "cache")


def test_truncated_gzip_is_an_error_naming_it(tmp_path):
    files = fake_idx_files()
    write_dataset(tmp_path, files, gzipped=True)
    path = tmp_path / f"{TRAIN_LABELS}.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=f"{TRAIN_LABELS}.gz: not a valid gzip file"):
        load_offline(tmp_path, files, tmp_path / "cache")


def test_missing_file_without_mirrors_is_an_error_naming_it(tmp_path):
    files = fake_idx_files()
    write_dataset(tmp_path, files, gzipped=True)
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DatasetError, match=f"{TEST_LABELS}: no local copy"):
        load_offline(tmp_path, files, tmp_path / "cache")


def test_idx_truncated_after_the_header_is_rejected():
    data = idx_bytes(np.zeros((3, 28, 28)))
    with pytest.raises(DatasetError, match=r"images-idx: .*truncated"):
        parse_idx(data[:-1], "images-idx", rank=3)


def test_idx_with_wrong_magic_is_rejected():
    data = idx_bytes(np.zeros((3, 28, 28)))
    as_int32 = data[:2] + b"\x0c" + data[3:]
    with pytest.raises(DatasetError, match="images-idx: bad IDX magic 00000c03"):
        parse_idx(as_int32, "images-idx", rank=3)
    with pytest.raises(DatasetError, match="bad IDX magic"):
        parse_idx(data, "labels-idx", rank=1)


def test_idx_too_short_for_a_header_is_rejected():
    with pytest.raises(DatasetError, match="x-idx: 3 bytes is too short"):
        parse_idx(b"\x00\x00\x08", "x-idx", rank=1)


def test_image_and_label_counts_must_agree(tmp_path):
    files = fake_idx_files()
    files[TEST_LABELS] = idx_bytes(np.arange(3))
    write_dataset(tmp_path, files, gzipped=False)
    with pytest.raises(DatasetError, match=f"{TEST_IMAGES} has 4 images but {TEST_LABELS} has 3"):
        load_offline(tmp_path, files, tmp_path / "cache")


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP mirror of the fake dataset (gzipped), as ``(base URL, raw files)``."""
    files = fake_idx_files()
    root = tmp_path / "mirror"
    write_dataset(root / "mnist", files, gzipped=True)
    handler = partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/mnist/", files
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_download_falls_back_to_the_next_mirror_and_caches(tmp_path, mirror):
    url, files = mirror
    dead_mirror = url.replace("/mnist/", "/nowhere/")
    cache = tmp_path / "cache"
    loaded = load_mnist(None, cache, mirrors=(dead_mirror, url), checksums=checksums_of(files))
    assert loaded.train.images.shape == (6, 28, 28, 1)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{name}.gz" for name in files)
    # Served from the cache now: no mirror is needed a second time.
    again = load_mnist(None, cache, mirrors=(), checksums=checksums_of(files))
    np.testing.assert_array_equal(again.test.labels, loaded.test.labels)


def test_downloaded_file_with_wrong_checksum_is_an_error_and_not_cached(tmp_path, mirror):
    url, files = mirror
    wrong = {**checksums_of(files), TRAIN_IMAGES: "0" * 64}
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=f"{TRAIN_IMAGES}: no local copy.*SHA-256"):
        load_split(TRAIN_IMAGES, TRAIN_LABELS, None, cache, mirrors=(url,), checksums=wrong)
    assert not (cache / f"{TRAIN_IMAGES}.gz").exists()


def test_every_mirror_failing_is_an_error_naming_the_file(tmp_path, mirror):
    url, files = mirror
    with pytest.raises(DatasetError, match=f"{TEST_IMAGES}: no local copy.*404"):
        load_split(
            TEST_IMAGES,
            TEST_LABELS,
            None,
            tmp_path / "cache",
            mirrors=(url.replace("/mnist/", "/gone/"),),
            checksums=checksums_of(files),
        )
    assert not any((tmp_path / "cache").iterdir()), "no partial download may be left behind"
